"""Dockerfile parsing for the legacy builder: instructions, their flags and forms, and variable substitution.

Follows Docker's classic parser: ``#`` comments and the ``escape`` directive at the top, line continuations with
the escape character, instruction names in any case, the JSON (exec) form of RUN, CMD, ENTRYPOINT, SHELL, COPY,
ADD and VOLUME, ``--flag=value`` options, and ``$VAR`` / ``${VAR}`` / ``${VAR:-word}`` / ``${VAR:+word}``
substitution in the instructions Docker substitutes (ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER,
VOLUME, WORKDIR, ARG, ONBUILD is refused).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

from aiodock.errors import InvalidArgument

KNOWN = frozenset({
    "FROM", "RUN", "CMD", "ENTRYPOINT", "ENV", "ARG", "LABEL", "EXPOSE", "WORKDIR", "USER", "VOLUME", "COPY", "ADD",
    "STOPSIGNAL", "SHELL", "HEALTHCHECK", "MAINTAINER", "ONBUILD",
})
SUBSTITUTED = frozenset({"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
                         "ARG"})
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_FLAG = re.compile(r"^--([a-z][a-z-]*)(?:=(.*))?$")


@dataclass(frozen=True)
class Instruction:
    """One instruction: its name (upper case), its flags, the rest of the line, and the JSON form's list."""

    name: str
    rest: str
    flags: tuple[tuple[str, str], ...]
    json_args: tuple[str, ...] | None  # the exec form, when the rest is a JSON array of strings
    line: int
    original: str

    def flag(self, name: str) -> str | None:
        return next((value for key, value in self.flags if key == name), None)


def parse(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile; InvalidArgument with Docker's messages for what it refuses."""
    lines = text.splitlines()
    escape = "\\"
    start = 0
    for index, raw in enumerate(lines):  # parser directives: only before any other line
        match = _DIRECTIVE.match(raw.strip())
        if not match:
            break
        if match.group(1).lower() == "escape":
            escape = match.group(2)
            if escape not in ("\\", "`"):
                raise InvalidArgument(f"invalid ESCAPE '{escape}'. Must be ` or \\")
        start = index + 1
    instructions: list[Instruction] = []
    buffer: list[str] = []
    first_line = 0
    for number, raw in enumerate(lines[start:], start=start + 1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):  # comments inside a continued instruction are dropped
            continue
        if not buffer:
            first_line = number
        if raw.rstrip().endswith(escape) and not raw.rstrip().endswith(escape * 2):
            buffer.append(raw.rstrip()[:-1])
            continue
        buffer.append(raw)
        instructions.append(_instruction(" ".join(part.strip() for part in buffer if part.strip()), first_line))
        buffer = []
    if buffer:
        instructions.append(_instruction(" ".join(part.strip() for part in buffer if part.strip()), first_line))
    if not instructions:
        raise InvalidArgument("the Dockerfile cannot be empty")
    if instructions[0].name not in ("FROM", "ARG"):
        raise InvalidArgument("Please provide a source image with `from` prior to commit")
    return instructions


def _instruction(text: str, line: int) -> Instruction:
    word, _, rest = text.partition(" ")
    name = word.upper()
    if name not in KNOWN:
        raise InvalidArgument(f"Dockerfile parse error line {line}: unknown instruction: {word.upper()}")
    rest = rest.strip()
    flags: list[tuple[str, str]] = []
    if name in ("COPY", "ADD", "FROM", "HEALTHCHECK", "RUN"):
        while rest.startswith("--"):
            token, _, remainder = rest.partition(" ")
            match = _FLAG.match(token)
            if not match:
                break
            flags.append((match.group(1), match.group(2) or ""))
            rest = remainder.strip()
    json_args: tuple[str, ...] | None = None
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            json_args = tuple(value)
    return Instruction(name, rest, tuple(flags), json_args, line, text)


_VAR = re.compile(r"\\\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def substitute(text: str, env: dict[str, str]) -> str:
    """Docker's variable substitution: ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR:+alternative}``;
    ``\\$`` is a literal dollar."""
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "\\$":
            return "$"
        name = match.group(1) or match.group(4)
        value = env.get(name)
        if match.group(2) == "-":
            return value if value else substitute(match.group(3), env)
        if match.group(2) == "+":
            return substitute(match.group(3), env) if value else ""
        return value or ""
    return _VAR.sub(replace, text)


def key_values(rest: str, word: str, legacy: bool = True) -> list[tuple[str, str]]:
    """ENV and LABEL arguments (Dockerfiles, and the ``changes`` of import and commit): ``k=v k2="v 2"`` pairs, or
    with ``legacy`` (ENV) the old ``key value with spaces`` form."""
    try:
        words = shlex.split(rest)
    except ValueError as exc:
        raise InvalidArgument(f"{word}: {exc}") from None
    if not words:
        raise InvalidArgument(f"{word} requires at least one argument")
    if legacy and "=" not in words[0]:
        key, _, value = rest.partition(" ")
        if not value.strip():
            raise InvalidArgument(f"{word} must have two arguments")
        return [(key, value.strip())]
    pairs = []
    for item in words:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"{word} names can not be blank" if not key else f"{word} must have two arguments")
        pairs.append((key, value))
    return pairs
