"""The snapshotter suite against the overlay snapshotter, with real overlay and bind mounts."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from aiodock.core.snapshots.base import Snapshotter
from aiodock.core.snapshots.overlay import OverlaySnapshotter
from tests.integration.snapshots_suite import SnapshotterFactory, SnapshotterSuite

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for mounts")]


class TestOverlaySnapshotter(SnapshotterSuite):
    @pytest.fixture
    def make_snapshotter(self) -> SnapshotterFactory:
        def make(root: Path) -> Snapshotter:
            return OverlaySnapshotter(root / "snapshots" / "overlay")
        return make

    def test_mount_records_are_containerd_shaped(self) -> None:
        d = Path(tempfile.mkdtemp(prefix="adk-", dir="/tmp"))
        try:
            snap = OverlaySnapshotter(d)
            (m,) = snap.prepare("a", "")
            assert (m.type, m.options) == ("bind", ("rbind", "rw")) and m.source.endswith("/fs")
            snap.commit("b", "a")
            (v,) = snap.view("v", "b")
            assert (v.type, v.options) == ("bind", ("rbind", "ro"))
            (o,) = snap.prepare("c", "b")
            assert o.type == "overlay" and o.source == "overlay"
            assert [x.split("=")[0] for x in o.options] == ["workdir", "upperdir", "lowerdir"]
        finally:
            shutil.rmtree(d)
