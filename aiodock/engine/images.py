"""Docker image semantics (image ids, tags, import/load/save, rmi/prune, rootfs snapshots) over the core stores.

A Docker image is the set of image records (namespace "moby") whose manifests share one config blob; its id is
``sha256:<config digest hex>``. Names are full references (``docker.io/library/busybox:latest``); an image
that lost its last name while still wanted keeps a ``moby-dangling@<manifest digest>`` record so it shows as
``<none>:<none>``. All disk work runs in a thread under one lock; events are published from the loop.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import posixpath
import re
import secrets
import tarfile
import threading
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeVar

from aiodock.core import events as ev
from aiodock.core.content import ContentStore, sha256_digest
from aiodock.core.events import EventExchange, ImageEvent
from aiodock.core.images import manifest as mf
from aiodock.core.images.reference import (
    Reference,
    familiar_match,
    parse_normalized,
    parse_repository_and_tag,
)
from aiodock.core.images.registry import AuthConfig, RegistryOptions, TokenCache, new_session
from aiodock.core.images.registry import search as registry_search
from aiodock.core.images.store import Descriptor, ImageRecord, ImageStore
from aiodock.core.layers import apply_layer, decompressed, detect_compression, layer_diff_id
from aiodock.core.mount import Mount
from aiodock.core.snapshots.base import Kind, Snapshotter
from aiodock.core.snapshots.overlay import OverlaySnapshotter
from aiodock.engine import pull as pulling
from aiodock.engine import push as pushing
from aiodock.engine.dockerfile import apply_changes
from aiodock.engine.filters import labels_match
from aiodock.errors import AlreadyExists, Conflict, FailedPrecondition, InvalidArgument, NotFound
from aiodock.util.ids import short_id

DANGLING_PREFIX = "moby-dangling@"
ZERO_TIME = "0001-01-01T00:00:00Z"
_HEX_RE = re.compile(r"^[0-9a-f]{1,64}$")
_T = TypeVar("_T")
UsageCheck = Callable[[str], list[tuple[str, bool]]]
_Events = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Image:
    """One Docker image. ``config`` is the whole image config blob (its ``config`` key is the container config)."""

    id: str
    config: dict[str, Any]
    chain_id: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    manifest_digest: str

    @property
    def container_config(self) -> dict[str, Any]:
        return dict(self.config.get("config") or {})

    @property
    def diff_ids(self) -> list[str]:
        return mf.diff_ids(self.config)


@dataclass(slots=True)
class _View:
    """An image as grouped from its records."""

    id: str
    manifest_desc: Descriptor
    manifest: mf.Manifest
    config: dict[str, Any]
    records: list[ImageRecord] = field(default_factory=list)

    @property
    def refs(self) -> list[Reference]:
        out = []
        for rec in self.records:
            if rec.name.startswith(DANGLING_PREFIX):
                continue
            try:
                out.append(parse_normalized(rec.name))
            except InvalidArgument:
                continue
        return out

    @property
    def tags(self) -> list[Reference]:
        return [r for r in self.refs if r.tag is not None and r.digest is None]

    @property
    def digests(self) -> list[Reference]:
        return [r for r in self.refs if r.digest is not None]

    @property
    def named(self) -> list[ImageRecord]:
        return [r for r in self.records if not r.name.startswith(DANGLING_PREFIX)]

    @property
    def created(self) -> datetime:
        return mf.parse_time(self.config.get("created")) or datetime(1970, 1, 1, tzinfo=UTC)

    @property
    def chain_ids(self) -> list[str]:
        return mf.chain_ids(mf.diff_ids(self.config))


class ImageService:
    """Docker's image service on the content store, image records and the overlay snapshotter."""

    def __init__(self, root: Path, events: EventExchange, namespace: str = "moby", *,
                 content: ContentStore | None = None, images: ImageStore | None = None,
                 snapshotter: Snapshotter | None = None, registry: RegistryOptions | None = None) -> None:
        self.root = Path(root)
        self.events = events
        self.namespace = namespace
        self.content = content or ContentStore(self.root)
        self.images = images or ImageStore(self.root)
        self.snapshotter: Snapshotter = snapshotter or OverlaySnapshotter(self.root / "snapshots" / "overlay")
        self._lock = threading.RLock()
        self._usage_check: UsageCheck = lambda image_id: []
        self._parsed: dict[str, tuple[mf.Manifest, dict[str, Any]]] = {}
        self.registry_tokens = TokenCache()
        self.registry = registry or RegistryOptions.create()

    def set_usage_check(self, fn: UsageCheck) -> None:
        """fn(image id) -> [(container id, running)]; called from a worker thread."""
        self._usage_check = fn

    # ---- public async API ------------------------------------------------------------------------------

    async def resolve(self, ref: str) -> Image:
        return await self._call(lambda e: self._image(self._resolve(ref)[0]))

    async def import_tar(self, src: Path, repo: str | None, tag: str | None, changes: list[str],
                         message: str = "") -> str:
        return await self._call(lambda e: self._import(Path(src), repo, tag, changes, message, e))

    async def load(self, src: Path) -> list[str]:
        return await self._call(lambda e: self._load(Path(src), e))

    async def save(self, refs: list[str], dest: Path) -> None:
        await self._call(lambda e: self._save(refs, Path(dest)))

    async def list_images(self, all: bool = False, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        return await self._call(lambda e: self._list(filters or {}))

    async def inspect(self, ref: str) -> dict[str, Any]:
        return await self._call(lambda e: self._inspect(self._resolve(ref)[0]))

    async def history(self, ref: str) -> list[dict[str, Any]]:
        return await self._call(lambda e: self._history(self._resolve(ref)[0]))

    async def tag(self, ref: str, repo: str, tag: str | None) -> None:
        await self._call(lambda e: self._tag(ref, repo, tag, e))

    async def remove(self, ref: str, force: bool = False, prune: bool = True) -> list[dict[str, str]]:
        return await self._call(lambda e: self._remove(ref, force, e))

    async def prune(self, dangling_only: bool = True, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        return await self._call(lambda e: self._prune(dangling_only, filters or {}, e))

    async def prepare_rootfs(self, image: Image | None, container_id: str) -> list[Mount]:
        """A writable snapshot keyed by the container id on top of the image's layers (empty without image)."""
        return await self._call(lambda e: self._prepare_rootfs(image, container_id))

    async def rootfs_mounts(self, container_id: str) -> list[Mount]:
        return await asyncio.to_thread(self.snapshotter.mounts, container_id)

    async def remove_rootfs(self, container_id: str) -> None:
        def remove() -> None:
            try:
                self.snapshotter.remove(container_id)
            except NotFound:
                pass
        await asyncio.to_thread(remove)

    async def remove_orphan_snapshots(self, container_ids: set[str]) -> list[str]:
        """At start-up: drop writable snapshots that belong to no container, and the half-made extract-*
        snapshots of a load or import that died. Returns the keys removed."""
        def sweep() -> list[str]:
            removed = []
            for info in self.snapshotter.list():
                if info.kind == Kind.COMMITTED or info.name in container_ids:
                    continue
                try:
                    self.snapshotter.remove(info.name)
                except (NotFound, FailedPrecondition):
                    continue
                removed.append(info.name)
            return removed
        return await self._call(lambda e: sweep())

    async def commit_layer(self, parent: Image, layer: Path, config: dict[str, Any], history: dict[str, Any],
                           repo: str | None, tag: str | None) -> str:
        """docker commit: a new image of ``parent``'s layers plus the uncompressed layer tar ``layer``; ``config``
        is the whole new image config except rootfs and history (appended here). Returns the image id."""
        def commit(e: _Events) -> str:
            ref = parse_repository_and_tag(repo, tag) if repo else None
            manifest, parent_config = self._parse_target(Descriptor(mf.OCI_MANIFEST, parent.manifest_digest, 0))
            existed: set[str] = set()
            writer = self.content.writer()
            try:
                with open(layer, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        writer.write(chunk)
            except BaseException:
                writer.abort()
                raise
            if self.content.exists(writer.digest):
                existed.add(writer.digest)
            digest, size = writer.commit()
            new_config = dict(config)
            new_config["rootfs"] = {"type": "layers", "diff_ids": mf.diff_ids(parent_config) + [digest]}
            new_config["history"] = list(parent_config.get("history") or []) + [history]
            layers = list(manifest.layers) + [Descriptor(mf.OCI_LAYER, digest, size)]
            try:
                target = self._store_image(new_config, layers, existed)
            except BaseException:
                self._forget_blobs([digest], existed)
                raise
            self._name_or_dangle(target, [str(ref)] if ref else [], e)
            return str(self._parse_target(target)[0].config.digest)
        return await self._call(commit)

    async def commit_config(self, parent: Image, config: dict[str, Any], history: dict[str, Any]) -> str:
        """A new image of ``parent``'s layers with another config and no new layer (a builder step such as ENV or
        CMD: its history entry is an ``empty_layer``). Returns the image id; the image is dangling."""
        def commit(e: _Events) -> str:
            manifest, parent_config = self._parse_target(Descriptor(mf.OCI_MANIFEST, parent.manifest_digest, 0))
            new_config = dict(config)
            new_config["rootfs"] = {"type": "layers", "diff_ids": mf.diff_ids(parent_config)}
            new_config["history"] = list(parent_config.get("history") or []) + [{**history, "empty_layer": True}]
            target = self._store_image(new_config, list(manifest.layers), set())
            self._name_or_dangle(target, [], e)
            return str(self._parse_target(target)[0].config.digest)
        return await self._call(commit)

    async def layers_size(self) -> int:
        """Bytes on disk of every unpacked image layer (committed snapshots): GET /system/df's LayersSize."""
        def total() -> int:
            return sum(self.snapshotter.usage(info.name).size for info in self.snapshotter.list()
                       if info.kind == Kind.COMMITTED)
        return await asyncio.to_thread(total)

    async def rootfs_size(self, container_id: str) -> int:
        return (await asyncio.to_thread(self.snapshotter.usage, container_id)).size

    # ---- registry (pull/push/login; the protocol work is in engine/pull.py and engine/push.py) -----------

    async def pull(self, image: str, tag: str | None, platform: str | None = None,
                   auth_header: str | None = None) -> AsyncGenerator[dict[str, Any], None]:
        """Resolve image[:tag] on its registry (errors raised here come before any message), then the progress."""
        ref = parse_normalized(image)
        if tag:
            ref = ref.with_digest(tag) if tag.startswith("sha256:") else ref.with_tag(tag)
        if ref.digest is not None:
            ref = ref.with_digest(parse_normalized(f"{ref.name}@{ref.digest}").digest or ref.digest)
        plat, auth = pulling.parse_platform(platform), AuthConfig.from_header(auth_header)
        if ref.tag is None and ref.digest is None:  # Docker: no tag at all pulls every tag
            return await pulling.pull_all_tags(self, ref, plat, auth)
        return await pulling.Pull(self, ref, plat, auth).start()

    async def push(self, image: str, tag: str | None, auth_header: str | None = None
                   ) -> AsyncGenerator[dict[str, Any], None]:
        ref = parse_normalized(image)
        if tag:
            ref = ref.with_tag(tag)

        def targets(e: _Events) -> list[tuple[str, Descriptor]]:
            views = self._views().values()
            found = [(t.tag or "latest", v.manifest_desc) for v in views for t in v.tags
                     if t.name == ref.name and (ref.tag is None or t.tag == ref.tag)]
            if not found:
                raise NotFound(f"An image does not exist locally with the tag: {ref.familiar()}")
            return sorted(found)
        found = await self._call(targets)
        return pushing.Push(self, Reference(ref.domain, ref.path), found,
                            AuthConfig.from_header(auth_header)).start()

    async def login(self, body: dict[str, Any]) -> dict[str, str]:
        return await pushing.login(self.registry_tokens, body, self.registry)

    async def search(self, term: str, limit: int | None, filters: dict[str, list[str]],
                     auth_header: str | None = None) -> list[dict[str, Any]]:
        """GET /images/search: the index's v1 search, then dockerd's filters (is-automated, is-official, stars)."""
        for key in filters:
            if key not in ("is-automated", "is-official", "stars"):
                raise InvalidArgument(f"invalid filter '{key}'")
        wanted: dict[str, bool] = {}
        for key in ("is-automated", "is-official"):
            for value in filters.get(key, []):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise InvalidArgument(f"invalid filter '{key}={value}'")
                wanted[key] = value.lower() in ("true", "1")
        min_stars = 0
        for value in filters.get("stars", []):
            try:
                min_stars = max(min_stars, int(value))
            except ValueError:
                raise InvalidArgument(f"invalid filter 'stars={value}': strconv.Atoi: parsing \"{value}\": "
                                      "invalid syntax") from None
        limit = 25 if limit is None else limit
        if limit < 1 or limit > 100:
            raise InvalidArgument(f"limit {limit} is outside the range of [1, 100]")
        if not term.strip():
            raise InvalidArgument("invalid search term: term must not be empty")
        async with new_session() as session:
            found = await registry_search(session, self.registry, term, limit, AuthConfig.from_header(auth_header))
        return [r for r in found if r["star_count"] >= min_stars
                and wanted.get("is-official", r["is_official"]) == r["is_official"]
                and wanted.get("is-automated", r["is_automated"]) == r["is_automated"]]

    async def distribution(self, image: str, auth_header: str | None = None) -> dict[str, Any]:
        ref = parse_normalized(image).with_default_tag()
        return await pushing.distribution(self.registry_tokens, ref, AuthConfig.from_header(auth_header),
                                          self.registry)

    async def pull_layer_state(self, manifest: mf.Manifest, config: dict[str, Any]) -> list[tuple[bool, bool]]:
        """(blob present, snapshot present) per layer."""
        def state(e: _Events) -> list[tuple[bool, bool]]:
            out = []
            for layer, chain in zip(manifest.layers, mf.chain_ids(mf.diff_ids(config)), strict=True):
                try:
                    self.snapshotter.stat(chain)
                    has_chain = True
                except NotFound:
                    has_chain = False
                out.append((self.content.exists(layer.digest), has_chain))
            return out
        return await self._call(state)

    async def pull_has_image(self, config_digest: str) -> bool:
        return await self._call(lambda e: config_digest in self._views())

    async def pull_unpack(self, manifest: mf.Manifest, config: dict[str, Any], count: int) -> list[str]:
        """Unpack the first ``count`` layers; returns the chain ids this call committed."""
        def unpack(e: _Events) -> list[str]:
            diff_ids = mf.diff_ids(config)[:count]
            before = []
            for chain in mf.chain_ids(diff_ids):
                try:
                    self.snapshotter.stat(chain)
                except NotFound:
                    before.append(chain)
            self._unpack(mf.Manifest(manifest.media_type, manifest.config, manifest.layers[:count]),
                         {"rootfs": {"diff_ids": diff_ids}})
            return before
        return await self._call(unpack)

    async def pull_commit(self, ref: Reference, digest: str, target: Descriptor, blobs: list[tuple[bytes, str]],
                          config_bytes: bytes, manifest: mf.Manifest, config: dict[str, Any],
                          new_blobs: list[str]) -> bool:
        """Store manifest(s) and config, unpack what is missing, name the image; True when already so named."""
        def commit(e: _Events) -> bool:
            for data, blob_digest in [*blobs, (config_bytes, manifest.config.digest)]:
                if not self.content.exists(blob_digest):
                    self.content.write(data, blob_digest)
                    new_blobs.append(blob_digest)
            self._unpack(manifest, config)
            main = str(ref)
            try:
                up_to_date = self.images.get(self.namespace, main).target.digest == target.digest
            except NotFound:
                up_to_date = False
            for name in dict.fromkeys([main, f"{ref.name}@{digest}"]):
                self._set_name(name, target, e)
            return up_to_date
        return await self._call(commit)

    async def pull_cleanup(self, new_chains: list[str], new_blobs: list[str]) -> None:
        """After a failed pull: drop the snapshots and blobs it created that no image uses."""
        def cleanup(e: _Events) -> None:
            chains, blobs, complete = self._references()
            for chain in reversed(new_chains):
                if chain not in chains:
                    try:
                        self.snapshotter.remove(chain)
                    except (NotFound, FailedPrecondition):
                        pass
            if complete:
                self._forget_blobs([d for d in new_blobs if d not in blobs], set())
        await self._call(cleanup)

    async def push_record(self, repo: Reference, digest: str, target: Descriptor) -> None:
        """Remember the repository digest a push produced (shown in RepoDigests)."""
        await self._call(lambda e: self._set_name(f"{repo.name}@{digest}", target, e))

    async def _call(self, fn: Callable[[_Events], _T]) -> _T:
        pending: _Events = []

        def run() -> _T:
            with self._lock:
                return fn(pending)
        try:
            return await asyncio.to_thread(run)
        finally:
            for topic, name in pending:
                self.events.publish(self.namespace, topic, ImageEvent(name))

    # ---- views --------------------------------------------------------------------------------------------

    def _parse_target(self, target: Descriptor) -> tuple[mf.Manifest, dict[str, Any]]:
        cached = self._parsed.get(target.digest)
        if cached is None:
            manifest = mf.parse_manifest(self.content.read(target.digest), target.media_type)
            config = mf.parse_config(self.content.read(manifest.config.digest))
            cached = self._parsed[target.digest] = (manifest, config)
        return cached

    def _views(self) -> dict[str, _View]:
        views: dict[str, _View] = {}
        for rec in self.images.list(self.namespace):
            try:
                manifest, config = self._parse_target(rec.target)
            except (NotFound, InvalidArgument):
                continue  # a record this service cannot show (an index, missing content)
            image_id = manifest.config.digest
            view = views.get(image_id)
            if view is None:
                view = views[image_id] = _View(image_id, rec.target, manifest, config)
            view.records.append(rec)
        return views

    def _resolve(self, ref: str) -> tuple[_View, str | None]:
        """(image, record name when ref named one); NotFound "No such image: <ref>"."""
        views = self._views()
        try:
            parsed: Reference | None = parse_normalized(ref)
        except InvalidArgument:
            parsed = None
        if parsed is not None:
            full = str(parsed.with_default_tag())
            for view in views.values():
                if any(r.name == full for r in view.records):
                    return view, full
            if parsed.digest is not None:
                for view in views.values():
                    if view.manifest_desc.digest == parsed.digest and any(
                            r.name == parsed.name for r in view.refs):
                        return view, None
        hexpart = ref.removeprefix("sha256:")
        if _HEX_RE.match(hexpart):
            found = [v for v in views.values() if v.id[len("sha256:"):].startswith(hexpart)]
            if len(found) == 1:
                return found[0], None
        raise NotFound(f"No such image: {ref}")

    def _image(self, view: _View) -> Image:
        return Image(
            id=view.id, config=view.config, chain_id=mf.chain_id(mf.diff_ids(view.config)),
            repo_tags=tuple(sorted(r.familiar() for r in view.tags)),
            repo_digests=tuple(sorted(r.familiar() for r in view.digests)),
            manifest_digest=view.manifest_desc.digest,
        )

    def _size(self, view: _View) -> int:
        total = 0
        for layer, chain in zip(view.manifest.layers, view.chain_ids, strict=False):
            try:
                total += self.snapshotter.usage(chain).size
            except NotFound:
                total += layer.size
        return total

    # ---- names -----------------------------------------------------------------------------------------------

    def _set_name(self, name: str, target: Descriptor, e: _Events) -> None:
        """Point name at target; the image that loses the name is kept as dangling when it has no other."""
        now = datetime.now(UTC)
        try:
            old = self.images.get(self.namespace, name)
        except NotFound:
            old = None
        if old is not None and old.target.digest == target.digest:
            self.images.put(self.namespace, ImageRecord(name, target, old.created_at, now, old.labels))
            e.append((ev.IMAGE_UPDATE, name))
            return
        if old is not None:
            others = [r for r in self.images.list(self.namespace)
                      if r.name != name and self._same_image(r.target, old.target)]
            if not others:
                self._put_dangling(old.target, e)
        self.images.put(self.namespace, ImageRecord(name, target, now, now, {}))
        e.append((ev.IMAGE_UPDATE if old is not None else ev.IMAGE_CREATE, name))
        self._drop_dangling(target, e)

    def _same_image(self, a: Descriptor, b: Descriptor) -> bool:
        if a.digest == b.digest:
            return True
        try:
            return self._parse_target(a)[0].config.digest == self._parse_target(b)[0].config.digest
        except (NotFound, InvalidArgument):
            return False

    def _put_dangling(self, target: Descriptor, e: _Events) -> None:
        now = datetime.now(UTC)
        name = DANGLING_PREFIX + target.digest
        self.images.put(self.namespace, ImageRecord(name, target, now, now, {}))
        e.append((ev.IMAGE_CREATE, name))

    def _drop_dangling(self, target: Descriptor, e: _Events) -> None:
        for rec in self.images.list(self.namespace):
            if rec.name.startswith(DANGLING_PREFIX) and self._same_image(rec.target, target):
                self.images.delete(self.namespace, rec.name)
                e.append((ev.IMAGE_DELETE, rec.name))

    def _tag(self, ref: str, repo: str, tag: str | None, e: _Events) -> None:
        view, _ = self._resolve(ref)
        new = parse_repository_and_tag(repo, tag)
        self._set_name(str(new), view.manifest_desc, e)

    # ---- unpack / rootfs -------------------------------------------------------------------------------

    def _unpack(self, manifest: mf.Manifest, config: dict[str, Any]) -> str:
        """Apply every layer not yet present as a committed snapshot keyed by its chain id."""
        diff_ids = mf.diff_ids(config)
        if len(diff_ids) != len(manifest.layers):
            raise InvalidArgument(f"invalid image: {len(manifest.layers)} layers but {len(diff_ids)} diff ids")
        parent = ""
        for layer, diff_id, chain in zip(manifest.layers, diff_ids, mf.chain_ids(diff_ids), strict=True):
            try:
                self.snapshotter.stat(chain)
                parent = chain
                continue
            except NotFound:
                pass
            key = f"extract-{secrets.token_hex(6)}-{chain}"
            mounts = self.snapshotter.prepare(key, parent)
            try:
                with self.content.open(layer.digest) as fh:
                    applied = apply_layer(fh, _upper_dir(mounts))
                if applied.diff_id != diff_id:
                    raise InvalidArgument(f"failed to unpack layer {layer.digest}: diff id {applied.diff_id} "
                                          f"does not match the image config ({diff_id})")
                self.snapshotter.commit(chain, key, labels={"containerd.io/snapshot.ref": chain})
            except AlreadyExists:
                self.snapshotter.remove(key)
            except BaseException:
                self.snapshotter.remove(key)
                raise
            parent = chain
        return parent

    def _prepare_rootfs(self, image: Image | None, container_id: str) -> list[Mount]:
        parent = ""
        if image is not None:
            target = Descriptor(mf.OCI_MANIFEST, image.manifest_digest, 0)
            manifest, config = self._parse_target(target)
            parent = self._unpack(manifest, config)
        return self.snapshotter.prepare(container_id, parent)

    # ---- import -----------------------------------------------------------------------------------------

    def _import(self, src: Path, repo: str | None, tag: str | None, changes: list[str], message: str,
                e: _Events) -> str:
        ref = parse_repository_and_tag(repo, tag) if repo else None
        container_config = apply_changes(_empty_container_config(), changes)
        existed = set()
        writer = self.content.writer()
        try:
            with open(src, "rb") as fh:
                stream = decompressed(fh)
                while chunk := stream.read(1 << 20):
                    writer.write(chunk)
        except FileNotFoundError:
            writer.abort()
            raise InvalidArgument(f"import: {src}: no such file or directory") from None
        except BaseException:
            writer.abort()
            raise
        if self.content.exists(writer.digest):
            existed.add(writer.digest)
        layer_digest, layer_size = writer.commit()
        created = mf.rfc3339_nano(datetime.now(UTC))
        comment = message or "Imported from -"
        plat = mf.host_platform()
        config: dict[str, Any] = {
            "architecture": plat["architecture"], "comment": comment, "config": container_config,
            "created": created, "docker_version": "", "history": [{"created": created, "comment": comment}],
            "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }
        if "variant" in plat:
            config["variant"] = plat["variant"]
        layers = [Descriptor(mf.OCI_LAYER, layer_digest, layer_size)]
        try:
            target = self._store_image(config, layers, existed)
        except BaseException:
            self._forget_blobs([layer_digest], existed)
            raise
        self._name_or_dangle(target, [str(ref)] if ref else [], e)
        return str(self._parse_target(target)[0].config.digest)

    def _store_image(self, config: dict[str, Any], layers: list[Descriptor], existed: set[str]) -> Descriptor:
        """Write config + manifest blobs and unpack; on failure the blobs this call created are removed."""
        config_bytes = json.dumps(config, separators=(",", ":")).encode()
        written: list[str] = []
        try:
            config_digest = sha256_digest(config_bytes)
            if not self.content.exists(config_digest):
                written.append(self.content.write(config_bytes))
            config_desc = Descriptor(mf.OCI_CONFIG, config_digest, len(config_bytes))
            manifest_bytes = mf.build_manifest(config_desc, layers)
            manifest_digest = sha256_digest(manifest_bytes)
            if not self.content.exists(manifest_digest):
                written.append(self.content.write(manifest_bytes))
            target = Descriptor(mf.OCI_MANIFEST, manifest_digest, len(manifest_bytes))
            manifest, parsed = self._parse_target(target)
            self._unpack(manifest, parsed)
            return target
        except BaseException:
            self._forget_blobs(written, existed)
            raise

    def _forget_blobs(self, digests: list[str], keep: set[str]) -> None:
        for digest in digests:
            if digest not in keep:
                self._parsed.pop(digest, None)
                try:
                    self.content.delete(digest)
                except NotFound:
                    pass

    def _name_or_dangle(self, target: Descriptor, names: list[str], e: _Events) -> None:
        for name in names:
            self._set_name(name, target, e)
        if not names and not any(self._same_image(r.target, target) for r in self.images.list(self.namespace)):
            self._put_dangling(target, e)

    # ---- load ------------------------------------------------------------------------------------------------

    def _load(self, src: Path, e: _Events) -> list[str]:
        try:
            tf = tarfile.open(src, "r:*")  # noqa: SIM115 - closed below
        except (tarfile.TarError, OSError) as exc:
            raise InvalidArgument(f"invalid tar archive: {exc}") from None
        with tf:
            archive = _Archive(tf)
            existed = {b.digest for b in self.content.list()}
            new_blobs: list[str] = []
            try:
                if archive.has("index.json"):
                    loaded = self._load_oci(archive, new_blobs, existed)
                elif archive.has("manifest.json"):
                    loaded = self._load_docker(archive, new_blobs, existed)
                else:
                    raise InvalidArgument("invalid archive: neither manifest.json nor index.json found")
                for target, _names in loaded:
                    manifest, config = self._parse_target(target)
                    self._unpack(manifest, config)
            except BaseException:
                self._forget_blobs(new_blobs, existed)
                raise
        lines = []
        for target, names in loaded:
            self._name_or_dangle(target, names, e)
            if names:
                lines += [f"Loaded image: {parse_normalized(n).familiar()}" for n in names]
            else:
                lines.append(f"Loaded image ID: {self._parse_target(target)[0].config.digest}")
        return lines

    def _ingest_member(self, archive: _Archive, path: str, expected: str | None, new_blobs: list[str],
                       existed: set[str]) -> tuple[str, int]:
        with archive.open(path) as fh:
            digest, size = self.content.ingest_file(fh, expected)
        if digest not in existed and digest not in new_blobs:
            new_blobs.append(digest)
        return digest, size

    def _load_docker(self, archive: _Archive, new_blobs: list[str], existed: set[str],
                     ) -> list[tuple[Descriptor, list[str]]]:
        entries = archive.json("manifest.json")
        if not isinstance(entries, list):
            raise InvalidArgument("invalid archive: manifest.json must hold a list")
        loaded = []
        for item in entries:
            if not isinstance(item, dict) or not isinstance(item.get("Config"), str) \
                    or not isinstance(item.get("Layers") or [], list):
                raise InvalidArgument("invalid archive: bad manifest.json entry")
            config_digest, config_size = self._ingest_member(archive, item["Config"], None, new_blobs, existed)
            config = mf.parse_config(self.content.read(config_digest))
            diff_ids = mf.diff_ids(config)
            layer_paths = item.get("Layers") or []
            if len(layer_paths) != len(diff_ids):
                raise InvalidArgument(f"invalid archive: {len(layer_paths)} layers for {len(diff_ids)} diff ids")
            layers = []
            for i, (path, diff_id) in enumerate(zip(layer_paths, diff_ids, strict=True)):
                if not isinstance(path, str):
                    raise InvalidArgument("invalid archive: bad layer path")
                digest, size = self._ingest_member(archive, path, None, new_blobs, existed)
                with self.content.open(digest) as fh:
                    compressed = detect_compression(fh.read(6)) != "none"
                actual = layer_diff_id(self.content.path(digest))[0] if compressed else digest
                if actual != diff_id:
                    raise InvalidArgument(f"invalid diffID for layer {i}: expected {diff_id!r}, got {actual!r}")
                layers.append(Descriptor(mf.OCI_LAYER_GZIP if compressed else mf.OCI_LAYER, digest, size))
            config_desc = Descriptor(mf.OCI_CONFIG, config_digest, config_size)
            manifest_bytes = mf.build_manifest(config_desc, layers)
            digest = sha256_digest(manifest_bytes)
            if not self.content.exists(digest):
                new_blobs.append(self.content.write(manifest_bytes))
            names = [str(parse_repository_and_tag(t, None)) for t in (item.get("RepoTags") or [])
                     if isinstance(t, str)]
            loaded.append((Descriptor(mf.OCI_MANIFEST, digest, len(manifest_bytes)), names))
        return loaded

    def _load_oci(self, archive: _Archive, new_blobs: list[str], existed: set[str],
                  ) -> list[tuple[Descriptor, list[str]]]:
        extra_names: dict[str, list[str]] = {}
        if archive.has("manifest.json"):
            entries = archive.json("manifest.json")
            for item in entries if isinstance(entries, list) else []:
                if isinstance(item, dict) and isinstance(item.get("Config"), str):
                    hexpart = posixpath.basename(item["Config"]).removesuffix(".json")
                    extra_names.setdefault("sha256:" + hexpart, []).extend(
                        str(parse_repository_and_tag(t, None)) for t in item.get("RepoTags") or []
                        if isinstance(t, str))
        index = mf.parse_index(archive.read("index.json"))
        order: list[str] = []
        found: dict[str, tuple[Descriptor, list[str]]] = {}
        for entry in index:
            names = []
            name = entry.annotations.get(mf.ANNOTATION_IMAGE_NAME) or ""
            ref_name = entry.annotations.get(mf.ANNOTATION_REF_NAME) or ""
            if not name and ("/" in ref_name or ":" in ref_name):
                name = ref_name
            if name:
                names.append(str(parse_repository_and_tag(name, None)))
            for target in self._oci_manifests(archive, entry.descriptor, new_blobs, existed, depth=0):
                if target.digest not in found:
                    order.append(target.digest)
                    found[target.digest] = (target, [])
                found[target.digest][1].extend(n for n in names if n not in found[target.digest][1])
        loaded = []
        for digest in order:
            target, names = found[digest]
            config_digest = self._parse_target(target)[0].config.digest
            names += [n for n in extra_names.get(config_digest, []) if n not in names]
            loaded.append((target, names))
        return loaded

    def _oci_manifests(self, archive: _Archive, desc: Descriptor, new_blobs: list[str], existed: set[str],
                       depth: int) -> list[Descriptor]:
        if depth > 4:
            raise InvalidArgument("invalid archive: index nesting too deep")
        blob = _blob_path(desc.digest)
        self._ingest_member(archive, blob, desc.digest, new_blobs, existed)
        data = self.content.read(desc.digest)
        media_type = desc.media_type or mf.media_type_of(data)
        if media_type in mf.INDEX_TYPES:
            children = mf.parse_index(data)
            want = mf.host_platform()
            chosen = [c for c in children if c.descriptor.media_type in mf.MANIFEST_TYPES
                      and (not c.platform or mf.platform_matches(c.platform, want))][:1]
            if not chosen:
                raise InvalidArgument(f"invalid archive: no manifest for {want['os']}/{want['architecture']}")
            return self._oci_manifests(archive, chosen[0].descriptor, new_blobs, existed, depth + 1)
        manifest = mf.parse_manifest(data, media_type)
        self._ingest_member(archive, _blob_path(manifest.config.digest), manifest.config.digest, new_blobs, existed)
        config = mf.parse_config(self.content.read(manifest.config.digest))
        diff_ids = mf.diff_ids(config)
        if len(diff_ids) != len(manifest.layers):
            raise InvalidArgument(f"invalid image: {len(manifest.layers)} layers but {len(diff_ids)} diff ids")
        for i, (layer, diff_id) in enumerate(zip(manifest.layers, diff_ids, strict=True)):
            self._ingest_member(archive, _blob_path(layer.digest), layer.digest, new_blobs, existed)
            actual = layer.digest
            if layer.media_type not in (mf.OCI_LAYER, mf.DOCKER_LAYER):
                actual = layer_diff_id(self.content.path(layer.digest))[0]
            if actual != diff_id:
                raise InvalidArgument(f"invalid diffID for layer {i}: expected {diff_id!r}, got {actual!r}")
        return [Descriptor(media_type, desc.digest, desc.size)]

    # ---- save -------------------------------------------------------------------------------------------------

    def _save(self, refs: list[str], dest: Path) -> None:
        chosen: dict[str, tuple[_View, list[Reference]]] = {}
        for ref in refs:
            try:
                parsed: Reference | None = parse_normalized(ref)
            except InvalidArgument:
                parsed = None
            if parsed is not None and parsed.tag is None and parsed.digest is None:
                repo_views = [(v, [t for t in v.tags if t.name == parsed.name]) for v in self._views().values()]
                repo_views = [(v, ts) for v, ts in repo_views if ts]
                if repo_views:
                    for v, ts in repo_views:
                        chosen.setdefault(v.id, (v, []))[1].extend(ts)
                    continue
            view, name = self._resolve(ref)
            entry = chosen.setdefault(view.id, (view, []))
            if name is not None:
                entry[1].append(parse_normalized(name))
        tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
        try:
            with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
                self._write_archive(tf, list(chosen.values()))
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _write_archive(self, tf: tarfile.TarFile, chosen: list[tuple[_View, list[Reference]]]) -> None:
        _tar_dir(tf, "blobs")
        _tar_dir(tf, "blobs/sha256")
        written: set[str] = set()

        def blob(desc_digest: str) -> str:
            path = _blob_path(desc_digest)
            if desc_digest not in written:
                written.add(desc_digest)
                info = tarfile.TarInfo(path)
                info.size = self.content.info(desc_digest).size
                info.mode = 0o644
                with self.content.open(desc_digest) as fh:
                    tf.addfile(info, fh)
            return path

        index_entries: list[mf.IndexEntry] = []
        manifest_json: list[dict[str, Any]] = []
        repositories: dict[str, dict[str, str]] = {}
        for view, tags in chosen:
            unique_tags = sorted({str(t): t for t in tags}.values(), key=str)
            config_path = blob(view.manifest.config.digest)
            layer_paths = [blob(layer.digest) for layer in view.manifest.layers]
            blob(view.manifest_desc.digest)
            for t in unique_tags:
                ann = {mf.ANNOTATION_IMAGE_NAME: str(t), mf.ANNOTATION_REF_NAME: t.tag or ""}
                index_entries.append(mf.IndexEntry(view.manifest_desc, {}, ann))
            if not unique_tags:
                index_entries.append(mf.IndexEntry(view.manifest_desc, {}, {}))
            manifest_json.append({"Config": config_path,
                                  "RepoTags": [t.familiar() for t in unique_tags] or None,
                                  "Layers": layer_paths})
            for t in unique_tags:
                if view.manifest.layers:
                    repositories.setdefault(t.familiar_name, {})[t.tag or "latest"] = \
                        view.manifest.layers[-1].digest[len("sha256:"):]
        _tar_bytes(tf, "index.json", mf.build_index(index_entries))
        _tar_bytes(tf, "manifest.json", json.dumps(manifest_json, separators=(",", ":")).encode())
        _tar_bytes(tf, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        if repositories:
            _tar_bytes(tf, "repositories", json.dumps(repositories, separators=(",", ":")).encode())

    # ---- list / inspect / history ---------------------------------------------------------------------

    def _list(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        allowed = {"dangling", "reference", "label", "before", "since", "until"}
        for key in filters:
            if key not in allowed:
                raise InvalidArgument(f"invalid filter '{key}'")
        views = list(self._views().values())
        dangling = _bool_filter(filters, "dangling")
        before = [self._resolve(r)[0].created for r in filters.get("before", [])]
        since = [self._resolve(r)[0].created for r in filters.get("since", [])]
        until = [_until(v) for v in filters.get("until", [])]
        out = []
        for view in sorted(views, key=lambda v: v.created, reverse=True):
            is_dangling = not view.tags and not view.digests
            if dangling is not None and dangling != is_dangling:
                continue
            if filters.get("reference") and not any(
                    familiar_match(p, r) for p in filters["reference"] for r in view.refs):
                continue
            if not labels_match(_image_labels(view), filters):
                continue
            if any(view.created >= b for b in before) or any(view.created <= s for s in since):
                continue
            if any(view.created.timestamp() > u for u in until):
                continue
            size = self._size(view)
            image = self._image(view)
            out.append({
                "Id": view.id, "ParentId": "", "RepoTags": list(image.repo_tags),
                "RepoDigests": list(image.repo_digests), "Created": int(view.created.timestamp()),
                "Size": size, "SharedSize": -1, "VirtualSize": size,
                "Labels": dict((view.config.get("config") or {}).get("Labels") or {}), "Containers": -1,
            })
        return out

    def _inspect(self, view: _View) -> dict[str, Any]:
        image = self._image(view)
        size = self._size(view)
        cfg = view.config
        last_tag = max((r.updated_at for r in view.named), default=None)
        out: dict[str, Any] = {
            "Id": view.id,
            "RepoTags": list(image.repo_tags),
            "RepoDigests": list(image.repo_digests),
            "Parent": cfg.get("parent", "") or "",
            "Comment": cfg.get("comment", "") or "",
            "Created": mf.rfc3339_nano(view.created),
            "Container": cfg.get("container", "") or "",
            "ContainerConfig": _docker_container_config(cfg.get("container_config") or {}),
            "DockerVersion": cfg.get("docker_version", "") or "",
            "Author": cfg.get("author", "") or "",
            "Config": _docker_container_config(cfg.get("config") or {}),
            "Architecture": cfg.get("architecture", ""),
            "Os": cfg.get("os", "linux"),
            "Size": size,
            "VirtualSize": size,
            "GraphDriver": {"Name": "overlay2", "Data": self._graph_driver_data(view)},
            "RootFS": {"Type": "layers", "Layers": mf.diff_ids(cfg)},
            "Metadata": {"LastTagTime": mf.rfc3339_nano(last_tag) if last_tag else ZERO_TIME},
        }
        if cfg.get("variant"):
            out["Variant"] = cfg["variant"]
        if cfg.get("os.version"):
            out["OsVersion"] = cfg["os.version"]
        return out

    def _graph_driver_data(self, view: _View) -> dict[str, str] | None:
        chains = view.chain_ids
        snap = self.snapshotter
        if not chains or not isinstance(snap, OverlaySnapshotter):
            return None
        try:
            upper = snap.fs_dir(chains[-1])
            lowers = snap.parent_dirs(chains[-1])
        except NotFound:
            return None
        data = {"MergedDir": str(upper.parent / "merged"), "UpperDir": str(upper),
                "WorkDir": str(upper.parent / "work")}
        if lowers:
            data["LowerDir"] = ":".join(str(p) for p in lowers)
        return data

    def _history(self, view: _View) -> list[dict[str, Any]]:
        entries = view.config.get("history") or []
        chains = view.chain_ids
        layer_sizes = []
        for layer, chain in zip(view.manifest.layers, chains, strict=False):
            try:
                layer_sizes.append(self.snapshotter.usage(chain).size)
            except NotFound:
                layer_sizes.append(layer.size)
        if not entries:
            entries = [{"created": view.config.get("created")} for _ in layer_sizes] or [{}]
        out = []
        layer_index = 0
        for h in entries:
            size = 0
            if not h.get("empty_layer") and layer_index < len(layer_sizes):
                size = layer_sizes[layer_index]
                layer_index += 1
            created = mf.parse_time(h.get("created"))
            out.append({"Id": "<missing>", "Created": int(created.timestamp()) if created else 0,
                        "CreatedBy": h.get("created_by", "") or "", "Tags": None, "Size": size,
                        "Comment": h.get("comment", "") or ""})
        out.reverse()
        out[0]["Id"] = view.id
        out[0]["Tags"] = list(self._image(view).repo_tags) or None
        return out

    # ---- remove / prune -----------------------------------------------------------------------------------

    def _remove(self, ref: str, force: bool, e: _Events) -> list[dict[str, str]]:
        view, name = self._resolve(ref)
        users = self._usage_check(view.id)
        running = [cid for cid, is_running in users if is_running]
        stopped = [cid for cid, is_running in users if not is_running]
        records: list[dict[str, str]] = []
        removed_repo_ref = False
        if name is not None:
            if not force and _single_reference(view.refs) and users:
                raise Conflict(f"conflict: unable to remove repository reference \"{ref}\" (must force) - "
                               f"container {short_id(users[0][0])} is using its referenced image "
                               f"{short_id(view.id)}")
            self._untag(view, name, records, e, keep_dangling=True)
            removed = parse_normalized(name)
            if removed.digest is None and not any(t.name == removed.name for t in view.tags):
                # Docker: the last tag of a repository takes the repository's digest references with it
                for other in view.digests:
                    if other.name == removed.name and str(other) in (r.name for r in view.records):
                        self._untag(view, str(other), records, e, keep_dangling=True)
            if view.named:
                return records
            removed_repo_ref = True
        elif _single_reference(view.refs):
            if running:
                raise self._conflict(view, True, f"image is being used by running container {short_id(running[0])}")
            if stopped and not force:
                raise self._conflict(view, False,
                                     f"image is being used by stopped container {short_id(stopped[0])}")
            for rec in list(view.named):
                self._untag(view, rec.name, records, e, keep_dangling=True)
        # the image itself
        conflict = None
        if running:
            conflict = self._conflict(view, True, f"image is being used by running container {short_id(running[0])}")
        elif not force and view.named:
            conflict = self._conflict(view, False, "image is referenced in multiple repositories")
        elif not force and stopped:
            conflict = self._conflict(view, False, f"image is being used by stopped container {short_id(stopped[0])}")
        elif force and stopped:
            for rec in list(view.named):  # forced: untag, keep the image (dangling) for its containers
                self._untag(view, rec.name, records, e, keep_dangling=True)
            return records
        if conflict is not None:
            if removed_repo_ref and users:
                return records  # untag done; the image stays (dangling) for its containers
            raise conflict
        if force:
            for rec in list(view.named):
                self._untag(view, rec.name, records, e, keep_dangling=False)
        records += self._delete(view, e)[0]
        return records

    def _conflict(self, view: _View, hard: bool, message: str) -> Conflict:
        forced = "cannot be forced" if hard else "must be forced"
        return Conflict(f"conflict: unable to delete {short_id(view.id)} ({forced}) - {message}")

    def _untag(self, view: _View, name: str, records: list[dict[str, str]], e: _Events,
               keep_dangling: bool) -> None:
        rec = next(r for r in view.records if r.name == name)
        if keep_dangling and len(view.named) == 1:
            self._put_dangling(rec.target, e)
            view.records.append(self.images.get(self.namespace, DANGLING_PREFIX + rec.target.digest))
        self.images.delete(self.namespace, name)
        e.append((ev.IMAGE_DELETE, name))
        view.records = [r for r in view.records if r.name != name]
        records.append({"Untagged": parse_normalized(name).familiar()})

    def _delete(self, view: _View, e: _Events) -> tuple[list[dict[str, str]], int]:
        """Delete every record of the image, then snapshots and blobs no other image uses."""
        for rec in view.records:
            try:
                self.images.delete(self.namespace, rec.name)
            except NotFound:
                continue
            e.append((ev.IMAGE_DELETE, rec.name))
        out = [{"Deleted": view.id}]
        reclaimed = 0
        still_used_chains, still_used_blobs, complete = self._references()
        for chain in reversed(view.chain_ids):
            if chain in still_used_chains:
                break
            try:
                size = self.snapshotter.usage(chain).size
                self.snapshotter.remove(chain)
            except (NotFound, FailedPrecondition):
                break
            reclaimed += size
            out.append({"Deleted": chain})
        if complete:
            own = [view.manifest_desc.digest, view.manifest.config.digest] + [d.digest for d in view.manifest.layers]
            for rec in view.records:  # records of the image may name other manifests (pulled, loaded)
                if rec.target.digest not in own:
                    own.append(rec.target.digest)
                    try:
                        own += [d.digest for d in self._parse_target(rec.target)[0].layers]
                    except (NotFound, InvalidArgument):
                        pass
            for digest in list(own):  # gzip forms made on push go with their layer, unless an image uses them
                variant = self.content.gzip_variant(digest)
                if variant is not None and digest not in still_used_blobs:
                    own.append(variant.digest)
            self._forget_blobs(list(dict.fromkeys(d for d in own if d not in still_used_blobs)), set())
        return out, reclaimed

    def _references(self) -> tuple[set[str], set[str], bool]:
        """Chain ids and blob digests still used by any image record of any namespace (complete=False when unsure)."""
        chains: set[str] = set()
        blobs: set[str] = set()
        complete = True
        for ns in self.images.namespaces():
            for rec in self.images.list(ns):
                blobs.add(rec.target.digest)
                try:
                    data = self.content.read(rec.target.digest)
                    targets = [rec.target]
                    if mf.media_type_of(data) in mf.INDEX_TYPES:
                        targets = [c.descriptor for c in mf.parse_index(data)]
                    for t in targets:
                        blobs.add(t.digest)
                        if not self.content.exists(t.digest):
                            continue
                        manifest, config = self._parse_target(t)
                        blobs.add(manifest.config.digest)
                        blobs.update(d.digest for d in manifest.layers)
                        chains.update(mf.chain_ids(mf.diff_ids(config)))
                except (NotFound, InvalidArgument):
                    complete = False
        return chains, blobs, complete

    def _prune(self, dangling_only: bool, filters: dict[str, list[str]], e: _Events) -> dict[str, Any]:
        for key in filters:
            if key not in {"dangling", "until", "label", "label!"}:
                raise InvalidArgument(f"invalid filter '{key}'")
        dangling = _bool_filter(filters, "dangling")
        if dangling is not None:
            dangling_only = dangling
        until = [_until(v) for v in filters.get("until", [])]
        deleted: list[dict[str, str]] = []
        reclaimed = 0
        for view in list(self._views().values()):
            if dangling_only and view.named:
                continue
            if self._usage_check(view.id):
                continue
            if any(view.created.timestamp() >= u for u in until):
                continue
            if not labels_match(_image_labels(view), filters):
                continue
            for rec in list(view.named):
                self._untag(view, rec.name, deleted, e, keep_dangling=False)
            records, size = self._delete(view, e)
            deleted += records
            reclaimed += size
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}


# ---- archive reading ------------------------------------------------------------------------------------------


class _Archive:
    """Read-only view of an untrusted tar: members are looked up by cleaned name, never written to disk."""

    def __init__(self, tf: tarfile.TarFile) -> None:
        self.tf = tf
        self.members: dict[str, tarfile.TarInfo] = {}
        try:
            members = tf.getmembers()
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise InvalidArgument(f"invalid tar archive: {exc}") from None
        for m in members:
            parts = [p for p in m.name.split("/") if p not in ("", ".")]
            if m.name.startswith("/") or ".." in parts:
                raise InvalidArgument(f"invalid archive: entry {m.name!r} escapes the archive root")
            self.members["/".join(parts)] = m

    def has(self, path: str) -> bool:
        return path in self.members

    def _member(self, path: str) -> tarfile.TarInfo:
        name = _clean_archive_path(path)
        for _ in range(16):
            m = self.members.get(name)
            if m is None:
                raise InvalidArgument(f"invalid archive: {path!r} not found in the archive")
            if m.issym():
                name = _clean_archive_path(posixpath.join(posixpath.dirname(name), m.linkname))
            elif m.islnk():
                name = _clean_archive_path(m.linkname)
            elif m.isreg():
                return m
            else:
                raise InvalidArgument(f"invalid archive: {path!r} is not a regular file")
        raise InvalidArgument(f"invalid archive: too many links resolving {path!r}")

    def open(self, path: str) -> IO[bytes]:
        fh = self.tf.extractfile(self._member(path))
        if fh is None:
            raise InvalidArgument(f"invalid archive: {path!r} is not a regular file")
        return fh

    def read(self, path: str, limit: int = 64 << 20) -> bytes:
        if self._member(path).size > limit:
            raise InvalidArgument(f"invalid archive: {path!r} is too large")
        with self.open(path) as fh:
            return fh.read()

    def json(self, path: str) -> Any:
        try:
            return json.loads(self.read(path))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"invalid archive: {path}: {exc}") from None


def _clean_archive_path(path: str) -> str:
    if not isinstance(path, str) or path.startswith("/"):
        raise InvalidArgument(f"invalid archive: path {path!r} is absolute")
    norm = posixpath.normpath(path)
    if norm == ".." or norm.startswith("../"):
        raise InvalidArgument(f"invalid archive: path {path!r} escapes the archive")
    return norm.removeprefix("./")


def _blob_path(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"blobs/{algo}/{hexpart}"


def _tar_dir(tf: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tf.addfile(info)


def _tar_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tf.addfile(info, io.BytesIO(data))


def _upper_dir(mounts: list[Mount]) -> Path:
    """Where a new layer is applied: the bind source or the overlay upperdir of a prepared snapshot."""
    m = mounts[0]
    if m.type == "bind":
        return Path(m.source)
    for opt in m.options:
        if opt.startswith("upperdir="):
            return Path(opt[len("upperdir="):])
    raise FailedPrecondition("prepared snapshot has no writable layer")


# ---- Docker semantics helpers ---------------------------------------------------------------------------------


def _single_reference(refs: list[Reference]) -> bool:
    """Docker's isSingleReference: one repository and at most one tag."""
    if len(refs) <= 1:
        return len(refs) == 1
    tags = [r for r in refs if r.digest is None]
    if len(tags) > 1:
        return False
    names = {r.name for r in refs}
    return len(names) == 1


def _bool_filter(filters: dict[str, list[str]], key: str) -> bool | None:
    values = filters.get(key)
    if not values:
        return None
    result = None
    for v in values:
        if v.lower() in ("true", "1"):
            result = True
        elif v.lower() in ("false", "0"):
            result = False
        else:
            raise InvalidArgument(f"Invalid filter '{key}={v}'")
    return result


def _until(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    dt = mf.parse_time(value)
    if dt is None:
        m = re.fullmatch(r"(\d+)([smh])", value)
        if not m:
            raise InvalidArgument(f"invalid filter 'until={value}'")
        seconds = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]
        return datetime.now(UTC).timestamp() - seconds
    return dt.timestamp()


def _image_labels(view: _View) -> dict[str, str]:
    return (view.config.get("config") or {}).get("Labels") or {}


_CONTAINER_CONFIG_KEYS: list[tuple[str, Any]] = [
    ("Hostname", ""), ("Domainname", ""), ("User", ""), ("AttachStdin", False), ("AttachStdout", False),
    ("AttachStderr", False), ("ExposedPorts", None), ("Tty", False), ("OpenStdin", False), ("StdinOnce", False),
    ("Env", None), ("Cmd", None), ("Healthcheck", None), ("ArgsEscaped", None), ("Image", ""),
    ("Volumes", None), ("WorkingDir", ""), ("Entrypoint", None), ("OnBuild", None), ("Labels", None),
    ("StopSignal", None), ("Shell", None),
]
_OMIT_EMPTY = {"ExposedPorts", "Healthcheck", "ArgsEscaped", "StopSignal", "Shell"}


def _empty_container_config() -> dict[str, Any]:
    return {k: v for k, v in _CONTAINER_CONFIG_KEYS if k not in _OMIT_EMPTY}


def _docker_container_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """An image's container config in the exact key set and order Docker's inspect prints."""
    out: dict[str, Any] = {}
    for key, default in _CONTAINER_CONFIG_KEYS:
        value = cfg.get(key, default)
        if key in _OMIT_EMPTY and not value:
            continue
        out[key] = value
    for key, value in cfg.items():
        if key not in out and key not in _OMIT_EMPTY:
            out[key] = value
    return out
