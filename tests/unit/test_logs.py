"""json-file writer/reader/follower and stdcopy framing, on real files in a temp dir."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aiodock.errors import InvalidArgument
from aiodock.logs import jsonfile
from aiodock.logs.format import encode_for_logs, format_entry
from aiodock.logs.jsonfile import (
    MAX_PARTIAL_BYTES,
    JsonFileWriter,
    LogEntry,
    datetime_to_ns,
    encode_entry,
    follow,
    parse_log_opts,
    parse_size,
    read_entries,
)
from aiodock.logs.stdcopy import STDERR, STDOUT, Demuxer, frame

T0 = datetime(2026, 11, 28, 1, 2, 3, 123456, tzinfo=UTC)


@pytest.fixture
def log_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="adk-", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def lines_of(entries: list[LogEntry]) -> list[bytes]:
    return [e.data for e in entries]


def test_round_trip_and_on_disk_format(log_dir: Path) -> None:
    path = log_dir / "c-json.log"
    with JsonFileWriter(path) as writer:
        writer.write("stdout", b"hello\nworld\n", now=T0)
        writer.write("stderr", b"<oops> & \xff\n", now=T0 + timedelta(seconds=1))
    raw = path.read_text().splitlines()
    assert raw[0] == '{"log":"hello\\n","stream":"stdout","time":"2026-11-28T01:02:03.123456Z"}'
    assert raw[2] == (
        '{"log":"\\u003coops\\u003e \\u0026 \ufffd\\n","stream":"stderr","time":"2026-11-28T01:02:04.123456Z"}'
    )
    entries = read_entries(path)
    assert [(e.stream, e.data) for e in entries] == [
        ("stdout", b"hello\n"),
        ("stdout", b"world\n"),
        ("stderr", "<oops> & \ufffd\n".encode()),
    ]
    assert entries[0].time == T0 and entries[0].nanos == 123456000


def test_nanosecond_times_are_kept(log_dir: Path) -> None:
    path = log_dir / "c-json.log"
    path.write_text('{"log":"x\\n","stream":"stdout","time":"2026-11-28T01:02:03.123456789Z"}\n')
    (entry,) = read_entries(path)
    assert entry.nanos == 123456789 and entry.time == T0
    assert format_entry(entry, timestamps=True) == b"2026-11-28T01:02:03.123456789Z x\n"
    assert format_entry(entry, timestamps=False) == b"x\n"
    with JsonFileWriter(path) as writer:
        writer.write("stdout", b"now\n")
    assert json.loads(path.read_text().splitlines()[1])["time"].endswith("Z")


def test_rotation_keeps_max_files(log_dir: Path) -> None:
    path = log_dir / "c-json.log"
    with JsonFileWriter(path, max_size=200, max_files=3) as writer:
        for number in range(20):
            writer.write("stdout", f"line {number:02d}\n".encode(), now=T0)
    files = sorted(p.name for p in log_dir.iterdir())
    assert files == ["c-json.log", "c-json.log.1", "c-json.log.2"]
    for name in files[1:]:
        assert 200 <= (log_dir / name).stat().st_size < 200 + 80
    data = lines_of(read_entries(path))
    assert data == [f"line {n:02d}\n".encode() for n in range(20 - len(data), 20)]  # newest kept, in order
    assert len(data) < 20


def test_rotation_with_one_file_starts_over(log_dir: Path) -> None:
    path = log_dir / "c-json.log"
    with JsonFileWriter(path, max_size=100, max_files=1) as writer:
        for number in range(5):
            writer.write("stdout", f"line {number}\n".encode(), now=T0)
    assert [p.name for p in log_dir.iterdir()] == ["c-json.log"]
    assert lines_of(read_entries(path)) == [b"line 4\n"]


def test_tail_since_until_and_streams(log_dir: Path) -> None:
    path = log_dir / "c-json.log"
    with JsonFileWriter(path) as writer:
        for second in range(6):
            stream = "stdout" if second % 2 == 0 else "stderr"
            writer.write(stream, f"{stream} {second}\n".encode(), now=T0 + timedelta(seconds=second))
    assert lines_of(read_entries(path, tail=2)) == [b"stdout 4\n", b"stderr 5\n"]
    assert read_entries(path, tail=0) == []
    assert len(read_entries(path, tail=-1)) == 6
    window = read_entries(path, since=T0 + timedelta(seconds=2), until=T0 + timedelta(seconds=4))
    assert lines_of(window) == [b"stdout 2\n", b"stderr 3\n", b"stdout 4\n"]
    assert lines_of(read_entries(path, stderr=False)) == [b"stdout 0\n", b"stdout 2\n", b"stdout 4\n"]
    assert lines_of(read_entries(path, stdout=False, tail=1)) == [b"stderr 5\n"]


def test_partial_lines(log_dir: Path) -> None:
    path = log_dir / "c-json.log"
    writer = JsonFileWriter(path)
    writer.write("stdout", b"hel", now=T0)
    writer.write("stderr", b"err", now=T0)
    writer.write("stdout", b"lo\nnext", now=T0)
    assert lines_of(read_entries(path)) == [b"hello\n"]  # partial lines are still buffered
    writer.flush_partial(now=T0)
    assert lines_of(read_entries(path)) == [b"hello\n", b"next", b"err"]
    writer.write("stdout", b"x" * (MAX_PARTIAL_BYTES + 10), now=T0)  # 16 KiB accumulate: written as a partial
    assert read_entries(path)[-1].data == b"x" * MAX_PARTIAL_BYTES
    writer.write("stdout", b"y\n", now=T0)
    writer.write("stderr", b"unterminated", now=T0)
    writer.close()
    assert lines_of(read_entries(path))[-2:] == [b"x" * 10 + b"y\n", b"unterminated"]


def test_torn_last_line_is_skipped(log_dir: Path) -> None:
    path = log_dir / "c-json.log"
    with JsonFileWriter(path) as writer:
        writer.write("stdout", b"whole\n", now=T0)
    with open(path, "ab") as fh:
        fh.write(b'{"log":"torn\\n","stream":"std')
    assert lines_of(read_entries(path)) == [b"whole\n"]


async def test_follow_sees_appended_lines_and_ends_after_stop(log_dir: Path) -> None:
    path = log_dir / "c-json.log"
    writer = JsonFileWriter(path, max_size=300, max_files=2)
    writer.write("stdout", b"old 1\n", now=T0)
    writer.write("stdout", b"old 2\n", now=T0)
    stop = asyncio.Event()
    received: list[bytes] = []

    async def consume() -> None:
        async for entry in follow(path, stop=stop, tail=1):
            received.append(entry.data)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.1)
    assert received == [b"old 2\n"]
    for number in range(8):  # enough to rotate several times while following
        writer.write("stdout", f"new {number}\n".encode())
        await asyncio.sleep(0.06)
    writer.write("stderr", b"last words\n")
    stop.set()  # set right after a write: the follower drains it before ending
    await asyncio.wait_for(task, 5)
    writer.close()
    assert received == [b"old 2\n", *[f"new {n}\n".encode() for n in range(8)], b"last words\n"]


@pytest.mark.parametrize("max_files", [3, 5])
async def test_follow_catches_up_on_files_rotated_between_two_polls(log_dir: Path, max_files: int) -> None:
    """A writer faster than the follower rotates more than once while the follower sleeps: the files rotated past
    it are read in order, none is skipped, as long as they still exist."""
    path = log_dir / "c-json.log"
    writer = JsonFileWriter(path, max_size=200, max_files=max_files)
    writer.write("stdout", b"first\n", now=T0)
    stop = asyncio.Event()
    received: list[bytes] = []

    async def consume() -> None:
        async for entry in follow(path, stop=stop):
            received.append(entry.data)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.1)  # the follower has read "first" and polls every 50 ms
    lines = [f"burst {n:02d} padding\n".encode() for n in range(2 * (max_files - 1))]
    for line in lines:  # two lines fill a file: max_files - 1 rotations with no poll in between
        writer.write("stdout", line, now=T0)
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(task, 5)
    writer.close()
    assert received == [b"first\n", *lines]


async def test_follow_waits_for_file_and_accepts_callable_stop(log_dir: Path) -> None:
    path = log_dir / "later-json.log"
    done = False
    received: list[LogEntry] = []

    async def consume() -> None:
        async for entry in follow(path, stop=lambda: done, stdout=False):
            received.append(entry)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.1)
    with JsonFileWriter(path) as writer:
        writer.write("stdout", b"ignored\n")
        writer.write("stderr", b"seen\n")
    done = True
    await asyncio.wait_for(task, 5)
    assert [(e.stream, e.data) for e in received] == [("stderr", b"seen\n")]


def test_stdcopy_round_trip() -> None:
    stream = frame(STDOUT, b"hello\n") + frame(STDERR, b"") + frame(STDERR, b"x" * 70000)
    assert stream[:8] == b"\x01\x00\x00\x00\x00\x00\x00\x06"
    demuxer = Demuxer()
    frames: list[tuple[int, bytes]] = []
    for start in range(0, len(stream), 7):  # fed in awkward pieces
        frames.extend(demuxer.feed(stream[start : start + 7]))
    demuxer.close()
    assert frames == [(STDOUT, b"hello\n"), (STDERR, b""), (STDERR, b"x" * 70000)]
    with pytest.raises(InvalidArgument, match="Unrecognized input header: 9"):
        Demuxer().feed(b"\x09\x00\x00\x00\x00\x00\x00\x01x")
    torn = Demuxer()
    torn.feed(frame(STDOUT, b"abc")[:5])
    with pytest.raises(InvalidArgument):
        torn.close()


def test_logs_endpoint_encoding() -> None:
    entry = LogEntry(stream="stderr", data=b"boom\n", time=T0, nanos=123456789)
    assert encode_for_logs(entry, timestamps=False, multiplexed=False) == b"boom\n"
    framed = encode_for_logs(entry, timestamps=True, multiplexed=True)
    assert Demuxer().feed(framed) == [(STDERR, b"2026-11-28T01:02:03.123456789Z boom\n")]


def test_log_opts_validation() -> None:
    assert parse_size("10m") == 10_000_000
    assert parse_size("1k") == 1000 and parse_size("2KB") == 2000 and parse_size("123") == 123
    assert parse_log_opts({"max-size": "1m", "max-file": "3"}) == (1_000_000, 3)
    assert parse_log_opts({}) == (None, 1)
    with pytest.raises(InvalidArgument, match="invalid size: 'ten'"):
        parse_size("ten")
    with pytest.raises(InvalidArgument, match="unknown log opt 'max-sise' for json-file log driver"):
        parse_log_opts({"max-sise": "1m"})
    with pytest.raises(InvalidArgument, match="max-file cannot be less than 1"):
        parse_log_opts({"max-file": "0"})
    with pytest.raises(InvalidArgument, match="max-size must be a positive number"):
        parse_log_opts({"max-size": "0"})


# ---------------------------------------------------------------------------------------------- fast paths


@pytest.mark.parametrize("data", [
    b"plain line\n\nanother one {}[]()\n" * 50,  # the bulk path
    b'quotes " and \\ and <html> & \t tab\n' * 3,  # escapes: line by line
    "h\u00e9llo \u2028 w\u00f6rld\n".encode() * 3 + b"bad \xff utf-8\n",
    b"y" * (MAX_PARTIAL_BYTES + 5) + b"\n",  # a line written as two entries
], ids=["plain", "escapes", "unicode", "long"])
def test_writer_bulk_encoding_is_the_per_line_encoding(log_dir: Path, data: bytes) -> None:
    path = log_dir / "c-json.log"
    with JsonFileWriter(path) as writer:
        writer.write("stderr", data, now=T0)
    if len(data) > MAX_PARTIAL_BYTES:
        pieces = [data[:MAX_PARTIAL_BYTES], data[MAX_PARTIAL_BYTES:]]
    else:
        pieces = data.splitlines(keepends=True)
    assert path.read_bytes() == b"".join(encode_entry("stderr", piece, datetime_to_ns(T0)) for piece in pieces)
    assert b"".join(lines_of(read_entries(path))) == data.replace(b"\xff", "\ufffd".encode())


def test_writer_bulk_path_rotates_where_the_per_line_path_does(log_dir: Path) -> None:
    one, many = log_dir / "one", log_dir / "many"
    one.mkdir()
    many.mkdir()
    with JsonFileWriter(one / "c-json.log", max_size=1000, max_files=3) as writer:
        for number in range(40):
            writer.write("stdout", f"line {number:02d}\n".encode(), now=T0)
    with JsonFileWriter(many / "c-json.log", max_size=1000, max_files=3) as writer:
        writer.write("stdout", b"".join(f"line {number:02d}\n".encode() for number in range(40)), now=T0)
    for name in ("c-json.log", "c-json.log.1", "c-json.log.2"):
        assert (one / name).read_bytes() == (many / name).read_bytes()


async def _collect(path: Path, **kwargs: Any) -> list[LogEntry]:
    return [entry async for entry in follow(path, stop=lambda: True, **kwargs)]


def _write_mixed(path: Path) -> list[tuple[str, bytes]]:
    """stdout runs (plain and escaped), stderr lines, a foreign line and a torn one; returns what readers show."""
    shown: list[tuple[str, bytes]] = []
    with JsonFileWriter(path) as writer:
        for number in range(300):
            stream = "stderr" if number % 100 == 99 else "stdout"
            line = (f"<{number}> \"quoted\"\n" if number % 50 == 7 else f"line {number:03d} " + "x" * 200 + "\n").encode()
            writer.write(stream, line, now=T0 + timedelta(milliseconds=number))
            shown.append((stream, line))
    with open(path, "ab") as fh:
        fh.write(b"not json at all\n")
        fh.write(b'{"log":"torn\\n","stream":"std')
    return shown


@pytest.fixture
def fast_blocks(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Small reads (so a file is many blocks), and for each block whether the bulk path took it."""
    monkeypatch.setattr(jsonfile, "READ_CHUNK", 2048)
    taken: list[bool] = []
    real = jsonfile._fast_block

    def spy(block: bytes, selection: Any) -> Any:
        result = real(block, selection)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(jsonfile, "_fast_block", spy)
    return taken


