"""containerd-style image records (name -> target descriptor), namespaced, one JSON file per namespace.

Files live at ``<root>/metadata/images/<namespace>.json``, written atomically under an flock so several
in-process users and processes agree. Blocking: async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import builtins
import re
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiodock.errors import InvalidArgument, NotFound
from aiodock.util import atomicfile
from aiodock.util.filelock import locked

NAMESPACE_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,74}[A-Za-z0-9])?$")


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor (platform/annotations are kept by the manifest module where needed)."""

    media_type: str
    digest: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True, slots=True)
class ImageRecord:
    name: str
    target: Descriptor
    created_at: datetime
    updated_at: datetime
    labels: dict[str, str] = field(default_factory=dict)


def validate_namespace(ns: str) -> str:
    if not NAMESPACE_RE.match(ns):
        raise InvalidArgument(f"namespace {ns!r}: invalid namespace name")
    return ns


class ImageStore:
    """Image records per namespace."""

    def __init__(self, root: Path) -> None:
        self.dir = Path(root) / "metadata" / "images"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.dir / ".lock"

    def get(self, ns: str, name: str) -> ImageRecord:
        with self._locked():
            records = self._load(ns)
        if name not in records:
            raise NotFound(f"image \"{name}\": not found")
        return records[name]

    def list(self, ns: str) -> list[ImageRecord]:
        with self._locked():
            return sorted(self._load(ns).values(), key=lambda r: r.name)

    def put(self, ns: str, rec: ImageRecord) -> None:
        """Create or update a record (created_at of an existing record is kept)."""
        if not rec.name:
            raise InvalidArgument("image name is required")
        with self._locked():
            records = self._load(ns)
            old = records.get(rec.name)
            if old is not None:
                rec = ImageRecord(rec.name, rec.target, old.created_at, rec.updated_at, dict(rec.labels))
            records[rec.name] = rec
            self._save(ns, records)

    def delete(self, ns: str, name: str) -> None:
        with self._locked():
            records = self._load(ns)
            if name not in records:
                raise NotFound(f"image \"{name}\": not found")
            del records[name]
            self._save(ns, records)

    def namespaces(self) -> builtins.list[str]:
        return sorted(p.stem for p in self.dir.glob("*.json") if self._load(p.stem))

    def _locked(self) -> AbstractContextManager[None]:
        return locked(self._lock_path)

    def _file(self, ns: str) -> Path:
        return self.dir / f"{validate_namespace(ns)}.json"

    def _load(self, ns: str) -> dict[str, ImageRecord]:
        try:
            raw = atomicfile.read_json(self._file(ns))
        except FileNotFoundError:
            return {}
        out = {}
        for item in raw.get("images", []):
            t = item["target"]
            out[item["name"]] = ImageRecord(
                name=item["name"],
                target=Descriptor(t["mediaType"], t["digest"], int(t["size"])),
                created_at=_parse_time(item["created_at"]),
                updated_at=_parse_time(item["updated_at"]),
                labels=dict(item.get("labels", {})),
            )
        return out

    def _save(self, ns: str, records: dict[str, ImageRecord]) -> None:
        items = [
            {
                "name": r.name,
                "target": r.target.to_json(),
                "created_at": r.created_at.isoformat(),
                "updated_at": r.updated_at.isoformat(),
                "labels": r.labels,
            }
            for r in sorted(records.values(), key=lambda r: r.name)
        ]
        atomicfile.write_json(self._file(ns), {"images": items})


def _parse_time(value: str) -> datetime:
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
