"""Docker's json-file log driver: writer with rotation, reader, follower.

One JSON object per line, as ``dockerd`` writes ``containers/<id>/<id>-json.log``::

    {"log":"hello\\n","stream":"stdout","time":"2026-11-28T01:02:03.123456789Z"}

``time`` is Go's RFC3339Nano in UTC (trailing zeros of the fraction trimmed). Rotation renames
``<log>`` -> ``<log>.1`` -> ... -> ``<log>.<max_files - 1>``. Stdlib only: the shim imports this module.
The writer and :func:`read_entries` do blocking I/O; :func:`follow` runs its I/O in threads.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from aiodock.errors import InvalidArgument

#: Docker splits a line longer than this into partial entries (and flushes an unterminated line at this size).
MAX_PARTIAL_BYTES = 16 * 1024
FOLLOW_POLL_SECONDS = 0.05

STREAMS = ("stdout", "stderr")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS_PER_SECOND = 1_000_000_000


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One log record. ``time`` has microsecond precision; ``nanos`` is the full sub-second part in ns."""

    stream: str
    data: bytes
    time: datetime
    nanos: int = 0

    @property
    def timestamp_ns(self) -> int:
        """Nanoseconds since the Unix epoch."""
        seconds = (self.time.replace(microsecond=0) - _EPOCH) // timedelta(seconds=1)
        return seconds * _NS_PER_SECOND + self.nanos


# ---------------------------------------------------------------------------------------------- time format


