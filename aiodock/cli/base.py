"""Shared plumbing of the CLI commands: the command spec, context, output helpers and argv splitting."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiodock.client import ClientError, DaemonUnreachable, DockerClient


class UsageError(Exception):
    """Bad flags or arguments; printed as "aiodock: <message>" plus a usage hint, exit status 1."""


class CliExit(Exception):  # noqa: N818 - mirrors SystemExit
    """Leave with a status after the command already printed what it had to."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Parser(argparse.ArgumentParser):
    """argparse that raises ``UsageError`` instead of exiting with status 2 (docker exits 1 on bad flags)."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{message}\nSee '{self.prog} --help'.")


@dataclass
class Context:
    host: str | None
    debug: bool = False
    _client: DockerClient | None = field(default=None, repr=False)

    @property
    def client(self) -> DockerClient:
        if self._client is None:
            self._client = DockerClient(self.host)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    build: Callable[[str], argparse.ArgumentParser]
    run: Callable[[Context, argparse.Namespace], Awaitable[int]]
    split_positional: bool = False  # options end at the first positional (run: IMAGE [COMMAND] [ARG...])


def out(text: str = "", end: str = "\n") -> None:
    sys.stdout.write(text + end)
    sys.stdout.flush()


def err(text: str, end: str = "\n") -> None:
    sys.stderr.write(text + end)
    sys.stderr.flush()


def daemon_error(exc: ClientError) -> str:
    """The docker CLI's wording: connection problems as is, daemon answers as "Error response from daemon"."""
    if isinstance(exc, DaemonUnreachable) or exc.status == 0:
        return exc.message
    return f"Error response from daemon: {exc.message}"


def _write_binary(stream: Any, data: bytes) -> None:
    stream.buffer.write(data)
    stream.buffer.flush()


async def write_stdout(data: bytes) -> None:
    """Write raw bytes to stdout without blocking the event loop on a slow pipe."""
    await asyncio.to_thread(_write_binary, sys.stdout, data)


async def write_stderr(data: bytes) -> None:
    await asyncio.to_thread(_write_binary, sys.stderr, data)


async def for_each(refs: Iterable[str], action: Callable[[str], Awaitable[None]], echo: bool = True) -> int:
    """Run ``action`` on each ref in order, printing the ref on success and each error; 1 if any failed."""
    status = 0
    for ref in refs:
        try:
            await action(ref)
        except ClientError as exc:
            if isinstance(exc, DaemonUnreachable):
                raise
            err(daemon_error(exc))
            status = 1
        else:
            if echo:
                out(ref)
    return status


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def split_at_first_positional(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[list[str], list[str]]:
    """Split ``argv`` after its first positional argument (interspersed options are not allowed after it).

    ``(["-d", "--name", "x", "busybox"], ["ls", "-l"])`` for ``-d --name x busybox ls -l``.
    """
    actions = parser._option_string_actions  # noqa: SLF001 - argparse has no public lookup
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            return argv[:i] + argv[i + 1:i + 2], argv[i + 2:]
        if tok.startswith("--"):
            action = actions.get(tok.split("=", 1)[0])
            i += 2 if action is not None and "=" not in tok and _takes_value(action) else 1
            continue
        if tok.startswith("-") and len(tok) > 1:
            skip = 1
            for pos in range(1, len(tok)):
                action = actions.get("-" + tok[pos])
                if action is not None and _takes_value(action):
                    if pos == len(tok) - 1:
                        skip = 2
                    break
            i += skip
            continue
        return argv[:i + 1], argv[i + 1:]
    return argv, []
