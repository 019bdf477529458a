"""``docker pull``: resolve a reference on its registry, download layers into the content store, unpack, name.

Progress is Docker's JSON message stream (the messages the docker CLI renders). Layers download at most
``MAX_DOWNLOADS`` at once, straight into the content store, digest and size verified before the commit; each is
unpacked through ImageService's unpack path as soon as it and the layers below it are in. A failed pull removes
the blobs and committed snapshots it created, and names nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from aiodock.core.content import ContentStore, IngestWriter
from aiodock.core.images import manifest as mf
from aiodock.core.images.reference import Reference
from aiodock.core.images.registry import SOURCE_LABEL, AuthConfig, RegistryClient, RegistryError, new_session
from aiodock.core.images.store import Descriptor
from aiodock.errors import AiodockError, InvalidArgument, NotFound, Unavailable

if TYPE_CHECKING:
    from aiodock.engine.images import ImageService

MAX_DOWNLOADS = 3
MAX_ATTEMPTS = 5  # Docker's maxDownloadAttempts
RETRY_DELAY = 1.0  # seconds times the attempt number (Docker waits 5 s times the attempt number)
PROGRESS_INTERVAL = 0.1
CONFIG_LIMIT = 8 << 20
WRITE_CHUNK = 512 << 10
Emit = Callable[[dict[str, Any]], None]


# ---- progress messages -----------------------------------------------------------------------------------------


def human_size(size: float) -> str:
    """go-units HumanSize: decimal units, 4 significant digits (``772.8kB``)."""
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    return f"{size:.4g}{units[i]}"


def progress_bar(current: int, total: int) -> str:
    """The ``progress`` string of a JSON progress message, as the daemon renders it for a wide terminal."""
    if total <= 0:
        return f"{human_size(current):>8}"
    filled = min(int(current / total * 100) // 2, 50)
    bar = "[" + "=" * filled + ">" + " " * (50 - filled) + "] "
    numbers = f"{human_size(current):>8}" if current > total else f"{human_size(current):>8}/{human_size(total)}"
    return bar + numbers


def layer_message(status: str, layer_id: str, current: int | None = None, total: int | None = None
                  ) -> dict[str, Any]:
    if current is None or total is None:
        return {"status": status, "progressDetail": {}, "id": layer_id}
    return {"status": status, "progressDetail": {"current": current, "total": total},
            "progress": progress_bar(current, total), "id": layer_id}


def short_digest(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


async def run_streamed(work: Callable[[Emit], Awaitable[None]]) -> AsyncGenerator[dict[str, Any], None]:
    """Run ``work`` as a task and yield what it emits; a closed consumer cancels it (and its cleanup runs)."""
    queue: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()

    async def runner() -> None:
        try:
            await work(queue.put_nowait)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            queue.put_nowait(exc)
        else:
            queue.put_nowait(None)

    task = asyncio.create_task(runner())
    try:
        while True:
            item = await queue.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# ---- pull ------------------------------------------------------------------------------------------------------


def parse_platform(value: str | None) -> dict[str, str] | None:
    if not value:
        return None
    parts = value.strip().lower().split("/")
    if len(parts) == 1:
        parts = ["linux", parts[0]]
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidArgument(f"invalid platform {value!r}: must be os/arch[/variant]")
    out = {"os": parts[0], "architecture": parts[1]}
    if len(parts) == 3:
        out["variant"] = parts[2]
    return out


class Pull:
    """One pull of ``ref`` (normalised, with a tag or a digest) for ``platform``."""

    def __init__(self, service: ImageService, ref: Reference, platform: dict[str, str] | None,
                 auth: AuthConfig) -> None:
        self.svc = service
        self.ref = ref
        self.want = platform or mf.host_platform()
        self.explicit_platform = platform is not None
        self.auth = auth
        self.new_blobs: list[str] = []
        self.new_chains: list[str] = []

    async def start(self) -> AsyncGenerator[dict[str, Any], None]:
        """Resolve the manifest (errors here are raised before any message), then stream the rest."""
        session = new_session()
        try:
            client, resolved = await self._resolve_on_endpoints(session)
        except RegistryError as err:
            await session.close()
            if err.status in (401, 403):
                raise NotFound(f"pull access denied for {self.ref.familiar_name}, repository does not exist or "
                               f"may require 'docker login': {err}") from None
            raise
        except BaseException:
            await session.close()
            raise

        async def work(emit: Emit) -> None:
            try:
                await self._run(client, resolved, emit)
            finally:
                await session.close()
        return run_streamed(work)

    async def _resolve_on_endpoints(self, session: aiohttp.ClientSession) -> tuple[
            RegistryClient, tuple[str, list[tuple[bytes, str]], bytes, mf.Manifest, bytes, dict[str, Any]]]:
        """The mirrors first (docker.io only), each given up on any error, then the registry itself."""
        endpoints = await self.svc.registry.endpoints(self.ref.domain)
        for mirror in [e for e in endpoints if e.mirror]:
            client = RegistryClient(session, self.ref.domain, self.ref.path, self.auth, self.svc.registry_tokens,
                                    endpoints=[mirror])
            try:
                return client, await self._resolve(client)
            except AiodockError:
                continue  # as dockerd: on to the next endpoint
        client = RegistryClient(session, self.ref.domain, self.ref.path, self.auth, self.svc.registry_tokens,
                                endpoints=[e for e in endpoints if not e.mirror])
        return client, await self._resolve(client)

    async def _resolve(self, client: RegistryClient
                       ) -> tuple[str, list[tuple[bytes, str]], bytes, mf.Manifest, bytes, dict[str, Any]]:
        """(digest the user sees, [(blob, digest)] of index + manifest, manifest bytes, manifest, config...)."""
        reference = self.ref.digest or self.ref.tag or "latest"
        display = self.ref.familiar()
        data, media_type, digest = await client.get_manifest(reference, display)
        blobs = [(data, digest)]
        if media_type in mf.INDEX_TYPES:
            children = [c for c in mf.parse_index(data) if c.descriptor.media_type in mf.MANIFEST_TYPES
                        and (not c.platform or mf.platform_matches(c.platform, self.want))]
            if not children:
                want = "/".join(v for v in (self.want["os"], self.want["architecture"], self.want.get("variant"))
                                if v)
                raise NotFound(f"no matching manifest for {want} in the manifest list entries")
            child = children[0].descriptor
            data, media_type, child_digest = await client.get_manifest(child.digest, display)
            if media_type not in mf.MANIFEST_TYPES:
                raise InvalidArgument(f"unsupported nested index in {display}")
            blobs.append((data, child_digest))
        manifest = mf.parse_manifest(data, media_type)
        config_bytes = await client.get_blob(manifest.config.digest, CONFIG_LIMIT)
        config = mf.parse_config(config_bytes)
        if len(mf.diff_ids(config)) != len(manifest.layers):
            raise InvalidArgument(f"invalid image {display}: {len(manifest.layers)} layers but "
                                  f"{len(mf.diff_ids(config))} diff ids")
        if self.explicit_platform and config.get("architecture") and not mf.platform_matches(
                {"os": str(config.get("os") or "linux"), "architecture": str(config["architecture"]),
                 "variant": str(config.get("variant") or "")}, self.want):
            raise NotFound(f"image with reference {display} was found but does not match the specified "
                           f"platform: wanted {self.want['os']}/{self.want['architecture']}, actual: "
                           f"{config.get('os') or 'linux'}/{config['architecture']}")
        return digest, blobs, data, manifest, config_bytes, config

    async def _run(self, client: RegistryClient,
                   resolved: tuple[str, list[tuple[bytes, str]], bytes, mf.Manifest, bytes, dict[str, Any]],
                   emit: Emit) -> None:
        digest, blobs, data, manifest, config_bytes, config = resolved
        emit({"status": f"Pulling from {self.ref.path}", "id": self.ref.digest or self.ref.tag or "latest"})
        try:
            present = await self.svc.pull_layer_state(manifest, config)
            if not all(blob and chain for blob, chain in present) or not await self.svc.pull_has_image(
                    manifest.config.digest):
                await self._layers(client, manifest, config, present, emit)
            target = Descriptor(manifest.media_type, blobs[-1][1], len(data))
            up_to_date = await self.svc.pull_commit(self.ref, digest, target, blobs, config_bytes,
                                                    manifest, config, self.new_blobs)
        except BaseException:
            await asyncio.shield(self.svc.pull_cleanup(self.new_chains, self.new_blobs))
            raise
        await record_source(self.svc.content, [layer.digest for layer in manifest.layers], self.ref.domain,
                            self.ref.path)
        emit({"status": f"Digest: {digest}"})
        shown = self.ref.familiar()
        if up_to_date:
            emit({"status": f"Status: Image is up to date for {shown}"})
        else:
            emit({"status": f"Status: Downloaded newer image for {shown}"})

    async def _layers(self, client: RegistryClient, manifest: mf.Manifest, config: dict[str, Any],
                      present: list[tuple[bool, bool]], emit: Emit) -> None:
        layers = manifest.layers
        needed = [i for i, (blob, _) in enumerate(present) if not blob]
        for i, layer in enumerate(layers):
            blob, chain = present[i]
            emit(layer_message("Already exists" if blob and chain else "Pulling fs layer", short_digest(layer.digest)))
        for n, i in enumerate(needed):
            if n >= MAX_DOWNLOADS:
                emit(layer_message("Waiting", short_digest(layers[i].digest)))
        limit = asyncio.Semaphore(MAX_DOWNLOADS)
        try:
            async with asyncio.TaskGroup() as group:
                downloads = {i: group.create_task(self._download(client, layers[i], limit, emit)) for i in needed}
                group.create_task(self._extract_all(manifest, config, present, downloads, emit))
        except BaseExceptionGroup as eg:
            raise _first_error(eg) from None

    async def _download(self, client: RegistryClient, layer: Descriptor, limit: asyncio.Semaphore,
                        emit: Emit) -> None:
        """Download into an ingest, retrying transient failures (connection lost, 5xx) up to ``MAX_ATTEMPTS``
        times, resuming with a Range request from the bytes already received; the ingest goes on any failure."""
        lid = short_digest(layer.digest)
        async with limit:
            writer = await asyncio.to_thread(self.svc.content.writer)
            try:
                attempt = 1
                while True:
                    try:
                        await self._attempt(client, writer, layer, lid, emit)
                        break
                    except _Transient as exc:
                        if attempt >= MAX_ATTEMPTS:
                            raise Unavailable(str(exc)) from None
                    delay = int(RETRY_DELAY * attempt)
                    for left in range(delay, 0, -1):
                        emit(layer_message(f"Retrying in {left} second{'s' if left != 1 else ''}", lid))
                        await asyncio.sleep(1)
                    attempt += 1
                emit(layer_message("Verifying Checksum", lid))
                if writer.digest != layer.digest:
                    raise InvalidArgument(f"filesystem layer verification failed for digest {layer.digest}")
                self.new_blobs.append(layer.digest)
                await asyncio.to_thread(writer.commit, layer.digest, layer.size)
            except BaseException:
                await asyncio.shield(asyncio.to_thread(writer.abort))
                raise
        emit(layer_message("Download complete", lid))

    async def _attempt(self, client: RegistryClient, writer: IngestWriter, layer: Descriptor, lid: str,
                       emit: Emit) -> None:
        """One GET of the blob (ranged when the ingest already holds bytes) streamed into ``writer``."""
        offset = writer.size
        try:
            resp = await client.open_blob(layer.digest, offset)
        except Unavailable as exc:
            raise _Transient(str(exc)) from None
        except RegistryError as exc:
            if exc.status >= 500 or exc.status == 429:
                raise _Transient(str(exc)) from None
            raise
        try:
            if offset and resp.status != 206:  # no range support: start over
                await asyncio.to_thread(writer.reset)
            received, last, buf = writer.size, 0.0, bytearray()
            try:
                async for chunk in resp.content.iter_chunked(64 << 10):
                    buf += chunk
                    received += len(chunk)
                    if received > layer.size:
                        raise InvalidArgument(f"filesystem layer verification failed for digest {layer.digest}: "
                                              f"more data than the {layer.size} bytes announced")
                    if len(buf) >= WRITE_CHUNK:
                        await asyncio.to_thread(writer.write, bytes(buf))
                        buf.clear()
                    now = time.monotonic()
                    if now - last >= PROGRESS_INTERVAL:
                        last = now
                        emit(layer_message("Downloading", lid, received, layer.size))
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError):
                raise _Transient(f"failed to download layer {layer.digest}: unexpected EOF "
                                 f"({received} of {layer.size} bytes)") from None
            finally:
                if buf:
                    await asyncio.to_thread(writer.write, bytes(buf))
            emit(layer_message("Downloading", lid, received, layer.size))
            if received < layer.size:
                raise _Transient(f"failed to download layer {layer.digest}: unexpected EOF "
                                 f"({received} of {layer.size} bytes)")
        finally:
            resp.release()

    async def _extract_all(self, manifest: mf.Manifest, config: dict[str, Any], present: list[tuple[bool, bool]],
                           downloads: dict[int, asyncio.Task[None]], emit: Emit) -> None:
        for i, layer in enumerate(manifest.layers):
            if present[i][0] and present[i][1]:
                continue
            if i in downloads:
                await downloads[i]
            lid = short_digest(layer.digest)
            emit(layer_message("Extracting", lid, layer.size, layer.size))
            self.new_chains += await self.svc.pull_unpack(manifest, config, i + 1)
            emit(layer_message("Pull complete", lid))


class _Transient(Exception):
    """A download failure worth another attempt."""


async def record_source(content: ContentStore, digests: list[str], domain: str, repository: str) -> None:
    """Remember which repository of which registry holds these blobs (containerd's distribution.source label),
    so a later push to another repository of that registry can mount them instead of uploading."""
    def record() -> None:
        key = SOURCE_LABEL + domain
        for digest in dict.fromkeys(digests):
            try:
                labels = dict(content.info(digest).labels)
            except NotFound:
                continue
            repos = [r for r in labels.get(key, "").split(",") if r]
            if repository in repos:
                continue
            labels[key] = ",".join([*repos, repository])
            with contextlib.suppress(NotFound):
                content.update_labels(digest, labels)
    await asyncio.to_thread(record)


async def pull_all_tags(service: ImageService, ref: Reference, platform: dict[str, str] | None,
                        auth: AuthConfig) -> AsyncGenerator[dict[str, Any], None]:
    """Docker's pull without a tag: every tag of the repository, one after the other, then one status line."""
    async with new_session() as session:
        client = await RegistryClient.connect(session, service.registry, ref.domain, ref.path, auth,
                                              service.registry_tokens)
        tags = await client.list_tags()
    if not tags:
        raise NotFound(f"no tags found for {ref.familiar_name}")

    async def each() -> AsyncGenerator[dict[str, Any], None]:
        newer = False
        for tag in sorted(set(tags)):
            stream = await Pull(service, ref.with_tag(tag), platform, auth).start()
            try:
                async for message in stream:
                    status = str(message.get("status", ""))
                    if status.startswith("Status: "):
                        newer = newer or status.startswith("Status: Downloaded newer image")
                        continue
                    yield message
            finally:
                await stream.aclose()
        state = "Downloaded newer image" if newer else "Image is up to date"
        yield {"status": f"Status: {state} for {ref.familiar_name}"}
    return each()


def _first_error(eg: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that failed a task group (an AiodockError first), not the cancellations it caused."""
    flat: list[BaseException] = []

    def walk(group: BaseExceptionGroup[BaseException]) -> None:
        for exc in group.exceptions:
            if isinstance(exc, BaseExceptionGroup):
                walk(exc)
            else:
                flat.append(exc)
    walk(eg)
    for exc in flat:
        if isinstance(exc, AiodockError):
            return exc
    for exc in flat:
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return flat[0] if flat else eg
