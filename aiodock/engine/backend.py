"""The engine's backends as the transport adapters see them (moby's router/<resource>/backend.go idea).

The Engine API (aiodock.api) depends only on these protocols; aiodock.engine provides the implementations and
the daemon wires them. Shapes of the returned dicts are Docker's Engine API JSON, field for field.
Errors are aiodock.errors classes; the API maps them to status codes once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class WaitResult:
    status_code: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class OutputChunk:
    """A piece of container output: stream is "stdout" or "stderr"."""

    stream: str
    data: bytes
    time: datetime | None = None


@dataclass(frozen=True, slots=True)
class LogOptions:
    follow: bool = False
    stdout: bool = True
    stderr: bool = True
    since: datetime | None = None
    until: datetime | None = None
    timestamps: bool = False
    tail: int | None = None  # None = all


@dataclass(frozen=True, slots=True)
class AttachOptions:
    stream: bool = True
    stdout: bool = True
    stderr: bool = True
    stdin: bool = False
    logs: bool = False


class ContainerBackend(Protocol):
    async def create(self, name: str | None, body: dict[str, Any]) -> tuple[str, list[str]]:
        """POST /containers/create: body is Docker's ContainerConfig with HostConfig and NetworkingConfig.
        Returns (id, warnings). NotFound "No such image: busybox:latest" when the image is missing."""

    async def start(self, ref: str) -> None:
        """NotModified when already running."""

    async def stop(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        """NotModified when not running."""

    async def kill(self, ref: str, signal: str | None = None) -> None:
        """Conflict "Container <id> is not running" when not running; InvalidArgument for a bad signal."""

    async def restart(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None: ...

    async def wait(self, ref: str, condition: str = "not-running") -> Awaitable[WaitResult]:
        """Validate now (NotFound, InvalidArgument for an unknown condition) and register the waiter before
        returning; the awaitable resolves when the condition is met. The API sends headers in between."""

    async def remove(self, ref: str, force: bool = False, volumes: bool = False, link: bool = False) -> None:
        """Conflict "cannot remove container \"/name\": container is running: stop the container before
        removing or force remove" when running without force."""

    async def rename(self, ref: str, new_name: str) -> None: ...

    async def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        """{"ContainersDeleted": [...], "SpaceReclaimed": n}"""

    async def list(self, all: bool = False, limit: int = -1, size: bool = False,
                   filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        """GET /containers/json items."""

    async def inspect(self, ref: str, size: bool = False) -> dict[str, Any]:
        """GET /containers/{id}/json."""

    async def logs(self, ref: str, options: LogOptions) -> tuple[bool, AsyncIterator[OutputChunk]]:
        """(tty, chunks). With follow, the iterator ends when the container stops."""

    async def attach(self, ref: str, options: AttachOptions) -> tuple[bool, AsyncIterator[OutputChunk]]:
        """(tty, chunks): live output from now on (plus past logs when options.logs) until the container stops.
        Registered before returning, so output produced right after a following start is never lost."""


class ImageBackend(Protocol):
    async def import_tar(self, src: Path, repo: str | None, tag: str | None, changes: list[str],
                         message: str = "") -> str: ...

    async def load(self, src: Path) -> list[str]:
        """Lines as Docker words them: "Loaded image: busybox:latest", "Loaded image ID: sha256:..."."""

    async def save(self, refs: list[str], dest: Path) -> None: ...

    async def list_images(self, all: bool = False,
                          filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]: ...

    async def inspect(self, ref: str) -> dict[str, Any]: ...

    async def history(self, ref: str) -> list[dict[str, Any]]: ...

    async def tag(self, ref: str, repo: str, tag: str | None) -> None: ...

    async def remove(self, ref: str, force: bool = False, prune: bool = True) -> list[dict[str, Any]]: ...

    async def prune(self, dangling_only: bool = True,
                    filters: dict[str, list[str]] | None = None) -> dict[str, Any]: ...


class SystemBackend(Protocol):
    async def info(self) -> dict[str, Any]:
        """GET /info with real figures."""

    async def version(self) -> dict[str, Any]:
        """GET /version."""
