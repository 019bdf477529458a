"""Docker CLI value formatting: short ids, go-units sizes and durations, quoting, ports."""

from __future__ import annotations

import json
import time
from typing import Any

from aiodock.util.humanize import human_duration

_DECIMAL_UNITS = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
_BINARY_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]
_RAM_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def truncate_id(ident: str) -> str:
    """``stringid.TruncateID``: drop an ``algo:`` prefix, keep 12 characters."""
    if ":" in ident:
        ident = ident.split(":", 1)[1]
    return ident[:12]


def _go_g(value: float, precision: int) -> str:
    return f"{value:.{precision}g}"


def human_size(size: float, precision: int = 3) -> str:
    """``units.HumanSizeWithPrecision``: decimal units, e.g. 2430000 -> "2.43MB"."""
    i = 0
    while size >= 1000 and i < len(_DECIMAL_UNITS) - 1:
        size /= 1000
        i += 1
    return f"{_go_g(size, precision)}{_DECIMAL_UNITS[i]}"


def bytes_size(size: float) -> str:
    """``units.BytesSize``: binary units with 4 significant digits, e.g. "7.763GiB"."""
    i = 0
    while size >= 1024 and i < len(_BINARY_UNITS) - 1:
        size /= 1024
        i += 1
    return f"{_go_g(size, 4)}{_BINARY_UNITS[i]}"


def ram_in_bytes(text: str) -> int:
    """``units.RAMInBytes``: "512m", "1g", "1.5GiB", "100k" (binary multiples)."""
    s = text.strip().lower().replace(" ", "")
    num = s.rstrip("kmgtpib")
    suffix = s[len(num):]
    if suffix.endswith("ib"):
        suffix = suffix[:-2]
    elif suffix.endswith("b") and suffix != "b":
        suffix = suffix[:-1]
    if suffix == "b":
        suffix = ""
    if suffix not in _RAM_UNITS or not num:
        raise ValueError(f"invalid size: '{text}'")
    try:
        value = float(num)
    except ValueError as exc:
        raise ValueError(f"invalid size: '{text}'") from exc
    return int(value * _RAM_UNITS[suffix])


def since(unix: float, now: float | None = None) -> str:
    """"5 seconds ago" for a unix timestamp."""
    return human_duration((time.time() if now is None else now) - unix) + " ago"


def ellipsis(text: str, width: int) -> str:
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    if width == 1:
        return text[0]
    return text[: width - 1] + "…"


def go_quote(text: str) -> str:
    """``strconv.Quote`` for the usual cases (printable non-ASCII is kept)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\x7f")


def format_ports(ports: list[dict[str, Any]] | None) -> str:
    """``DisplayablePorts`` without range grouping: "0.0.0.0:8080->80/tcp, 443/tcp"."""
    items: list[str] = []
    for p in ports or []:
        proto = p.get("Type", "tcp")
        private = p.get("PrivatePort")
        public = p.get("PublicPort")
        ip = p.get("IP", "")
        if public:
            host = f"[{ip}]" if ":" in ip else ip
            items.append(f"{host}:{public}->{private}/{proto}")
        else:
            items.append(f"{private}/{proto}")
    return ", ".join(sorted(dict.fromkeys(items)))


def split_repo_tag(ref: str) -> tuple[str, str]:
    """``busybox:1.36`` -> ("busybox", "1.36"); a port in the registry host is not a tag."""
    name, _, digest = ref.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:]
    return name, ""
