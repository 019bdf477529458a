"""``docker push``, ``docker login`` and ``GET /distribution/{name}/json`` against a registry (API v2).

Push: HEAD each blob ("Layer already exists"); else, when the blob is known to be in another repository of the same
registry (the distribution.source label pulls and pushes leave), a cross-repository mount ("Mounted from <repo>");
else an upload (POST, then one PUT with the digest, or PATCH chunks with Content-Range then the PUT for blobs over
``UPLOAD_CHUNK``) with "Pushing" progress, at most ``MAX_UPLOADS`` at once; then the manifest exactly as stored,
under its own media type.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from aiodock.core.images import manifest as mf
from aiodock.core.images.reference import Reference
from aiodock.core.images.registry import (
    SOURCE_LABEL,
    AuthConfig,
    RegistryClient,
    RegistryError,
    RegistryOptions,
    TokenCache,
    Unauthorized,
    new_session,
    normalize_server_address,
)
from aiodock.core.images.store import Descriptor
from aiodock.engine.pull import Emit, _first_error, layer_message, record_source, run_streamed, short_digest
from aiodock.errors import NotFound

if TYPE_CHECKING:
    from aiodock.engine.images import ImageService

MAX_UPLOADS = 3
PROGRESS_INTERVAL = 0.1
READ_CHUNK = 256 << 10


class Push:
    """Push ``targets`` [(tag, manifest descriptor)] of one repository."""

    def __init__(self, service: ImageService, repo: Reference, targets: list[tuple[str, Descriptor]],
                 auth: AuthConfig) -> None:
        self.svc = service
        self.repo = repo
        self.targets = targets
        self.auth = auth

    def start(self) -> AsyncGenerator[dict[str, Any], None]:
        return run_streamed(self._run)

    async def _run(self, emit: Emit) -> None:
        emit({"status": f"The push refers to repository [{self.repo.name}]"})
        async with new_session() as session:
            client = await RegistryClient.connect(session, self.svc.registry, self.repo.domain, self.repo.path,
                                                  self.auth, self.svc.registry_tokens, actions="pull,push")
            for tag, target in self.targets:
                manifest_bytes = await asyncio.to_thread(self.svc.content.read, target.digest)
                manifest = mf.parse_manifest(manifest_bytes, target.media_type)
                await self._blobs(client, manifest, emit)
                await record_source(self.svc.content, [layer.digest for layer in manifest.layers],
                                    self.repo.domain, self.repo.path)
                media_type = mf.media_type_of(manifest_bytes)
                digest = await client.put_manifest(tag, manifest_bytes, media_type)
                await self.svc.push_record(self.repo, digest, target)
                emit({"status": f"{tag}: digest: {digest} size: {len(manifest_bytes)}"})
                emit({"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest, "Size": len(manifest_bytes)}})

    async def _blobs(self, client: RegistryClient, manifest: mf.Manifest, emit: Emit) -> None:
        layers = list(dict.fromkeys(manifest.layers))
        for layer in layers:
            emit(layer_message("Preparing", short_digest(layer.digest)))
        for layer in layers[MAX_UPLOADS:]:
            emit(layer_message("Waiting", short_digest(layer.digest)))
        limit = asyncio.Semaphore(MAX_UPLOADS)
        try:
            async with asyncio.TaskGroup() as group:
                for layer in layers:
                    group.create_task(self._layer(client, layer, limit, emit))
        except BaseExceptionGroup as eg:
            raise _first_error(eg) from None
        if not await client.blob_exists(manifest.config.digest):  # the config, without progress lines
            await client.upload_blob(manifest.config.digest, manifest.config.size,
                                     self._chunks(manifest.config, None))

    async def _layer(self, client: RegistryClient, layer: Descriptor, limit: asyncio.Semaphore,
                     emit: Emit) -> None:
        lid = short_digest(layer.digest)
        async with limit:
            if await client.blob_exists(layer.digest):
                emit(layer_message("Layer already exists", lid))
                return
            location = None
            for source in await self._sources(layer.digest):
                try:
                    location = await client.start_upload(layer.digest, mount_from=source)
                except RegistryError:
                    break  # e.g. no pull access to the source: upload it as Docker then does
                if location is None:
                    emit(layer_message(f"Mounted from {source}", lid))
                    return
                break  # 202: the registry opened an upload session instead; use it
            await client.upload_blob(layer.digest, layer.size, self._chunks(layer, emit), location)
        emit(layer_message("Pushed", lid))

    async def _sources(self, digest: str) -> list[str]:
        """Other repositories of this registry known to hold the blob."""
        try:
            info = await asyncio.to_thread(self.svc.content.info, digest)
        except NotFound:
            return []
        repos = info.labels.get(SOURCE_LABEL + self.repo.domain, "").split(",")
        return [r for r in repos if r and r != self.repo.path]

    async def _chunks(self, blob: Descriptor, emit: Emit | None) -> AsyncGenerator[bytes, None]:
        handle = await asyncio.to_thread(self.svc.content.open, blob.digest)
        sent, last = 0, 0.0
        try:
            while data := await asyncio.to_thread(handle.read, READ_CHUNK):
                sent += len(data)
                now = time.monotonic()
                if emit is not None and (now - last >= PROGRESS_INTERVAL or sent == blob.size):
                    last = now
                    emit(layer_message("Pushing", short_digest(blob.digest), sent, blob.size))
                yield data
        finally:
            await asyncio.to_thread(handle.close)


async def login(tokens: TokenCache, body: dict[str, Any], options: RegistryOptions | None = None
                ) -> dict[str, str]:
    """POST /auth: check the credentials against the registry's /v2/ (Basic or token flow)."""
    auth = AuthConfig.from_json(body)
    domain = normalize_server_address(auth.server_address)
    async with new_session() as session:
        # A scope-less client: the token flow then asks the realm for a token for the account alone.
        client = await RegistryClient.connect(session, options or RegistryOptions.create(), domain, "", auth, tokens)
        client.scope = ""
        try:
            status = await client.ping()
        except RegistryError as exc:
            if "NO_CREDENTIALS" in exc.codes:
                raise Unauthorized(f"login attempt to {client.base}/v2/ failed with status: 401 Unauthorized"
                                   ) from None
            if exc.status == 401:
                raise Unauthorized(str(exc)) from None
            raise
    url = client.base + "/v2/"
    if status == 401:
        raise Unauthorized(f"login attempt to {url} failed with status: 401 Unauthorized")
    if status != 200:
        raise Unauthorized(f"login attempt to {url} failed with status: {status}")
    return {"Status": "Login Succeeded", "IdentityToken": ""}


