"""Small in-test implementations of aiodock's own backend protocols, for adapter-level tests only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

from aiodock.engine.backend import AttachOptions, LogOptions, OutputChunk, WaitResult
from aiodock.errors import Conflict, InvalidArgument, NotFound, NotModified


class Sink:
    def __init__(self) -> None:
        self.data = b""
        self.closed = asyncio.Event()

    async def write(self, data: bytes) -> None:
        self.data += data

    async def close(self) -> None:
        self.closed.set()


class Containers:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.tty = False
        self.chunks: list[OutputChunk] = [OutputChunk("stdout", b"out\n"), OutputChunk("stderr", b"err\n")]
        self.gate: asyncio.Event | None = None  # when set: yield the first chunk, wait for the gate, yield the rest
        self.waiter: asyncio.Future[WaitResult] | None = None
        self.sink: Sink | None = None
        self.fail: Exception | None = None
        self.closed_iterators = 0
        # Seconds before the first output, like a running container: docker-py reads attach output from the
        # raw socket, so bytes that arrive together with the 101 headers sit in http.client's buffer (as with
        # Docker itself).
        self.delay = 0.0

    def _check(self, ref: str) -> None:
        if self.fail is not None:
            raise self.fail
        if ref != "c1":
            raise NotFound(f"No such container: {ref}")

    async def create(self, name: str | None, body: dict[str, Any]) -> tuple[str, list[str]]:
        self.calls.append(("create", (name, body)))
        return "c1" * 32, []

    async def start(self, ref: str) -> None:
        self._check(ref)
        raise NotModified("container already started")

    async def stop(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        self._check(ref)
        self.calls.append(("stop", (timeout, signal)))

    async def kill(self, ref: str, signal: str | None = None) -> None:
        self._check(ref)
        raise Conflict(f"Container {ref} is not running")

    async def restart(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        self._check(ref)

    async def wait(self, ref: str, condition: str = "not-running") -> Awaitable[WaitResult]:
        self._check(ref)
        if condition not in {"not-running", "next-exit", "removed"}:
            raise InvalidArgument(f"invalid condition: {condition!r}")
        self.waiter = asyncio.get_running_loop().create_future()
        return self.waiter

    async def remove(self, ref: str, force: bool = False, volumes: bool = False, link: bool = False) -> None:
        self._check(ref)
        self.calls.append(("remove", (force, volumes, link)))

    async def rename(self, ref: str, new_name: str) -> None:
        self._check(ref)

    async def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        self.calls.append(("prune", filters))
        return {"ContainersDeleted": [], "SpaceReclaimed": 0}

    async def list(self, all: bool = False, limit: int = -1, size: bool = False,
                   filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        if self.fail is not None:
            raise self.fail
        self.calls.append(("list", {"all": all, "limit": limit, "size": size, "filters": filters}))
        return []

    async def inspect(self, ref: str, size: bool = False) -> dict[str, Any]:
        self._check(ref)
        return {"Id": ref, "Config": {"Tty": self.tty}}

    async def _output(self) -> AsyncIterator[OutputChunk]:
        try:
            await asyncio.sleep(self.delay)
            for index, chunk in enumerate(self.chunks):
                if index == 1 and self.gate is not None:
                    await self.gate.wait()
                yield chunk
        finally:
            self.closed_iterators += 1

    async def logs(self, ref: str, options: LogOptions) -> tuple[bool, AsyncIterator[OutputChunk]]:
        self._check(ref)
        self.calls.append(("logs", options))
        return self.tty, self._output()

    async def attach(self, ref: str, options: AttachOptions) -> tuple[Any, ...]:
        self._check(ref)
        self.calls.append(("attach", options))
        if self.sink is None:
            return self.tty, self._output()
        return self.tty, self._echo(self.sink), self.sink

    async def _echo(self, sink: Sink) -> AsyncIterator[OutputChunk]:
        """Like `cat`: after stdin closes, print what came in."""
        await asyncio.sleep(self.delay)
        yield OutputChunk("stdout", b"ready\n")
        await sink.closed.wait()
        yield OutputChunk("stdout", sink.data)


class Images:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.seen_files: list[Path] = []

    async def import_tar(self, src: Path, repo: str | None, tag: str | None, changes: list[str],
                         message: str = "") -> str:
        self.seen_files.append(src)
        self.calls.append(("import", (src.read_bytes(), repo, tag, changes, message)))
        return "sha256:" + "a" * 64

    async def pull(self, image: str, tag: str | None, platform: str | None = None,
                   auth_header: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """Errors before the first message raise here; later ones come out of the progress."""
        if image == "missing":
            raise NotFound(f"pull access denied for {image}, repository does not exist or may require "
                           "'docker login': denied: requested access to the resource is denied")

        async def progress() -> AsyncIterator[dict[str, Any]]:
            yield {"status": f"Pulling from library/{image}", "id": tag or "latest"}
            if image == "broken":
                raise InvalidArgument("unexpected EOF")
            yield {"status": f"Status: Downloaded newer image for {image}:{tag}"}
        return progress()

    async def load(self, src: Path) -> list[str]:
        self.seen_files.append(src)
        if src.read_bytes() == b"bad":
            raise InvalidArgument("unexpected EOF")
        return ["Loaded image: busybox:latest", "Loaded image ID: sha256:" + "b" * 64]

    async def save(self, refs: list[str], dest: Path) -> None:
        if refs == ["missing"]:
            raise NotFound("reference does not exist")
        self.seen_files.append(dest)
        dest.write_bytes(b"T" * 200_000 + ",".join(refs).encode())

    async def list_images(self, all: bool = False,
                          filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        self.calls.append(("list", (all, filters)))
        return []

    async def inspect(self, ref: str) -> dict[str, Any]:
        return {"Id": "sha256:x", "RepoTags": [ref]}

    async def history(self, ref: str) -> list[dict[str, Any]]:
        return [{"Id": ref}]

    async def tag(self, ref: str, repo: str, tag: str | None) -> None:
        self.calls.append(("tag", (ref, repo, tag)))

    async def remove(self, ref: str, force: bool = False, prune: bool = True) -> list[dict[str, Any]]:
        self.calls.append(("remove", (ref, force, prune)))
        return [{"Untagged": ref}]

    async def prune(self, dangling_only: bool = True,
                    filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        self.calls.append(("prune", (dangling_only, filters)))
        return {"ImagesDeleted": None, "SpaceReclaimed": 0}


class System:
    async def info(self) -> dict[str, Any]:
        return {"ID": "x", "Containers": 0}

    async def version(self) -> dict[str, Any]:
        return {"Version": "aiodock-0.1.0", "ApiVersion": "1.44", "MinAPIVersion": "1.24"}
