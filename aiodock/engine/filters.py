"""Docker's list and prune filters shared by containers, images and volumes; the containers list's port and
network filters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiodock.engine.state import parse_rfc3339
from aiodock.errors import InvalidArgument


def labels_match(labels: Mapping[str, str], filters: Mapping[str, list[str]]) -> bool:
    """`label=key` / `label=key=value`: every one must match; `label!=...`: none may match."""
    for want in filters.get("label", []):
        key, sep, value = want.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    for unwanted in filters.get("label!", []):
        key, sep, value = unwanted.partition("=")
        if key in labels and (not sep or labels[key] == value):
            return False
    return True


def until_timestamp(values: Sequence[str] | None) -> float | None:
    """The prune filters' `until` (a Unix time or an RFC 3339 one) as a Unix time; None when not given."""
    if not values:
        return None
    raw = values[0]
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        return parse_rfc3339(raw).timestamp()
    except ValueError:
        raise InvalidArgument(f"invalid until filter: {raw}") from None


def _parse_uint16(text: str) -> int:
    """Go's strconv.ParseUint(text, 10, 16), with its error texts."""
    if not text or not text.isascii() or not text.isdigit():
        raise ValueError(f'strconv.ParseUint: parsing "{text}": invalid syntax')
    value = int(text)
    if value > 65535:
        raise ValueError(f'strconv.ParseUint: parsing "{text}": value out of range')
    return value


def port_filter(key: str, values: list[str]) -> set[str]:
    """`publish=` / `expose=` values (`<port>[/<proto>]` or `<start>-<end>[/<proto>]`) as the set of "port/proto"
    they name, with Docker's errors (400)."""
    wanted: set[str] = set()
    for value in values:
        if ":" in value:
            raise InvalidArgument(f"filter for '{key}' should not contain ':': {value}")
        parts = value.split("/")
        if not value or not parts[0]:
            proto, port = "", ""
        elif len(parts) == 1 or not parts[1]:
            proto, port = "tcp", parts[0]
        else:
            proto, port = parts[1], parts[0]
        try:
            if not port:
                raise ValueError("Empty string specified for ports.")
            if "-" in port:
                first, last = port.split("-")[:2]
                start, end = _parse_uint16(first), _parse_uint16(last)
                if end < start:
                    raise ValueError(f"Invalid range specified for the Port: {port}")
            else:
                start = end = _parse_uint16(port)
        except ValueError as exc:
            raise InvalidArgument(f"error while looking up for {key} {value}: {exc}") from None
        wanted.update(f"{number}/{proto}" for number in range(start, end + 1))
    return wanted


def ports_match(ports: Sequence[Mapping[str, Any]], publish: set[str], expose: set[str]) -> bool:
    """Docker's list rule: some port of the container (its `Ports` entries) is published on one of ``publish``
    (host port/proto) or exposes one of ``expose`` (container port/proto)."""
    for port in ports:
        if f"{port.get('PublicPort', 0)}/{port.get('Type')}" in publish:
            return True
        if f"{port.get('PrivatePort')}/{port.get('Type')}" in expose:
            return True
    return False


def network_match(networks: Mapping[str, Mapping[str, Any]], values: list[str]) -> bool:
    """`network=<name|id prefix>`: a network of the container (NetworkSettings.Networks) has that name, or an id
    with that prefix."""
    for value in values:
        if value in networks:
            return True
        if any(str(ep.get("NetworkID") or "").startswith(value) for ep in networks.values()):
            return True
    return False
