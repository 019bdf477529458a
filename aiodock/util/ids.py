"""Identifiers: 64-hex ids, Docker's container name rule, short ids."""

from __future__ import annotations

import re
import secrets

from aiodock.errors import InvalidArgument

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
ID_RE = re.compile(r"^[0-9a-f]{64}$")


def new_id() -> str:
    """A random 64-hex id, never all digits (Docker avoids ids that look like numbers)."""
    while True:
        value = secrets.token_hex(32)
        if not value[:12].isdigit():
            return value


def short_id(value: str) -> str:
    return value.removeprefix("sha256:")[:12]


def validate_container_name(name: str) -> str:
    """Return the name without its leading slash, or raise Docker's error text."""
    if not NAME_RE.match(name):
        raise InvalidArgument(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    return name.lstrip("/")