async def test_coalesced_follow_merges_each_stream_run_in_order(log_dir: Path, fast_blocks: list[bool]) -> None:
    path = log_dir / "c-json.log"
    shown = _write_mixed(path)
    entries = await _collect(path, coalesce=4096)
    # Same bytes, same order; consecutive lines of a stream merged into entries of at most 4096 bytes cut at line
    # ends; a stream switch always starts a new entry.
    runs: list[tuple[str, bytes]] = []
    for stream, line in shown:
        if runs and runs[-1][0] == stream:
            runs[-1] = (stream, runs[-1][1] + line)
        else:
            runs.append((stream, line))
    merged: list[tuple[str, bytes]] = []
    for entry in entries:
        assert len(entry.data) <= 4096 and entry.data.endswith(b"\n")
        if merged and merged[-1][0] == entry.stream:
            merged[-1] = (entry.stream, merged[-1][1] + entry.data)
        else:
            merged.append((entry.stream, entry.data))
    assert merged == runs
    assert len(entries) < len(shown) // 4
    assert True in fast_blocks and False in fast_blocks  # plain blocks in bulk, the others line by line
    assert entries[0].time == T0
    # Per line (no coalescing) it is the line-by-line reader's answer.
    per_line = await _collect(path)
    assert [(e.stream, e.data) for e in per_line] == shown == [(e.stream, e.data) for e in read_entries(path)]