def datetime_to_ns(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def ns_to_datetime(timestamp_ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=timestamp_ns // 1000)


# Whole seconds <-> "YYYY-MM-DDTHH:MM:SS": log lines come by the thousand per second, so both directions are
# cached (bounded: cleared when full).
_CACHE_LIMIT = 4096
_BASE_BY_SECOND: dict[int, str] = {}
_SECOND_BY_BASE: dict[str, int] = {}


def _time_base(seconds: int) -> str:
    base = _BASE_BY_SECOND.get(seconds)
    if base is None:
        if len(_BASE_BY_SECOND) >= _CACHE_LIMIT:
            _BASE_BY_SECOND.clear()
        base = _BASE_BY_SECOND[seconds] = (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    return base


def format_time(timestamp_ns: int, *, fixed: bool = False) -> str:
    """RFC3339Nano in UTC; ``fixed`` keeps all nine fraction digits (Docker's ``logs --timestamps`` format)."""
    seconds, nanos = divmod(timestamp_ns, _NS_PER_SECOND)
    base = _time_base(seconds)
    if fixed:
        return f"{base}.{nanos:09d}Z"
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


_TIME_RE = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")


def _parse_time_slow(text: str) -> int:
    match = _TIME_RE.match(text)
    if match is None:
        raise ValueError(f"invalid RFC3339 time: {text!r}")
    base, fraction, zone = match.groups()
    moment = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S")
    offset = timedelta(0)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        offset = sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    moment = moment.replace(tzinfo=timezone(offset))
    seconds = (moment - _EPOCH) // timedelta(seconds=1)
    return seconds * _NS_PER_SECOND + int((fraction or "0").ljust(9, "0"))


def parse_time(text: str) -> int:
    """RFC3339 / RFC3339Nano -> nanoseconds since the epoch.

    Fast path for the UTC form the writer uses (``...SS[.fffffffff]Z``): the seconds part is looked up in a cache.
    """
    if len(text) >= 20 and text[-1] == "Z":
        base = text[:19]
        seconds = _SECOND_BY_BASE.get(base)
        if seconds is None:
            seconds = _parse_time_slow(base + "Z") // _NS_PER_SECOND
            if len(_SECOND_BY_BASE) >= _CACHE_LIMIT:
                _SECOND_BY_BASE.clear()
            _SECOND_BY_BASE[base] = seconds
        if len(text) == 20:
            return seconds * _NS_PER_SECOND
        fraction = text[20:-1]
        if text[19] == "." and 0 < len(fraction) <= 9 and fraction.isascii() and fraction.isdigit():
            return seconds * _NS_PER_SECOND + int(fraction.ljust(9, "0"))
    return _parse_time_slow(text)


def _entry_from_ns(stream: str, data: bytes, timestamp_ns: int) -> LogEntry:
    return LogEntry(stream=stream, data=data, time=ns_to_datetime(timestamp_ns), nanos=timestamp_ns % _NS_PER_SECOND)


# ---------------------------------------------------------------------------------------------- encoding

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")
_json_dumps = json.JSONEncoder(ensure_ascii=False).encode


def _json_string(text: str) -> str:
    """A JSON string as Go's encoder writes it (HTML characters escaped, invalid UTF-8 already replaced)."""
    encoded = _json_dumps(text)
    if "<" in encoded or ">" in encoded or "&" in encoded or "\u2028" in encoded or "\u2029" in encoded:
        return _GO_ESCAPE_RE.sub(lambda m: _GO_ESCAPES[m.group(0)], encoded)
    return encoded  # (`in` is a memchr; a regex search is ~10x slower on a 1 KB line)


#: Bytes that stand for themselves inside a JSON string as Go writes it: printable ASCII but ``"\<>&``.
_PLAIN_BYTES = bytes(c for c in range(0x20, 0x7F) if chr(c) not in '"\\<>&')
_PLAIN_OR_NEWLINE = _PLAIN_BYTES + b"\n"


def _line_suffix(stream: str, timestamp_ns: int) -> bytes:
    return f',"stream":{json.dumps(stream)},"time":"{format_time(timestamp_ns)}"}}\n'.encode()


def _encode_with_suffix(data: bytes, suffix: bytes) -> bytes:
    return b'{"log":' + _json_string(data.decode("utf-8", errors="replace")).encode("utf-8") + suffix


def encode_entry(stream: str, data: bytes, timestamp_ns: int) -> bytes:
    return _encode_with_suffix(data, _line_suffix(stream, timestamp_ns))


def _record_of(record: Any) -> tuple[str, str, str] | None:
    """(stream, log text, time text) of one decoded JSON line, or None if it is not a log record."""
    if type(record) is not dict:
        return None
    log, stream, timestamp = record.get("log"), record.get("stream", "stdout"), record.get("time")
    if type(log) is not str or type(stream) is not str or type(timestamp) is not str:
        return None
    return stream, log, timestamp


def decode_line(line: bytes) -> LogEntry | None:
    """One line of a json-file log, or None for a torn or foreign line."""
    try:
        record = _record_of(json.loads(line))
        if record is None:
            return None
        stream, log, timestamp = record
        return _entry_from_ns(stream, log.encode("utf-8", errors="replace"), parse_time(timestamp))
    except (ValueError, UnicodeEncodeError):
        return None


_Record = tuple[str, bytes, str]  # (stream, data, time text): decoded, its time not parsed yet


def _decode_records(block: bytes) -> list[_Record]:
    """The log records of the lines of ``block`` (torn or foreign lines skipped), decoded with one
    ``json.loads`` for all of them; lines are only decoded one by one when that fails."""
    body = [line for line in block.split(b"\n") if line and not line.isspace()]
    if not body:
        return []
    try:
        decoded: Any = json.loads(b"[" + b",".join(body) + b"]")
    except ValueError:
        decoded = None
    if type(decoded) is list and len(decoded) == len(body):
        records = [_record_of(item) for item in decoded]
        if None not in records:
            return [(stream, log.encode("utf-8", errors="replace"), t) for stream, log, t in records]  # type: ignore[misc]
    out: list[_Record] = []
    for line in body:
        try:
            record = _record_of(json.loads(line))
        except ValueError:
            continue
        if record is not None:
            out.append((record[0], record[1].encode("utf-8", errors="replace"), record[2]))
    return out


# The lines the writer's fast path writes, recognised a block at a time (bytes methods and one regex pass):
# {"log":"<text without quotes or backslashes>\n","stream":"stdout","time":"<time>"}
_FAST_PREFIX = b'{"log":"'
_FAST_STREAM_AT = len(_FAST_PREFIX)
_FAST_MARKS = {name: b'\\n","stream":"' + name.encode() + b'","time":"' for name in STREAMS}
_FAST_BOUNDARIES = {
    name: re.compile(re.escape(mark) + rb'[-0-9T:.Z+]{20,40}"\}\n\{"log":"') for name, mark in _FAST_MARKS.items()
}
_FAST_TIMES = {name: re.compile(re.escape(mark) + rb'([-0-9T:.]{19,29})Z"\}\n') for name, mark in _FAST_MARKS.items()}


def _fast_block(block: bytes, selection: _Filter) -> list[_Record] | None:
    """``block`` (whole lines) as one merged record, without decoding each line, when every line is a whole
    line of one stream with nothing to unescape, and ``since``/``until`` keep all of them or none; None when the
    block needs the line-by-line path (:func:`_decode_records` then :meth:`_Filter.select`)."""
    if not block.startswith(_FAST_PREFIX) or not block.endswith(b'"}\n'):
        return None
    at = block.find(b'\\n","stream":"')
    if at == -1:
        return None
    stream = "stdout" if block.startswith(b"stdout", at + 14) else "stderr"
    mark = _FAST_MARKS[stream]
    # Every line boundary becomes a newline; what is left between the first line's start and the last line's
    # mark is the text: a quote or backslash in it is a line this path does not handle (another stream, an
    # escape, a torn or foreign line).
    data = _FAST_BOUNDARIES[stream].sub(b"\n", block)
    last = data.rfind(mark)
    if last == -1 or data.find(b'"', last + len(mark)) != len(data) - 3:
        return None
    if data.find(b'"', _FAST_STREAM_AT, last) != -1 or data.find(b"\\", _FAST_STREAM_AT, last) != -1:
        return None
    if not data.isascii():
        try:
            data[_FAST_STREAM_AT:last].decode("utf-8")
        except UnicodeDecodeError:
            return None
    start = block.index(mark) + len(mark)
    try:
        first = block[start : block.index(b'"', start)].decode("ascii")
        parse_time(first)  # a valid time, for the merged record
        if selection.since_ns is not None or selection.until_ns is not None:
            # The times without their "Z": "YYYY-MM-DDTHH:MM:SS[.fraction]" texts sort as the times they stand for.
            times = _FAST_TIMES[stream].findall(block)
            if len(times) != block.count(mark):
                return None
            low = parse_time(min(times).decode("ascii") + "Z")
            high = parse_time(max(times).decode("ascii") + "Z")
            if selection.since_ns is not None:
                if high < selection.since_ns:
                    return []
                if low < selection.since_ns:
                    return None  # straddles `since`: line by line
            if selection.until_ns is not None and high > selection.until_ns:
                return None
    except (ValueError, UnicodeDecodeError):
        return None
    if stream not in selection.streams:
        return []
    return [(stream, b"".join((memoryview(data)[_FAST_STREAM_AT:last], b"\n")), first)]


# ---------------------------------------------------------------------------------------------- writer


class JsonFileWriter:
    """Appends entries to ``path``; rotates when the file reaches ``max_size`` keeping ``max_files`` in all.

    A trailing partial line is buffered per stream until its newline arrives, :meth:`flush_partial` /
    :meth:`close` is called, or :data:`MAX_PARTIAL_BYTES` accumulate (then it is written without a newline).
    The entries of one :meth:`write` go out with one ``write(2)`` (split only where the file rotates), so
    concurrent readers see whole lines once the call returns.
    """

    def __init__(self, path: Path, max_size: int | None = None, max_files: int = 1) -> None:
        if max_size is not None and max_size <= 0:
            raise InvalidArgument("max-size must be a positive number")
        if max_files < 1:
            raise InvalidArgument("max-file cannot be less than 1")
        self.path = Path(path)
        self.max_size = max_size
        self.max_files = max_files
        self._partial: dict[str, bytearray] = {}
        self._fd: int | None = None
        self._size = 0
        self._batch: list[bytes] = []
        self._open()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._size = os.fstat(self._fd).st_size

    @staticmethod
    def _timestamp_ns(now: datetime | None) -> int:
        return time.time_ns() if now is None else datetime_to_ns(now)

    def write(self, stream: str, data: bytes, now: datetime | None = None) -> None:
        if self._fd is None:
            raise ValueError("write to a closed JsonFileWriter")
        buffer = self._partial.setdefault(stream, bytearray())
        buffer += data
        suffix: bytes | None = None
        start = self._write_plain_lines(stream, buffer, now)
        size = len(buffer)
        while True:
            newline = buffer.find(b"\n", start, start + MAX_PARTIAL_BYTES)
            if newline != -1:
                end = newline + 1
            elif size - start >= MAX_PARTIAL_BYTES:
                end = start + MAX_PARTIAL_BYTES
            else:
                break
            if suffix is None:
                suffix = _line_suffix(stream, self._timestamp_ns(now))
            self._append(_encode_with_suffix(bytes(buffer[start:end]), suffix))
            start = end
        if start:
            del buffer[:start]
        self._flush()

    def _write_plain_lines(self, stream: str, buffer: bytearray, now: datetime | None) -> int:
        """Fast path of :meth:`write`: the complete lines at the start of ``buffer`` encoded all at once when
        they need no JSON escaping (printable ASCII without ``"\\<>&``), are each one entry (shorter than
        :data:`MAX_PARTIAL_BYTES`) and do not fill the file up to ``max_size``. Returns how much was written."""
        end = buffer.rfind(b"\n") + 1
        if not end:
            return 0
        lines = buffer[:end].split(b"\n")
        lines.pop()  # the empty piece after the last newline
        if max(map(len, lines)) >= MAX_PARTIAL_BYTES or buffer[:end].translate(None, _PLAIN_OR_NEWLINE):
            return 0
        suffix = b'\\n"' + _line_suffix(stream, self._timestamp_ns(now))
        encoded = b'{"log":"' + (suffix + b'{"log":"').join(lines) + suffix
        if self.max_size is not None and self._size + len(encoded) >= self.max_size:
            return 0
        self._batch.append(encoded)
        self._size += len(encoded)
        return end

    def flush_partial(self, now: datetime | None = None) -> None:
        """Write out every stream's unterminated line as it is (no newline added)."""
        timestamp_ns = self._timestamp_ns(now)
        for stream, buffer in self._partial.items():
            if buffer:
                self._append(encode_entry(stream, bytes(buffer), timestamp_ns))
                buffer.clear()
        self._flush()

    def end_stream(self, stream: str, now: datetime | None = None) -> None:
        """One stream closed: write what is left of its unterminated line."""
        buffer = self._partial.get(stream)
        if buffer:
            self._append(encode_entry(stream, bytes(buffer), self._timestamp_ns(now)))
            buffer.clear()
            self._flush()

    def sync(self) -> None:
        """fsync the current file (the shim does it before it records the exit)."""
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is None:
            return
        self.flush_partial()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> JsonFileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _append(self, line: bytes) -> None:
        """Queue one line for the next :meth:`_flush`; rotate once the file (with the queued lines) is full."""
        self._batch.append(line)
        self._size += len(line)
        if self.max_size is not None and self._size >= self.max_size:
            self._flush()
            self._rotate()

    def _flush(self) -> None:
        if not self._batch:
            return
        assert self._fd is not None
        data = self._batch[0] if len(self._batch) == 1 else b"".join(self._batch)
        self._batch.clear()
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def _rotate(self) -> None:
        assert self._fd is not None
        os.close(self._fd)
        self._fd = None
        if self.max_files >= 2:
            for index in range(self.max_files - 1, 1, -1):
                older = rotated_path(self.path, index - 1)
                if older.exists():
                    os.replace(older, rotated_path(self.path, index))
            os.replace(self.path, rotated_path(self.path, 1))
        else:
            # A new inode rather than an in-place truncation, so followers notice.
            os.unlink(self.path)
        self._open()


def rotated_path(path: Path, index: int) -> Path:
    return path.with_name(f"{path.name}.{index}")


def log_files(path: Path) -> list[Path]:
    """The rotated files then the current one, oldest first (the current one may not exist)."""
    path = Path(path)
    pattern = re.compile(re.escape(path.name) + r"\.(\d+)$")
    rotated: list[tuple[int, Path]] = []
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        names = []
    for name in names:
        match = pattern.match(name)
        if match:
            rotated.append((int(match.group(1)), path.parent / name))
    return [p for _, p in sorted(rotated, reverse=True)] + [path]


# ---------------------------------------------------------------------------------------------- reader

#: The most a reader takes from a log file at once: memory stays bounded however big the log is.
READ_CHUNK = 1 << 20
#: Consecutive records of one stream merged into one entry by ``follow(coalesce=...)`` up to about this much.
COALESCE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class _Filter:
    since_ns: int | None
    until_ns: int | None
    streams: frozenset[str]

    @classmethod
    def make(cls, since: datetime | None, until: datetime | None, stdout: bool, stderr: bool) -> _Filter:
        streams = frozenset(s for s, wanted in (("stdout", stdout), ("stderr", stderr)) if wanted)
        return cls(
            since_ns=datetime_to_ns(since) if since is not None else None,
            until_ns=datetime_to_ns(until) if until is not None else None,
            streams=streams,
        )

    def select(self, records: list[_Record]) -> tuple[list[_Record], bool]:
        """The records to show, and whether one past ``until`` was met (where Docker's reader stops).

        Times are only parsed when ``since`` or ``until`` needs them; a record whose time does not parse is then
        dropped."""
        streams = self.streams
        if self.since_ns is None and self.until_ns is None:
            return [r for r in records if r[0] in streams], False
        since, until = self.since_ns, self.until_ns
        kept: list[_Record] = []
        for record in records:
            if until is None and record[0] not in streams:
                continue
            try:
                timestamp = parse_time(record[2])
            except ValueError:
                continue
            if until is not None and timestamp > until:  # whatever its stream, as Docker's reader
                return kept, True
            if (since is None or timestamp >= since) and record[0] in streams:
                kept.append(record)
        return kept, False


def _pieces(data: bytes, limit: int) -> list[bytes]:
    """``data`` cut into pieces of at most ``limit`` bytes, at line ends where there are some."""
    if len(data) <= limit:
        return [data]
    pieces: list[bytes] = []
    start = 0
    while len(data) - start > limit:
        cut = data.rfind(b"\n", start, start + limit) + 1
        if cut <= start:
            cut = start + limit
        pieces.append(data[start:cut])
        start = cut
    pieces.append(data[start:])
    return pieces


def _entries(records: Iterable[_Record], coalesce: int) -> list[LogEntry]:
    """LogEntry objects of ``records``: one each, or with ``coalesce`` consecutive records of a stream merged
    into entries of at most ``coalesce`` bytes (cut at line ends, each with the time of the first record).
    Records whose time does not parse are dropped (only checked for the first record of a merged entry)."""
    entries: list[LogEntry] = []
    if not coalesce:
        for stream, data, timestamp in records:
            try:
                timestamp_ns = parse_time(timestamp)
            except ValueError:
                continue
            entries.append(_entry_from_ns(stream, data, timestamp_ns))
        return entries
    group: list[bytes] = []
    group_stream = ""
    group_ns = 0
    size = 0

    def close_group() -> None:
        data = group[0] if len(group) == 1 else b"".join(group)
        entries.extend(_entry_from_ns(group_stream, piece, group_ns) for piece in _pieces(data, coalesce))

    for stream, data, timestamp in records:
        if group and (stream != group_stream or size >= coalesce):
            close_group()
            group = []
        if not group:
            try:
                group_ns = parse_time(timestamp)
            except ValueError:
                continue
            group_stream, size = stream, 0
        group.append(data)
        size += len(data)
    if group:
        close_group()
    return entries


class _Cursor:
    """Reads whole lines of one open file, at most ``limit`` bytes per call."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.offset = 0
        self.pending = b""

    def read(self, limit: int, final: bool) -> tuple[bytes, bool]:
        """The whole lines read (each ending with a newline) and whether the read stopped at ``limit`` (more is
        waiting). ``final``: the file is complete, an unterminated last line counts once the end is reached."""
        data = os.pread(self.fd, limit, self.offset)
        self.offset += len(data)
        more = len(data) >= limit
        if self.pending:
            data = self.pending + data
        end = data.rfind(b"\n") + 1
        block, self.pending = data[:end], data[end:]
        if final and not more and self.pending:
            block += self.pending + b"\n"
            self.pending = b""
        return block, more

    def close(self) -> None:
        os.close(self.fd)


class _FileTailer:
    """Blocking helper of :func:`follow`: reads the rotated files, then the current log file and what is
    appended to it across rotations, a bounded piece per :meth:`poll`."""

    def __init__(self, path: Path, limit: int = READ_CHUNK) -> None:
        self.path = path
        self.limit = limit
        self.current: _Cursor | None = None
        self.inode: tuple[int, int] | None = None
        self.backlog: list[_Cursor] = []

    def open_current(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        st = os.fstat(fd)
        self.current, self.inode = _Cursor(fd), (st.st_dev, st.st_ino)
        return True

    def start(self) -> None:
        """Open the rotated files (oldest first) and the current one: all of them are read from their start."""
        for file in log_files(self.path)[:-1]:
            try:
                self.backlog.append(_Cursor(os.open(file, os.O_RDONLY | os.O_CLOEXEC)))
            except FileNotFoundError:
                continue
        if self.open_current():  # a rotation in between: the current file may already be in the backlog
            for cursor in self.backlog:
                st = os.fstat(cursor.fd)
                if (st.st_dev, st.st_ino) == self.inode:
                    self.backlog.remove(cursor)
                    cursor.close()
                    break

    def _catch_up(self) -> None:
        """After the file being read was rotated: queue the files rotated since (a writer faster than the reader
        can rotate more than once between two polls), oldest first, so that none of them is skipped. They are the
        rotated files newer than the one just read, or all of them when that one has already been dropped."""
        newer: list[int] = []
        for file in reversed(log_files(self.path)[:-1]):  # newest first: name.1, name.2, ...
            try:
                fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == self.inode:
                os.close(fd)
                break
            newer.append(fd)
        self.backlog.extend(_Cursor(fd) for fd in reversed(newer))
        # (The caller opens the current file next; a rotation in between may put it among these: read it once.)

    def close(self) -> None:
        for cursor in self.backlog:
            cursor.close()
        self.backlog.clear()
        if self.current is not None:
            self.current.close()
            self.current = None

    def poll(self, final: bool) -> tuple[bytes, bool]:
        """Whole lines appended since the last call (about ``limit`` bytes at most) and whether more is waiting.
        Switches to a new file after rotation or truncation; ``final`` (the writer is done) takes an
        unterminated last line once the end is reached."""
        while self.backlog:
            block, more = self.backlog[0].read(self.limit, final=True)
            if not more:
                self.backlog.pop(0).close()
            if block:
                return block, True
        if self.current is None:
            if not self.open_current():
                return b"", False
            assert self.current is not None
        cursor = self.current
        block, more = cursor.read(self.limit, final=False)
        if more:
            return block, True
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if final:
                rest, more = cursor.read(self.limit, final=True)
                block += rest
            return block, more
        if (st.st_dev, st.st_ino) != self.inode:  # rotated: the old file is complete
            rest, more = cursor.read(self.limit, final=True)
            block += rest
            if more:
                return block, True
            cursor.close()
            self.current = None
            self._catch_up()
            opened = self.open_current()
            if self.backlog:
                return block, True
            if opened:
                assert self.current is not None
                rest, more = self.current.read(self.limit, final)
                return block + rest, more
            return block, False
        if stat.S_ISREG(st.st_mode) and st.st_size < cursor.offset:  # truncated in place
            cursor.offset, cursor.pending = 0, b""
            return block, True
        rest, more = cursor.read(self.limit, final)
        return block + rest, more


def _read_records(tailer: _FileTailer, final: bool, selection: _Filter,
                  merge: bool) -> tuple[list[_Record], bool, bool]:
    """One bounded step, run in a thread: (records to show, more is waiting, ``until`` was passed). ``merge``:
    the caller coalesces records, so a block of plain lines may come back as one record."""
    block, more = tailer.poll(final)
    if merge:
        fast = _fast_block(block, selection)
        if fast is not None:
            return fast, more, False
    records, past_until = selection.select(_decode_records(block))
    return records, more, past_until


def _read_tail(tailer: _FileTailer, selection: _Filter, tail: int, merge: bool) -> tuple[list[_Record], bool]:
    """What the file holds now, of which the last ``tail`` entries (blocking: run in a thread), and whether
    ``until`` was passed. Memory: about ``tail`` entries. With ``merge``, records of many lines (from
    :func:`_fast_block`, every line ending with a newline) are kept whole and only the oldest one is cut."""
    kept: deque[tuple[_Record, int]] = deque()
    count = 0
    while True:
        block, more = tailer.poll(False)
        fast = _fast_block(block, selection) if merge else None
        if fast is not None:
            past_until = False
            pieces = [(record, record[1].count(b"\n")) for record in fast]
        else:
            records, past_until = selection.select(_decode_records(block))
            pieces = [(record, 1) for record in records]
        for piece in pieces:
            kept.append(piece)
            count += piece[1]
            while kept and count - kept[0][1] >= tail:
                count -= kept.popleft()[1]
        if past_until or not more:
            break
    if count > tail and kept:  # the oldest record holds more lines than wanted
        (stream, data, timestamp), lines = kept[0]
        cut = len(data)
        for _ in range(lines - (count - tail) + 1):
            cut = data.rfind(b"\n", 0, cut)
        kept[0] = ((stream, data[cut + 1 :], timestamp), 0)
    return [record for record, _ in kept], past_until


def read_entries(
    path: Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    tail: int | None = None,
    stdout: bool = True,
    stderr: bool = True,
) -> list[LogEntry]:
    """Entries of ``path`` and its rotated files, oldest first, filtered, then the last ``tail`` of them.

    ``since`` and ``until`` are inclusive (reading stops at the first entry past ``until``, as Docker's). A
    torn last line (a writer caught mid-write) is skipped.
    """
    selection = _Filter.make(since, until, stdout, stderr)
    tailer = _FileTailer(Path(path), READ_CHUNK)
    kept: deque[_Record] | list[_Record] = [] if tail is None or tail < 0 else deque(maxlen=tail)
    try:
        tailer.start()
        while True:
            records, more, past_until = _read_records(tailer, True, selection, False)
            kept.extend(records)
            if past_until or not more:
                break
    finally:
        tailer.close()
    return _entries(kept, 0)


# ---------------------------------------------------------------------------------------------- follower


async def _wait_for_stop(stop: asyncio.Event | Callable[[], bool], timeout: float) -> None:
    if isinstance(stop, asyncio.Event):
        try:
            async with asyncio.timeout(timeout):
                await stop.wait()
        except TimeoutError:
            pass
    else:
        await asyncio.sleep(timeout)


async def follow(
    path: Path,
    *,
    stop: asyncio.Event | Callable[[], bool],
    since: datetime | None = None,
    until: datetime | None = None,
    stdout: bool = True,
    stderr: bool = True,
    tail: int | None = None,
    coalesce: int = 0,
) -> AsyncIterator[LogEntry]:
    """Existing entries (the last ``tail``), then new ones as they are appended, polling every 50 ms while
    there is nothing new (at once while there is).

    Once ``stop`` is set (an Event) or returns True (a callable), what is left in the file is drained and the
    iteration ends; it also ends at the first entry past ``until``. Rotation (a new inode at ``path``) and
    truncation are followed. The file is read :data:`READ_CHUNK` at a time, and the next piece only once the
    consumer asked for more, so memory stays bounded. ``coalesce``: merge consecutive entries of one stream
    into entries of up to about that many bytes (each with the time of its first record), for callers that do
    not show per-line times.
    """

    def stopped() -> bool:
        return stop.is_set() if isinstance(stop, asyncio.Event) else stop()

    selection = _Filter.make(since, until, stdout, stderr)
    tailer = _FileTailer(Path(path), READ_CHUNK)
    try:
        await asyncio.to_thread(tailer.start)
        if tail is not None and tail >= 0:  # what exists now, of which the last `tail`
            kept, past_until = await asyncio.to_thread(_read_tail, tailer, selection, tail, coalesce > 0)
            for entry in _entries(kept, coalesce):
                yield entry
            if past_until:
                return
        while True:
            final = stopped()
            while True:
                records, more, past_until = await asyncio.to_thread(
                    _read_records, tailer, final, selection, coalesce > 0)
                if records and selection.since_ns is not None:
                    # The log is in time order: `since` found where to start, times need no more parsing for it.
                    selection = replace(selection, since_ns=None)
                for entry in _entries(records, coalesce):
                    yield entry
                if past_until:
                    return
                if not more:
                    break
            if final:
                return
            await _wait_for_stop(stop, FOLLOW_POLL_SECONDS)
    finally:
        tailer.close()


# ---------------------------------------------------------------------------------------------- options

_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_DECIMAL_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4, "p": 1000**5}
JSON_FILE_LOG_OPTS = frozenset(
    {"max-file", "max-size", "compress", "labels", "labels-regex", "env", "env-regex", "tag"}
)


def parse_size(text: str) -> int:
    """Docker's human size for ``max-size`` (decimal units, as go-units ``FromHumanSize``): "10m" -> 10000000."""
    match = _SIZE_RE.match(text.strip())
    if match is None:
        raise InvalidArgument(f"invalid size: '{text}'")
    number, unit = match.group(1), (match.group(2) or "").lower()
    try:
        value = float(number)
    except ValueError:
        raise InvalidArgument(f"invalid size: '{text}'") from None
    return int(value * _DECIMAL_UNITS[unit])


def parse_log_opts(opts: dict[str, str], allowed: frozenset[str] = JSON_FILE_LOG_OPTS,
                   driver: str = "json-file") -> tuple[int | None, int]:
    """``(max_size, max_files)`` from a file driver's ``--log-opt``s, validated with Docker's messages."""
    for key in opts:
        if key not in allowed:
            raise InvalidArgument(f"unknown log opt '{key}' for {driver} log driver")
    max_size: int | None = None
    if "max-size" in opts:
        max_size = parse_size(opts["max-size"])
        if max_size <= 0:
            raise InvalidArgument("max-size must be a positive number")
    max_files = 1
    if "max-file" in opts:
        text = opts["max-file"]
        try:
            max_files = int(text, 10)
        except ValueError:
            raise InvalidArgument(f'strconv.Atoi: parsing "{text}": invalid syntax') from None
        if max_files < 1:
            raise InvalidArgument("max-file cannot be less than 1")
    if "compress" in opts and opts["compress"].lower() not in ("true", "false", "1", "0", "t", "f"):
        raise InvalidArgument(f'error reading compress log option: strconv.ParseBool: parsing "{opts["compress"]}"')
    return max_size, max_files