async def distribution(tokens: TokenCache, ref: Reference, auth: AuthConfig, options: RegistryOptions | None = None
                       ) -> dict[str, Any]:
    """GET /distribution/{name}/json: the descriptor the registry holds for ref, and the platforms it serves."""
    async with new_session() as session:
        client = await RegistryClient.connect(session, options or RegistryOptions.create(), ref.domain, ref.path,
                                              auth, tokens)
        data, media_type, digest = await client.get_manifest(ref.digest or ref.tag or "latest", ref.familiar())
        platforms: list[dict[str, Any]] = []
        if media_type in mf.INDEX_TYPES:
            for child in mf.parse_index(data):
                if child.platform:
                    platforms.append(_platform_json(child.platform))
        else:
            manifest = mf.parse_manifest(data, media_type)
            config = mf.parse_config(await client.get_blob(manifest.config.digest, 8 << 20))
            platforms.append(_platform_json({k: str(config[k]) for k in ("architecture", "os", "variant")
                                             if config.get(k)}))
    return {"Descriptor": {"mediaType": media_type, "digest": digest, "size": len(data)},
            "Platforms": platforms}


def _platform_json(plat: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"architecture": plat.get("architecture", ""), "os": plat.get("os", "")}
    if plat.get("os.version"):
        out["os.version"] = plat["os.version"]
    if plat.get("variant"):
        out["variant"] = plat["variant"]
    return out
