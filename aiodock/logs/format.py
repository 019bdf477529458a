"""Bytes the Engine API's ``GET /containers/{id}/logs`` sends for one log entry."""

from __future__ import annotations

from aiodock.logs.jsonfile import LogEntry, format_time
from aiodock.logs.stdcopy import STDERR, STDOUT, frame


def format_entry(entry: LogEntry, timestamps: bool) -> bytes:
    """The entry's data, prefixed with ``"2026-11-28T01:02:03.123456789Z "`` when ``timestamps``."""
    if not timestamps:
        return entry.data
    return format_time(entry.timestamp_ns, fixed=True).encode("ascii") + b" " + entry.data


def encode_for_logs(entry: LogEntry, *, timestamps: bool, multiplexed: bool) -> bytes:
    """One entry as the logs endpoint sends it: stdcopy-framed for non-TTY containers, raw for TTY ones."""
    payload = format_entry(entry, timestamps)
    if not multiplexed:
        return payload
    return frame(STDERR if entry.stream == "stderr" else STDOUT, payload)
