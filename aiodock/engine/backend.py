"""The engine's backends as the transport adapters see them (moby's router/<resource>/backend.go idea).

The Engine API (aiodock.api) depends only on these protocols; aiodock.engine provides the implementations and
the daemon wires them. Shapes of the returned dicts are Docker's Engine API JSON, field for field.
Errors are aiodock.errors classes; the API maps them to status codes once.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from dataclasses import dataclass, field
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
class BuildOptions:
    tags: tuple[str, ...] = ()
    dockerfile: str = "Dockerfile"
    build_args: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    target: str = ""
    quiet: bool = False
    remove: bool = True  # rm intermediate containers after a successful step
    force_remove: bool = False  # ... and after a failed one


class BuildBackend(Protocol):
    """POST /build: Docker's message stream for a build context tarball."""

    def build(self, context: Path, options: BuildOptions) -> AsyncGenerator[dict[str, Any], None]: ...


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
    detach_keys: str | None = None  # Docker's "ctrl-p,ctrl-q" syntax; None: the default (TTY only)


class StdinSink(Protocol):
    """Where an attach's client stdin goes (write each piece; close once the client's stdin ended)."""

    def write(self, data: bytes) -> Awaitable[None]: ...

    def close(self) -> Awaitable[None]: ...


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

    async def attach(self, ref: str, options: AttachOptions
                     ) -> tuple[bool, AsyncIterator[OutputChunk], StdinSink | None]:
        """(tty, chunks, stdin): live output from now on (plus past logs when options.logs) until the container
        stops (or the attach detaches). Registered before returning, so output produced right after a following
        start is never lost. stdin is None unless options.stdin and the container has OpenStdin."""

    async def resize(self, ref: str, height: int, width: int) -> None:
        """POST /containers/{id}/resize: Conflict "Container <id> is not running" when not running."""

    async def pause(self, ref: str) -> None:
        """Conflict "Container <id> is not running" / "Container <id> is already paused"."""

    async def unpause(self, ref: str) -> None:
        """Conflict "Container <id> is not paused"."""

    async def top(self, ref: str, ps_args: str = "") -> dict[str, Any]:
        """{"Titles": [...], "Processes": [[...], ...]}: host `ps` rows of the container's processes."""

    async def update(self, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /containers/{id}/update: body is Docker's UpdateConfig (Memory, MemorySwap, MemoryReservation,
        NanoCpus, CpuShares, CpuPeriod, CpuQuota, CpusetCpus, PidsLimit, RestartPolicy). Merged into the HostConfig
        and persisted; applied at once to a running container. Returns {"Warnings": [...]}. InvalidArgument for bad
        values ("Minimum memory limit allowed is 6MB"), Conflict "Cannot update container <id>: ..."."""


class ExecBackend(Protocol):
    async def create(self, ref: str, body: dict[str, Any]) -> str:
        """POST /containers/{id}/exec: returns the exec id. Conflict "container <id> is not running"."""

    async def start(self, exec_id: str, detach: bool = False
                    ) -> tuple[bool, AsyncIterator[OutputChunk], StdinSink | None] | None:
        """POST /exec/{id}/start: None when detached, else (tty, the exec's output until it exits (its exit code
        is recorded before the iterator ends), its stdin when attached). NotFound "No such exec instance: <id>"."""

    async def inspect(self, exec_id: str) -> dict[str, Any]:
        """GET /exec/{id}/json."""

    async def resize(self, exec_id: str, height: int, width: int) -> None:
        """POST /exec/{id}/resize."""


class EventsBackend(Protocol):
    async def stream(self, since: int | None = None, until: int | None = None,
                     filters: dict[str, list[str]] | None = None) -> AsyncIterator[Any]:
        """GET /events: validates now, then yields events (each has to_json()) from ``since`` (ns) on, live,
        until ``until`` (ns) when given."""


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

    async def pull(self, image: str, tag: str | None, platform: str | None = None,
                   auth_header: str | None = None) -> AsyncGenerator[dict[str, Any], None]:
        """POST /images/create?fromImage=: resolves the manifest first (errors raised here, before any output:
        NotFound "manifest for busybox:nope not found: ..."), then yields Docker's JSON progress messages.
        auth_header is the raw X-Registry-Auth header."""

    async def push(self, image: str, tag: str | None,
                   auth_header: str | None = None) -> AsyncGenerator[dict[str, Any], None]:
        """POST /images/{name}/push: NotFound "An image does not exist locally with the tag: ..." before any
        output, then the progress messages (the last two: "TAG: digest: sha256:... size: N" and the aux)."""

    async def login(self, body: dict[str, Any]) -> dict[str, str]:
        """POST /auth: {"Status": "Login Succeeded", "IdentityToken": ""}; 401 when the registry refuses."""

    async def distribution(self, image: str, auth_header: str | None = None) -> dict[str, Any]:
        """GET /distribution/{name}/json: {"Descriptor": {...}, "Platforms": [...]}."""

    async def search(self, term: str, limit: int | None, filters: dict[str, list[str]],
                     auth_header: str | None = None) -> list[dict[str, Any]]:
        """GET /images/search: [{"star_count", "is_official", "name", "is_automated", "description"}]; 400 for
        an unknown filter, a bad limit or an unreachable index, as dockerd."""


class VolumeBackend(Protocol):
    async def create_volume(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /volumes/create: Docker's Volume document (an existing volume of that name is returned)."""

    async def inspect_volume(self, name: str) -> dict[str, Any]:
        """NotFound "get NAME: no such volume"."""

    async def list_volumes(self, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """{"Volumes": [...], "Warnings": None}; filters dangling, name, label, label!, driver."""

    async def remove_volume(self, name: str, force: bool = False) -> None:
        """Conflict "remove NAME: volume is in use - [ID ...]"."""

    async def prune_volumes(self, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """{"VolumesDeleted": [...] or None, "SpaceReclaimed": n}; only anonymous volumes unless all=true."""


class ArchiveBackend(Protocol):
    async def stat_path(self, ref: str, path: str) -> str:
        """HEAD/GET /containers/{id}/archive: the X-Docker-Container-Path-Stat header value (base64 JSON).
        NotFound "Could not find the file PATH in container REF"."""

    async def get_archive(self, ref: str, path: str) -> tuple[str, AsyncIterator[bytes]]:
        """(stat header, tar stream of the path); the stream must be closed (aclose) by the caller."""

    async def put_archive(self, ref: str, path: str, src: Path, no_overwrite_dir_non_dir: bool = False,
                          copy_uid_gid: bool = False) -> None:
        """Extract the tar at ``src`` into the directory ``path`` of the container. InvalidArgument (400) for
        an entry that would leave it, before anything is written."""


class CommitBackend(Protocol):
    async def changes(self, ref: str) -> list[dict[str, Any]]:
        """GET /containers/{id}/changes: [{"Path": "/etc", "Kind": 0}, ...] (0 changed, 1 added, 2 deleted)."""

    async def export(self, ref: str) -> AsyncIterator[bytes]:
        """GET /containers/{id}/export: the tar of the container's root filesystem (to be aclose()d)."""

    async def commit(self, ref: str, repo: str | None, tag: str | None, comment: str, author: str,
                     changes: list[str], pause: bool, body: dict[str, Any]) -> str:
        """POST /commit: the new image's id (sha256:...)."""


class SystemBackend(Protocol):
    async def info(self) -> dict[str, Any]:
        """GET /info with real figures."""

    async def version(self) -> dict[str, Any]:
        """GET /version."""

    async def df(self) -> dict[str, Any]:
        """GET /system/df."""

    async def build_prune(self) -> dict[str, Any]:
        """POST /build/prune."""
