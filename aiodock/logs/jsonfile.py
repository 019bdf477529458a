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
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
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


def format_time(timestamp_ns: int, *, fixed: bool = False) -> str:
    """RFC3339Nano in UTC; ``fixed`` keeps all nine fraction digits (Docker's ``logs --timestamps`` format)."""
    seconds, nanos = divmod(timestamp_ns, _NS_PER_SECOND)
    base = (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    if fixed:
        return f"{base}.{nanos:09d}Z"
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


_TIME_RE = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")


def parse_time(text: str) -> int:
    """RFC3339 / RFC3339Nano -> nanoseconds since the epoch."""
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


def _entry_from_ns(stream: str, data: bytes, timestamp_ns: int) -> LogEntry:
    return LogEntry(stream=stream, data=data, time=ns_to_datetime(timestamp_ns), nanos=timestamp_ns % _NS_PER_SECOND)


# ---------------------------------------------------------------------------------------------- encoding

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")


def _json_string(text: str) -> str:
    """A JSON string as Go's encoder writes it (HTML characters escaped, invalid UTF-8 already replaced)."""
    return _GO_ESCAPE_RE.sub(lambda m: _GO_ESCAPES[m.group(0)], json.dumps(text, ensure_ascii=False))


def encode_entry(stream: str, data: bytes, timestamp_ns: int) -> bytes:
    log = _json_string(data.decode("utf-8", errors="replace"))
    line = f'{{"log":{log},"stream":{json.dumps(stream)},"time":"{format_time(timestamp_ns)}"}}\n'
    return line.encode("utf-8")


def decode_line(line: bytes) -> LogEntry | None:
    """One line of a json-file log, or None for a torn or foreign line."""
    try:
        record: Any = json.loads(line)
        if not isinstance(record, dict):
            return None
        log, stream, timestamp = record["log"], record.get("stream", "stdout"), record["time"]
        if not isinstance(log, str) or not isinstance(stream, str) or not isinstance(timestamp, str):
            return None
        return _entry_from_ns(stream, log.encode("utf-8", errors="replace"), parse_time(timestamp))
    except (ValueError, KeyError, UnicodeEncodeError):
        return None


# ---------------------------------------------------------------------------------------------- writer


class JsonFileWriter:
    """Appends entries to ``path``; rotates when the file reaches ``max_size`` keeping ``max_files`` in all.

    A trailing partial line is buffered per stream until its newline arrives, :meth:`flush_partial` /
    :meth:`close` is called, or :data:`MAX_PARTIAL_BYTES` accumulate (then it is written without a newline).
    Each entry is written with one ``write(2)`` so concurrent readers see whole lines.
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
        timestamp_ns = self._timestamp_ns(now)
        while True:
            newline = buffer.find(b"\n", 0, MAX_PARTIAL_BYTES)
            if newline != -1:
                end = newline + 1
            elif len(buffer) >= MAX_PARTIAL_BYTES:
                end = MAX_PARTIAL_BYTES
            else:
                break
            self._append(encode_entry(stream, bytes(buffer[:end]), timestamp_ns))
            del buffer[:end]

    def flush_partial(self, now: datetime | None = None) -> None:
        """Write out every stream's unterminated line as it is (no newline added)."""
        timestamp_ns = self._timestamp_ns(now)
        for stream, buffer in self._partial.items():
            if buffer:
                self._append(encode_entry(stream, bytes(buffer), timestamp_ns))
                buffer.clear()

    def end_stream(self, stream: str, now: datetime | None = None) -> None:
        """One stream closed: write what is left of its unterminated line."""
        buffer = self._partial.get(stream)
        if buffer:
            self._append(encode_entry(stream, bytes(buffer), self._timestamp_ns(now)))
            buffer.clear()

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
        assert self._fd is not None
        view = memoryview(line)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._size += len(line)
        if self.max_size is not None and self._size >= self.max_size:
            self._rotate()

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

    def keep(self, entry: LogEntry) -> bool:
        if entry.stream not in self.streams:
            return False
        timestamp = entry.timestamp_ns
        if self.since_ns is not None and timestamp < self.since_ns:
            return False
        return self.until_ns is None or timestamp <= self.until_ns


def _parse_lines(lines: Iterable[bytes]) -> list[LogEntry]:
    entries: list[LogEntry] = []
    for line in lines:
        if line.strip():
            entry = decode_line(line)
            if entry is not None:
                entries.append(entry)
    return entries


def _read_file_lines(path: Path) -> list[bytes]:
    try:
        with open(path, "rb") as fh:
            return fh.read().split(b"\n")
    except FileNotFoundError:
        return []


def _apply_tail(entries: list[LogEntry], tail: int | None) -> list[LogEntry]:
    if tail is None or tail < 0:
        return entries
    return entries[-tail:] if tail else []


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

    ``since`` and ``until`` are inclusive. A torn last line (a writer caught mid-write) is skipped.
    """
    selection = _Filter.make(since, until, stdout, stderr)
    entries: list[LogEntry] = []
    for file in log_files(Path(path)):
        entries.extend(e for e in _parse_lines(_read_file_lines(file)) if selection.keep(e))
    return _apply_tail(entries, tail)


# ---------------------------------------------------------------------------------------------- follower


class _FileTailer:
    """Blocking helper of :func:`follow`: reads what is appended to the current log file across rotations."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.inode: tuple[int, int] | None = None
        self.offset = 0
        self.pending = b""

    def open_current(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        st = os.fstat(fd)
        self.fd, self.inode, self.offset, self.pending = fd, (st.st_dev, st.st_ino), 0, b""
        return True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _read_lines(self, final: bool) -> list[bytes]:
        if self.fd is None:
            return []
        chunks = [self.pending]
        while True:
            chunk = os.pread(self.fd, 1 << 20, self.offset)
            if not chunk:
                break
            chunks.append(chunk)
            self.offset += len(chunk)
        lines = b"".join(chunks).split(b"\n")
        self.pending = lines.pop()
        if final and self.pending:
            lines.append(self.pending)
            self.pending = b""
        return lines

    def initial(self) -> list[bytes]:
        """Everything already logged: rotated files, then the current file (opened first, kept open)."""
        self.open_current()
        lines: list[bytes] = []
        for file in log_files(self.path)[:-1]:
            lines.extend(_read_file_lines(file))
        lines.extend(self._read_lines(final=False))
        return lines

    def poll(self, final: bool) -> list[bytes]:
        """Lines appended since the last call; switches to a new file after rotation or truncation."""
        if self.fd is None:
            return self._read_lines(final) if self.open_current() else []
        lines = self._read_lines(final=False)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if final:
                lines.extend(self._read_lines(final=True))
            return lines
        if (st.st_dev, st.st_ino) != self.inode:
            lines.extend(self._read_lines(final=True))  # the rotated file is complete
            self.close()
            if self.open_current():
                lines.extend(self._read_lines(final))
            return lines
        if stat.S_ISREG(st.st_mode) and st.st_size < self.offset:  # truncated in place
            self.offset, self.pending = 0, b""
        lines.extend(self._read_lines(final))
        return lines


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
    stdout: bool = True,
    stderr: bool = True,
    tail: int | None = None,
) -> AsyncIterator[LogEntry]:
    """Existing entries (the last ``tail``), then new ones as they are appended, polling every 50 ms.

    Once ``stop`` is set (an Event) or returns True (a callable), what is left in the file is drained and the
    iteration ends. Rotation (a new inode at ``path``) and truncation are followed.
    """

    def stopped() -> bool:
        return stop.is_set() if isinstance(stop, asyncio.Event) else stop()

    selection = _Filter.make(since, None, stdout, stderr)
    tailer = _FileTailer(Path(path))
    try:
        existing = await asyncio.to_thread(tailer.initial)
        for entry in _apply_tail([e for e in _parse_lines(existing) if selection.keep(e)], tail):
            yield entry
        while True:
            final = stopped()
            for entry in _parse_lines(await asyncio.to_thread(tailer.poll, final)):
                if selection.keep(entry):
                    yield entry
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


def parse_log_opts(opts: dict[str, str]) -> tuple[int | None, int]:
    """``(max_size, max_files)`` from json-file ``--log-opt``s, validated with Docker's messages."""
    for key in opts:
        if key not in JSON_FILE_LOG_OPTS:
            raise InvalidArgument(f"unknown log opt '{key}' for json-file log driver")
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
