"""OCI / Docker schema2 media types, manifest/index/config JSON, diff ids and chain ids (OCI image spec)."""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiodock.core.content import DIGEST_RE
from aiodock.core.images.store import Descriptor
from aiodock.errors import InvalidArgument

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
LAYER_TYPES = frozenset({OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, DOCKER_LAYER, DOCKER_LAYER_GZIP,
                         DOCKER_LAYER_FOREIGN, "application/vnd.oci.image.layer.nondistributable.v1.tar",
                         "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"})

ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True, slots=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True, slots=True)
class IndexEntry:
    descriptor: Descriptor
    platform: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


def canonical_json(value: Any) -> bytes:
    """Compact, key-ordered JSON (stable digests)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def host_platform() -> dict[str, str]:
    """OCI platform of this host: ``{"architecture": "amd64", "os": "linux"}`` (+ variant on arm)."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
            "i686": "386", "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(
        machine, machine)
    out = {"architecture": arch, "os": "linux"}
    if arch == "arm64":
        out["variant"] = "v8"
    elif arch == "arm":
        out["variant"] = "v7"
    return out


def rfc3339_nano(dt: datetime) -> str:
    """Go's RFC3339Nano in UTC: fractional seconds without trailing zeros."""
    dt = dt.astimezone(UTC)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{dt.microsecond:06d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def parse_time(value: str | None) -> datetime | None:
    """Parse RFC3339 (with up to nanosecond precision); None on absence or nonsense."""
    if not value:
        return None
    v = value.strip().replace("z", "Z")
    if v.endswith("Z"):
        v = v[:-1] + "+00:00"
    if "." in v:
        head, _, rest = v.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        v = f"{head}.{(digits + '000000')[:6]}{rest}"
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def chain_ids(diff_ids: list[str]) -> list[str]:
    """ChainID(L0) = DiffID(L0); ChainID(L0|..|Ln) = sha256(ChainID(L0|..|Ln-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


def chain_id(diff_ids: list[str]) -> str:
    """Chain id of the whole stack, "" for an image without layers."""
    ids = chain_ids(diff_ids)
    return ids[-1] if ids else ""


def descriptor_from_json(raw: Any, what: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise InvalidArgument(f"invalid {what}: descriptor must be an object")
    media_type, digest, size = raw.get("mediaType", ""), raw.get("digest"), raw.get("size")
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise InvalidArgument(f"invalid {what}: bad digest {digest!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidArgument(f"invalid {what}: bad size {size!r}")
    if not isinstance(media_type, str):
        raise InvalidArgument(f"invalid {what}: bad mediaType")
    return Descriptor(media_type, digest, size)


def build_manifest(config: Descriptor, layers: list[Descriptor], media_type: str = OCI_MANIFEST,
                   annotations: dict[str, str] | None = None) -> bytes:
    value: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config.to_json(),
        "layers": [d.to_json() for d in layers],
    }
    if annotations:
        value["annotations"] = dict(annotations)
    return json.dumps(value, separators=(",", ":")).encode()


def parse_manifest(data: bytes, media_type: str = "") -> Manifest:
    raw = _load_object(data, "manifest")
    mt = raw.get("mediaType") or media_type or OCI_MANIFEST
    if mt not in MANIFEST_TYPES:
        raise InvalidArgument(f"invalid manifest: unsupported media type {mt!r}")
    if raw.get("schemaVersion") != 2:
        raise InvalidArgument("invalid manifest: schemaVersion must be 2")
    layers = raw.get("layers") or []
    if not isinstance(layers, list):
        raise InvalidArgument("invalid manifest: layers must be a list")
    return Manifest(mt, descriptor_from_json(raw.get("config"), "manifest config"),
                    tuple(descriptor_from_json(d, "manifest layer") for d in layers))


def build_index(entries: list[IndexEntry], media_type: str = OCI_INDEX) -> bytes:
    manifests = []
    for e in entries:
        item: dict[str, Any] = e.descriptor.to_json()
        if e.platform:
            item["platform"] = dict(e.platform)
        if e.annotations:
            item["annotations"] = dict(e.annotations)
        manifests.append(item)
    return json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests},
                      separators=(",", ":")).encode()


def parse_index(data: bytes) -> list[IndexEntry]:
    raw = _load_object(data, "index")
    items = raw.get("manifests")
    if not isinstance(items, list):
        raise InvalidArgument("invalid index: manifests must be a list")
    out = []
    for item in items:
        desc = descriptor_from_json(item, "index entry")
        plat = item.get("platform") or {}
        ann = item.get("annotations") or {}
        if not isinstance(plat, dict) or not isinstance(ann, dict):
            raise InvalidArgument("invalid index: bad platform or annotations")
        out.append(IndexEntry(desc, {str(k): str(v) for k, v in plat.items() if isinstance(v, str)},
                              {str(k): str(v) for k, v in ann.items()}))
    return out


def media_type_of(data: bytes) -> str:
    """Guess the media type of a manifest or index blob from its JSON."""
    raw = _load_object(data, "manifest")
    mt = raw.get("mediaType")
    if isinstance(mt, str) and mt:
        return mt
    return OCI_INDEX if "manifests" in raw else OCI_MANIFEST


def parse_config(data: bytes) -> dict[str, Any]:
    raw = _load_object(data, "image config")
    rootfs = raw.get("rootfs")
    if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids", []), list):
        raise InvalidArgument("invalid image config: rootfs.diff_ids missing")
    return raw


def diff_ids(config: dict[str, Any]) -> list[str]:
    ids = (config.get("rootfs") or {}).get("diff_ids") or []
    for d in ids:
        if not isinstance(d, str) or not DIGEST_RE.match(d):
            raise InvalidArgument(f"invalid image config: bad diff id {d!r}")
    return list(ids)


def platform_matches(plat: dict[str, str], want: dict[str, str]) -> bool:
    if plat.get("os", "linux") != want["os"] or plat.get("architecture") != want["architecture"]:
        return False
    return not plat.get("variant") or not want.get("variant") or plat["variant"] == want["variant"]


def _load_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"invalid {what}: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidArgument(f"invalid {what}: not a JSON object")
    return raw
