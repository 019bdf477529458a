"""docker's ``--since``/``--until`` values: a Go duration relative to now, RFC 3339, a date, or unix seconds."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float | None:
    """Seconds in a Go duration like ``1h30m`` or ``10s``; None if ``text`` is not one."""
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) and pos > 0 else None


def parse_timestamp(value: str, now: float | None = None) -> str:
    """Convert to the Engine API's ``seconds[.nanoseconds]`` string like ``timetypes.GetTimestamp``."""
    now = time.time() if now is None else now
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return value
    duration = parse_go_duration(value)
    if duration is not None:
        return f"{now - duration:.9f}"
    text = value.replace("Z", "+00:00")
    for candidate in (text, text + "T00:00:00"):
        try:
            parsed = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        if parsed.tzinfo is None:
            parsed = parsed.astimezone()  # docker reads zone-less times as local time
        return f"{parsed.astimezone(UTC).timestamp():.9f}"
    raise ValueError(f"invalid value for timestamp: {value!r} (use a duration like 10m, RFC 3339 or unix seconds)")