async def test_coalesced_follow_filters_by_time_and_stream(log_dir: Path, fast_blocks: list[bool]) -> None:
    path = log_dir / "c-json.log"
    shown = _write_mixed(path)
    since, until = T0 + timedelta(milliseconds=120), T0 + timedelta(milliseconds=250)
    window = [(s, line) for n, (s, line) in enumerate(shown) if 120 <= n <= 250]
    entries = await _collect(path, coalesce=1 << 16, since=since, until=until)
    assert b"".join(e.data for e in entries) == b"".join(line for _, line in window)
    assert True in fast_blocks
    for moment in (T0 + timedelta(milliseconds=n) for n in (0, 1, 33, 64, 65, 200, 299)):  # at block edges too
        later = await _collect(path, coalesce=1 << 16, since=moment)
        expected = [line for n, (_, line) in enumerate(shown) if T0 + timedelta(milliseconds=n) >= moment]
        assert b"".join(e.data for e in later) == b"".join(expected)
        until_moment = await _collect(path, coalesce=1 << 16, until=moment)
        expected = [line for n, (_, line) in enumerate(shown) if T0 + timedelta(milliseconds=n) <= moment]
        assert b"".join(e.data for e in until_moment) == b"".join(expected)
    stderr = await _collect(path, coalesce=1 << 16, stdout=False)
    assert {e.stream for e in stderr} == {"stderr"}
    assert b"".join(e.data for e in stderr) == b"".join(line for s, line in shown if s == "stderr")
    for count in (0, 1, 3, 20, 150, 299, 300, 1000):  # within a bulk block, at its edges, all of them
        tail = await _collect(path, coalesce=1 << 16, tail=count)
        assert b"".join(e.data for e in tail) == b"".join(line for _, line in shown[len(shown) - count :][:count])
        assert lines_of(await _collect(path, tail=count)) == [line for _, line in shown][len(shown) - count :][:count]
    # A since past every line: nothing; one before all of them: everything.
    assert await _collect(path, coalesce=1 << 16, since=T0 + timedelta(seconds=5)) == []
    everything = await _collect(path, coalesce=1 << 16, since=T0 - timedelta(seconds=5))
    assert b"".join(e.data for e in everything) == b"".join(line for _, line in shown)


