"""Query-string and body parsing the way Docker's httputils does it; bad input raises InvalidArgument."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from aiodock.errors import InvalidArgument

_FALSE = frozenset({"", "0", "no", "false", "none"})


def boolean(request: web.Request, key: str, default: bool = False) -> bool:
    """httputils.BoolValueOrDefault: absent -> default; "", 0, no, false, none -> False; anything else True."""
    if key not in request.query:
        return default
    return request.query[key].strip().lower() not in _FALSE


def integer(request: web.Request, *keys: str, default: int | None = None) -> int | None:
    """The first present key of ``keys`` as an int (strconv.Atoi); empty -> default."""
    for key in keys:
        raw = request.query.get(key, "")
        if raw == "":
            continue
        try:
            return int(raw)
        except ValueError:
            raise InvalidArgument(f'strconv.Atoi: parsing "{raw}": invalid syntax') from None
    return default


def string(request: web.Request, key: str) -> str | None:
    value = request.query.get(key, "")
    return value or None


def filters(request: web.Request, key: str = "filters") -> dict[str, list[str]]:
    """Docker filters JSON, {"k": ["v"]} or the legacy {"k": {"v": true}}, as dict[str, list[str]]."""
    raw = request.query.get(key, "")
    if raw == "":
        return {}
    return parse_filters(raw)


def parse_filters(raw: str) -> dict[str, list[str]]:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"invalid filter: {go_json_error(raw, exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidArgument("invalid filter: json: cannot unmarshal "
                              f"{_go_kind(data)} into Go value of type map[string]map[string]bool")
    result: dict[str, list[str]] = {}
    for name, values in data.items():
        if isinstance(values, list) and all(isinstance(v, str) for v in values):
            result[name] = list(values)
        elif isinstance(values, dict) and all(isinstance(v, bool) for v in values.values()):
            result[name] = [v for v, on in values.items() if on]
        else:
            raise InvalidArgument(f"invalid filter: unsupported value for filter {name!r}")
    return result


_UNIX_TS = re.compile(r"^-?\d+(?:\.\d{1,9})?$")


def timestamp(request: web.Request, key: str) -> datetime | None:
    """Docker's since/until: unix seconds with an optional fraction (what the CLI sends) or RFC3339."""
    raw = request.query.get(key, "")
    if raw == "" or raw == "0":
        return None
    if _UNIX_TS.match(raw):
        seconds, _, frac = raw.partition(".")
        return datetime.fromtimestamp(int(seconds), UTC).replace(microsecond=int((frac + "000000")[:6]))
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidArgument(f'failed to parse value as time or duration: "{raw}"') from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def tail(request: web.Request) -> int | None:
    """"all", absent, negative or not a number -> None (everything), as the daemon's strconv fallback does."""
    raw = request.query.get("tail", "all")
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 0 else None


async def json_object(request: web.Request, *, target: str, required: bool = True) -> dict[str, Any]:
    """Decode the body as a JSON object with Go-like messages for malformed input."""
    raw = (await request.read()).decode("utf-8", "replace")
    if raw.strip() == "":
        if required:
            raise InvalidArgument("invalid JSON: got EOF while reading request body")
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"invalid JSON: {go_json_error(raw, exc)}") from None
    if data is None and not required:
        return {}
    if not isinstance(data, dict):
        raise InvalidArgument(f"invalid JSON: json: cannot unmarshal {_go_kind(data)} into Go value of type {target}")
    return data


def go_json_error(doc: str, exc: json.JSONDecodeError) -> str:
    """Render a Python JSON error the way encoding/json words it."""
    if exc.pos >= len(doc.rstrip()):
        return "unexpected end of JSON input"
    char = doc[exc.pos]
    msg = exc.msg
    if msg.startswith("Expecting value"):
        context = "looking for beginning of value"
    elif msg.startswith("Expecting property name"):
        context = "looking for beginning of object key string"
    elif msg.startswith("Expecting ':'"):
        context = "after object key"
    elif msg.startswith("Expecting ',' delimiter"):
        context = "after object key:value pair" if doc.lstrip().startswith("{") else "after array element"
    elif msg.startswith("Extra data"):
        context = "after top-level value"
    else:
        context = "in string literal"
    return f"invalid character {char!r} {context}"


def _go_kind(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "object"
