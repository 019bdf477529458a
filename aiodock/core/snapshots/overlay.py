"""Overlay snapshotter: ``<root>/snapshots/<n>/{fs,work}`` per snapshot, ``<root>/metadata.json`` for records.

``root`` is the snapshotter's own directory (``<data-root>/snapshots/overlay``). Metadata is re-read under an
flock for every operation, so several instances and threads on the same root agree.
"""

from __future__ import annotations

import builtins
import os
import shutil
import stat
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiodock.core.mount import Mount
from aiodock.core.snapshots.base import Kind, SnapshotInfo, Usage
from aiodock.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from aiodock.util import atomicfile
from aiodock.util.filelock import locked


class OverlaySnapshotter:
    """containerd's overlayfs snapshotter on real overlay mounts."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.snapshots_dir = self.root / "snapshots"
        self.snapshots_dir.mkdir(parents=True, exist_ok=True)
        self._meta_path = self.root / "metadata.json"
        self._lock_path = self.root / ".lock"

    # ---- queries -------------------------------------------------------------------------------------------

    def stat(self, key: str) -> SnapshotInfo:
        with self._locked():
            return self._info(self._load(), key)

    def list(self) -> builtins.list[SnapshotInfo]:
        with self._locked():
            meta = self._load()
            return [self._info(meta, k) for k in sorted(meta["snapshots"])]

    def usage(self, key: str) -> Usage:
        with self._locked():
            meta = self._load()
            rec = self._record(meta, key)
        if rec["kind"] == Kind.COMMITTED.value and "usage" in rec:
            return Usage(rec["usage"][0], rec["usage"][1])
        return disk_usage(self._fs(rec["id"]))

    def mounts(self, key: str) -> builtins.list[Mount]:
        with self._locked():
            meta = self._load()
            rec = self._record(meta, key)
            if rec["kind"] == Kind.COMMITTED.value:
                raise FailedPrecondition(f"snapshot {key!r} is committed: mounts of a committed snapshot "
                                         "are not available, use a view")
            return self._mounts(meta, rec)

    def fs_dir(self, key: str) -> Path:
        """The directory holding the snapshot's own layer (its overlay upper dir)."""
        with self._locked():
            return self._fs(self._record(self._load(), key)["id"])

    def work_dir(self, key: str) -> Path:
        with self._locked():
            return self.snapshots_dir / str(self._record(self._load(), key)["id"]) / "work"

    def parent_dirs(self, key: str) -> builtins.list[Path]:
        """fs dirs of the ancestors of key, nearest first (overlay lowerdir order)."""
        with self._locked():
            meta = self._load()
            return [self._fs(meta["snapshots"][p]["id"]) for p in self._ancestors(meta, self._record(meta, key))]

    # ---- changes ----------------------------------------------------------------------------------------

    def prepare(self, key: str, parent: str = "", labels: dict[str, str] | None = None) -> builtins.list[Mount]:
        return self._create(key, parent, Kind.ACTIVE, labels)

    def view(self, key: str, parent: str = "", labels: dict[str, str] | None = None) -> builtins.list[Mount]:
        return self._create(key, parent, Kind.VIEW, labels)

    def update(self, key: str, labels: dict[str, str]) -> SnapshotInfo:
        with self._locked():
            meta = self._load()
            rec = self._record(meta, key)
            rec["labels"] = dict(labels)
            rec["updated_at"] = _now()
            self._save(meta)
            return self._info(meta, key)

    def commit(self, name: str, key: str, labels: dict[str, str] | None = None) -> None:
        _check_key(name)
        with self._locked():
            meta = self._load()
            rec = self._record(meta, key)
            if rec["kind"] != Kind.ACTIVE.value:
                raise FailedPrecondition(f"snapshot {key!r} is not active: failed precondition")
            if name in meta["snapshots"]:
                raise AlreadyExists(f"snapshot {name!r}: already exists")
        usage = disk_usage(self._fs(rec["id"]))
        with self._locked():
            meta = self._load()
            rec = self._record(meta, key)
            if name in meta["snapshots"]:
                raise AlreadyExists(f"snapshot {name!r}: already exists")
            del meta["snapshots"][key]
            now = _now()
            rec.update(kind=Kind.COMMITTED.value, updated_at=now, usage=[usage.size, usage.inodes])
            if labels is not None:
                rec["labels"] = dict(labels)
            meta["snapshots"][name] = rec
            self._save(meta)
        shutil.rmtree(self.snapshots_dir / str(rec["id"]) / "work", ignore_errors=True)

    def remove(self, key: str) -> None:
        with self._locked():
            meta = self._load()
            rec = self._record(meta, key)
            children = [k for k, r in meta["snapshots"].items() if r.get("parent") == key]
            if children:
                raise FailedPrecondition(f"cannot remove snapshot {key!r} with child {children[0]!r}: "
                                         "failed precondition")
            del meta["snapshots"][key]
            self._save(meta)
        _rmtree(self.snapshots_dir / str(rec["id"]))

    # ---- internals --------------------------------------------------------------------------------------

    def _create(self, key: str, parent: str, kind: Kind, labels: dict[str, str] | None) -> builtins.list[Mount]:
        _check_key(key)
        with self._locked():
            meta = self._load()
            if key in meta["snapshots"]:
                raise AlreadyExists(f"snapshot {key!r}: already exists")
            if parent:
                prec = meta["snapshots"].get(parent)
                if prec is None:
                    raise NotFound(f"parent snapshot {parent!r} does not exist: not found")
                if prec["kind"] != Kind.COMMITTED.value:
                    raise FailedPrecondition(f"parent {parent!r} is not a committed snapshot: failed precondition")
            sid = int(meta["next_id"])
            meta["next_id"] = sid + 1
            d = self.snapshots_dir / str(sid)
            if d.exists():
                _rmtree(d)  # left by a crash between mkdir and save
            (d / "fs").mkdir(parents=True)
            os.chmod(d / "fs", 0o755)
            if kind == Kind.ACTIVE:
                (d / "work").mkdir()
            now = _now()
            rec = {"id": sid, "kind": kind.value, "parent": parent, "created_at": now, "updated_at": now,
                   "labels": dict(labels or {})}
            meta["snapshots"][key] = rec
            try:
                self._save(meta)
            except BaseException:
                _rmtree(d)
                raise
            return self._mounts(meta, rec)

    def _mounts(self, meta: dict[str, Any], rec: dict[str, Any]) -> builtins.list[Mount]:
        lowers = [str(self._fs(meta["snapshots"][p]["id"])) for p in self._ancestors(meta, rec)]
        if rec["kind"] == Kind.VIEW.value:
            if not lowers:
                return [Mount("bind", str(self._fs(rec["id"])), ("rbind", "ro"))]
            if len(lowers) == 1:
                return [Mount("bind", lowers[0], ("rbind", "ro"))]
            return [Mount("overlay", "overlay", ("lowerdir=" + ":".join(lowers),))]
        if not lowers:
            return [Mount("bind", str(self._fs(rec["id"])), ("rbind", "rw"))]
        d = self.snapshots_dir / str(rec["id"])
        return [Mount("overlay", "overlay", (f"workdir={d / 'work'}", f"upperdir={d / 'fs'}",
                                             "lowerdir=" + ":".join(lowers)))]

    def _ancestors(self, meta: dict[str, Any], rec: dict[str, Any]) -> builtins.list[str]:
        out: builtins.list[str] = []
        parent = rec.get("parent", "")
        while parent:
            out.append(parent)
            parent = meta["snapshots"][parent].get("parent", "")
        return out

    def _fs(self, sid: int) -> Path:
        return self.snapshots_dir / str(sid) / "fs"

    @staticmethod
    def _record(meta: dict[str, Any], key: str) -> dict[str, Any]:
        rec = meta["snapshots"].get(key)
        if rec is None:
            raise NotFound(f"snapshot {key!r} does not exist: not found")
        return rec  # type: ignore[no-any-return]

    def _info(self, meta: dict[str, Any], key: str) -> SnapshotInfo:
        rec = self._record(meta, key)
        return SnapshotInfo(key, rec.get("parent", ""), Kind(rec["kind"]), _time(rec["created_at"]),
                            _time(rec["updated_at"]), dict(rec.get("labels", {})))

    def _locked(self) -> AbstractContextManager[None]:
        return locked(self._lock_path)

    def _load(self) -> dict[str, Any]:
        try:
            meta: dict[str, Any] = atomicfile.read_json(self._meta_path)
        except FileNotFoundError:
            meta = {"next_id": 1, "snapshots": {}}
        return meta

    def _save(self, meta: dict[str, Any]) -> None:
        atomicfile.write_json(self._meta_path, meta)


def disk_usage(path: Path) -> Usage:
    """Bytes of non-directory entries (hardlinks once) and inode count under path, never following links."""
    size = 0
    inodes: set[tuple[int, int]] = set()
    stack = [str(path)]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except FileNotFoundError:
            continue
        for e in entries:
            st = e.stat(follow_symlinks=False)
            key = (st.st_dev, st.st_ino)
            if key in inodes:
                continue
            inodes.add(key)
            if stat.S_ISDIR(st.st_mode):
                stack.append(e.path)
            else:
                size += st.st_size
    return Usage(size, len(inodes))


def _check_key(key: str) -> None:
    if not key or not isinstance(key, str):
        raise InvalidArgument("snapshot key must not be empty")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _rmtree(path: Path) -> None:
    """Remove a snapshot directory (whiteout devices and all)."""
    if path.exists():
        shutil.rmtree(path)