async def test_follow_reads_a_bounded_piece_at_a_time(log_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonfile, "READ_CHUNK", 4096)
    path = log_dir / "c-json.log"
    with JsonFileWriter(path, max_size=50_000, max_files=3) as writer:
        for number in range(1000):
            writer.write("stdout", f"{number:05d}\n".encode(), now=T0)
    reads: list[int] = []
    real_pread = os.pread

    def pread(fd: int, size: int, offset: int) -> bytes:
        reads.append(size)
        return real_pread(fd, size, offset)

    monkeypatch.setattr(os, "pread", pread)
    data = b"".join(e.data for e in await _collect(path, coalesce=1024))
    kept = lines_of(read_entries(path))
    assert data == b"".join(kept) and kept[-1] == b"00999\n"  # across the rotated files, in order
    assert max(reads) == 4096


async def test_attach_pump_stops_reading_ahead_of_a_slow_client() -> None:
    from aiodock.engine.backend import OutputChunk
    from aiodock.engine.containers import _PUMP_DEPTH, _pumped

    produced = 0

    async def source() -> AsyncIterator[OutputChunk]:
        nonlocal produced
        for number in range(100):
            produced += 1
            yield OutputChunk("stdout", f"{number}\n".encode())

    chunks = _pumped(source())
    first = await anext(chunks)
    await asyncio.sleep(0.05)  # a client that does not read: the pump waits instead of buffering it all
    assert first.data == b"0\n" and produced <= _PUMP_DEPTH + 2
    rest = [chunk.data async for chunk in chunks]
    assert rest == [f"{n}\n".encode() for n in range(1, 100)]


def test_log_driver_settings() -> None:
    from aiodock.logs.drivers import (
        LOCAL_MAX_FILES,
        LOCAL_MAX_SIZE,
        LogSettings,
        log_settings,
    )

    assert log_settings(None, {}) == LogSettings("json-file", None, 1, readable=True)
    assert log_settings("json-file", {"max-size": "2k", "max-file": "4", "mode": "non-blocking"}) == \
        LogSettings("json-file", 2000, 4, readable=True)
    assert log_settings("local", {}) == LogSettings("local", LOCAL_MAX_SIZE, LOCAL_MAX_FILES, readable=True)
    assert log_settings("local", {"max-file": "2"}) == LogSettings("local", LOCAL_MAX_SIZE, 2, readable=True)
    assert log_settings("none", {"anything": "goes"}) == LogSettings("none", None, 1, readable=False)
    with pytest.raises(InvalidArgument, match="logger: no log driver named 'journald' is registered"):
        log_settings("journald", {})
    with pytest.raises(InvalidArgument, match="unknown log opt 'env' for local log driver"):
        log_settings("local", {"env": "A"})
