"""Signal names as Docker accepts them: "SIGTERM", "TERM", "term", "15"."""

from __future__ import annotations

import signal as _signal

from aiodock.errors import InvalidArgument


def parse_signal(value: str | int | None, default: int = _signal.SIGKILL) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, int) or value.isdigit():
        number = int(value)
        if not 0 < number < _signal.NSIG:
            raise InvalidArgument(f"Invalid signal: {value}")
        return number
    name = value.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(_signal.Signals[name])
    except KeyError:
        if name.startswith("SIGRTMIN+") and name[9:].isdigit():
            return int(_signal.SIGRTMIN) + int(name[9:])
        raise InvalidArgument(f"Invalid signal: {value}") from None
