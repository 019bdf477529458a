"""A reusable snapshotter test suite (containerd's testsuite idea) exercised through real mounts.

Subclass ``SnapshotterSuite`` and provide a ``make_snapshotter`` fixture returning a factory
``(root: Path) -> Snapshotter``; every test mounts with aiodock.core.mount, checks files, unmounts, removes.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aiodock.core.mount import mount_all, mounts_under, unmount
from aiodock.core.snapshots.base import Kind, Snapshotter
from aiodock.errors import AlreadyExists, FailedPrecondition, NotFound

SnapshotterFactory = Callable[[Path], Snapshotter]


class Workspace:
    """A temp dir holding the snapshotter root and mount points; cleaned (unmounted) in teardown."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="adk-", dir="/tmp"))
        self.root = self.dir / "root"
        self._n = 0

    def mounted(self, snap: Snapshotter, key: str) -> Path:
        self._n += 1
        target = self.dir / f"m{self._n}"
        mount_all(snap.mounts(key), target)
        return target

    def close(self) -> None:
        for point in mounts_under(self.dir):
            unmount(Path(point))
        shutil.rmtree(self.dir)


class SnapshotterSuite:
    @pytest.fixture
    def ws(self) -> Iterator[Workspace]:
        ws = Workspace()
        yield ws
        ws.close()
        assert not os.path.exists(ws.dir)

    @pytest.fixture
    def snap(self, ws: Workspace, make_snapshotter: SnapshotterFactory) -> Snapshotter:
        return make_snapshotter(ws.root)

    def commit_files(self, ws: Workspace, snap: Snapshotter, name: str, parent: str,
                     files: dict[str, str], delete: tuple[str, ...] = ()) -> None:
        """Prepare on parent, write/delete files through the real mount, unmount, commit as name."""
        key = f"{name}-active"
        snap.prepare(key, parent)
        target = ws.mounted(snap, key)
        for rel, text in files.items():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            (target / rel).write_text(text)
        for rel in delete:
            p = target / rel
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        unmount(target)
        snap.commit(name, key)

    def test_prepare_commit_view(self, ws: Workspace, snap: Snapshotter) -> None:
        self.commit_files(ws, snap, "base", "", {"etc/hostname": "base\n"})
        snap.view("v", "base")
        target = ws.mounted(snap, "v")
        assert (target / "etc/hostname").read_text() == "base\n"
        with pytest.raises(OSError) as err:
            (target / "new").write_text("x")
        assert err.value.errno == errno.EROFS
        unmount(target)
        snap.remove("v")
        snap.remove("base")
        assert snap.list() == []

    def test_layers_stack_with_whiteouts(self, ws: Workspace, snap: Snapshotter) -> None:
        self.commit_files(ws, snap, "l1", "", {"a": "1", "b": "1", "dir/x": "1"})
        self.commit_files(ws, snap, "l2", "l1", {"b": "2", "c": "2"}, delete=("a", "dir"))
        self.commit_files(ws, snap, "l3", "l2", {"d": "3", "dir/y": "3"})
        snap.view("top", "l3")
        top = ws.mounted(snap, "top")
        assert sorted(os.listdir(top)) == ["b", "c", "d", "dir"]
        assert (top / "b").read_text() == "2" and os.listdir(top / "dir") == ["y"]
        unmount(top)
        snap.view("bottom", "l1")
        bottom = ws.mounted(snap, "bottom")
        assert sorted(os.listdir(bottom)) == ["a", "b", "dir"] and (bottom / "b").read_text() == "1"
        unmount(bottom)
        snap.prepare("rw", "l3")
        rw = ws.mounted(snap, "rw")
        (rw / "d").write_text("changed")
        assert (rw / "d").read_text() == "changed"
        unmount(rw)
        snap.view("again", "l3")
        again = ws.mounted(snap, "again")
        assert (again / "d").read_text() == "3"  # the committed layer is untouched
        unmount(again)
        for key in ("top", "bottom", "rw", "again", "l3", "l2", "l1"):
            snap.remove(key)

    def test_stat_list_labels_and_kinds(self, ws: Workspace, snap: Snapshotter) -> None:
        snap.prepare("a", "", labels={"x": "1"})
        info = snap.stat("a")
        assert (info.name, info.parent, info.kind, info.labels) == ("a", "", Kind.ACTIVE, {"x": "1"})
        snap.commit("c", "a")
        assert snap.stat("c").kind == Kind.COMMITTED
        with pytest.raises(NotFound):
            snap.stat("a")
        snap.view("v", "c")
        snap.prepare("p", "c")
        assert {(i.name, i.parent, i.kind) for i in snap.list()} == {
            ("c", "", Kind.COMMITTED), ("v", "c", Kind.VIEW), ("p", "c", Kind.ACTIVE)}
        updated = snap.update("p", {"y": "2"})
        assert updated.labels == {"y": "2"} and updated.updated_at >= updated.created_at
        for key in ("v", "p", "c"):
            snap.remove(key)

    def test_errors(self, ws: Workspace, snap: Snapshotter) -> None:
        snap.prepare("a", "")
        with pytest.raises(AlreadyExists):
            snap.prepare("a", "")
        with pytest.raises(NotFound):
            snap.prepare("b", "missing")
        with pytest.raises(FailedPrecondition):
            snap.prepare("b", "a")  # parent not committed
        snap.commit("c", "a")
        with pytest.raises(FailedPrecondition):
            snap.mounts("c")
        snap.view("v", "c")
        with pytest.raises(FailedPrecondition):
            snap.commit("v2", "v")
        with pytest.raises(FailedPrecondition):
            snap.remove("c")  # has a child
        snap.remove("v")
        snap.remove("c")
        with pytest.raises(NotFound):
            snap.remove("c")
        with pytest.raises(NotFound):
            snap.mounts("nope")

    def test_usage_counts_written_bytes(self, ws: Workspace, snap: Snapshotter) -> None:
        snap.prepare("a", "")
        target = ws.mounted(snap, "a")
        (target / "f").write_bytes(b"x" * 10000)
        (target / "d").mkdir()
        unmount(target)
        usage = snap.usage("a")
        assert usage.size >= 10000 and usage.inodes >= 2
        snap.commit("c", "a")
        assert snap.usage("c").size == usage.size
        snap.remove("c")

    def test_state_survives_a_new_instance(self, ws: Workspace, snap: Snapshotter,
                                           make_snapshotter: SnapshotterFactory) -> None:
        self.commit_files(ws, snap, "base", "", {"f": "kept"})
        other = make_snapshotter(ws.root)
        other.view("v", "base")
        target = ws.mounted(other, "v")
        assert (target / "f").read_text() == "kept"
        unmount(target)
        assert {i.name for i in snap.list()} == {"base", "v"}
        other.remove("v")
        other.remove("base")
