"""Dockerfile parsing for the legacy builder: instructions, their flags and forms, and variable substitution.

Follows Docker's classic parser: ``#`` comments and the ``escape`` directive at the top, line continuations with
the escape character, instruction names in any case, the JSON (exec) form of RUN, CMD, ENTRYPOINT, SHELL, COPY,
ADD and VOLUME, ``--flag=value`` options, and ``$VAR`` / ``${VAR}`` / ``${VAR:-word}`` / ``${VAR:+word}``
substitution in the instructions Docker substitutes (ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER,
VOLUME, WORKDIR, ARG, ONBUILD is refused).
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiodock.errors import InvalidArgument

KNOWN = frozenset({
    "FROM", "RUN", "CMD", "ENTRYPOINT", "ENV", "ARG", "LABEL", "EXPOSE", "WORKDIR", "USER", "VOLUME", "COPY", "ADD",
    "STOPSIGNAL", "SHELL", "HEALTHCHECK", "MAINTAINER", "ONBUILD",
})
SUBSTITUTED = frozenset({"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
                         "ARG"})
#: Instructions that only change the image config: the ``changes`` of import and commit, and builder steps.
CONFIG_INSTRUCTIONS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "USER", "WORKDIR", "LABEL", "VOLUME", "STOPSIGNAL",
                       "ONBUILD")
DEFAULT_SHELL = ("/bin/sh", "-c")
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
    array = json_array(rest)
    return Instruction(name, rest, tuple(flags), tuple(array) if array is not None else None, line, text)


def json_array(rest: str) -> list[str] | None:
    """The exec (JSON) form of an instruction's arguments, or None when they are in the shell form."""
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return None


def apply_instruction(config: dict[str, Any], word: str, rest: str,
                      shell: Sequence[str] = DEFAULT_SHELL) -> None:
    """Apply one of :data:`CONFIG_INSTRUCTIONS` (upper case) to a container config, in place, with Docker's checks.
    ``shell``: what a shell-form CMD or ENTRYPOINT runs with (a Dockerfile's SHELL)."""
    if not rest:
        raise InvalidArgument(f"{word} requires at least one argument")
    if word in ("CMD", "ENTRYPOINT"):
        array = json_array(rest)
        config["Cmd" if word == "CMD" else "Entrypoint"] = array if array is not None else [*shell, rest]
    elif word == "ENV":
        env = list(config.get("Env") or [])
        for key, value in key_values(rest, "ENV", legacy=True):
            entry = f"{key}={value}"
            at = next((i for i, item in enumerate(env) if item.partition("=")[0] == key), None)
            if at is None:
                env.append(entry)
            else:
                env[at] = entry  # in place, as Docker's dispatcher does
        config["Env"] = env
    elif word == "LABEL":
        config["Labels"] = {**(config.get("Labels") or {}), **dict(key_values(rest, "LABEL", legacy=False))}
    elif word == "EXPOSE":
        ports = dict(config.get("ExposedPorts") or {})
        for item in rest.split():
            port, _, proto = item.partition("/")
            if not port or not all(part.isdigit() for part in port.split("-")):
                raise InvalidArgument(f"invalid containerPort: {port}")
            ports[f"{port}/{(proto or 'tcp').lower()}"] = {}
        config["ExposedPorts"] = ports
    elif word == "VOLUME":
        volumes = dict(config.get("Volumes") or {})
        array = json_array(rest)
        for path in array if array is not None else rest.split():
            if not path:
                raise InvalidArgument("VOLUME specified can not be an empty string")
            volumes[path] = {}
        config["Volumes"] = volumes
    elif word == "USER":
        config["User"] = rest
    elif word == "WORKDIR":
        config["WorkingDir"] = posixpath.normpath(posixpath.join(config.get("WorkingDir") or "/", rest))
    elif word == "STOPSIGNAL":
        config["StopSignal"] = rest
    elif word == "ONBUILD":
        config["OnBuild"] = list(config.get("OnBuild") or []) + [rest]
    else:
        raise InvalidArgument(f"{word} is not a valid change command")


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """``docker import/commit --change`` instructions applied to a container config (returns a new dict)."""
    cfg = json.loads(json.dumps(config))
    for change in changes:
        instr, _, rest = change.strip().partition(" ")
        if not instr:
            continue
        if instr.upper() not in CONFIG_INSTRUCTIONS:
            raise InvalidArgument(f"{instr} is not a valid change command")
        apply_instruction(cfg, instr.upper(), rest.strip())
    return dict(cfg)


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
