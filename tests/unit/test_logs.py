"""json-file writer/reader/follower and stdcopy framing, on real files in a temp dir."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aiodock.errors import InvalidArgument
from aiodock.logs.format import encode_for_logs, format_entry
from aiodock.logs.jsonfile import (
    MAX_PARTIAL_BYTES,
    JsonFileWriter,
    LogEntry,
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
