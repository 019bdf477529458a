"""GET /system/df figures match what is on disk; `docker system df` and `docker system prune` work."""

from __future__ import annotations

import json
import os

import pytest

from aiodock.core.snapshots.base import Kind
from aiodock.core.snapshots.overlay import OverlaySnapshotter
from tests.conftest import Daemon

pytestmark = pytest.mark.root


def tree_size(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def test_df_matches_disk_and_system_prune_reclaims(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    d.docker("volume", "create", "bulk", check=True)
    d.docker("run", "--name", "writer", "-v", "bulk:/data", "busybox", "sh", "-c",
             "dd if=/dev/zero of=/data/f bs=1000 count=100 2>/dev/null; dd if=/dev/zero of=/big bs=1000 count=50 "
             "2>/dev/null", check=True)
    status, body = d.api("GET", "/system/df")
    assert status == 200
    df = json.loads(body)
    volume = next(v for v in df["Volumes"] if v["Name"] == "bulk")
    assert volume["UsageData"] == {"Size": 100_000, "RefCount": 1}
    writer = next(c for c in df["Containers"] if c["Names"] == ["/writer"])
    assert writer["SizeRw"] >= 50_000
    snapshots = OverlaySnapshotter(d.data_root / "snapshots" / "overlay")
    layers = [s.name for s in snapshots.list() if s.kind == Kind.COMMITTED]
    assert df["LayersSize"] == sum(snapshots.usage(name).size for name in layers) > 0
    busybox = next(i for i in df["Images"] if "busybox:latest" in i["RepoTags"])
    assert busybox["Containers"] == 1 and df["BuildCache"] == []
    assert all(tree_size(str(snapshots.fs_dir(name))) <= df["LayersSize"] for name in layers)

    table = d.docker("system", "df", check=True).stdout
    for row in ("Images", "Containers", "Local Volumes", "Build Cache"):
        assert row in table

    pruned = d.docker("system", "prune", "-f", "--volumes", check=True).stdout
    assert "Deleted Containers:" in pruned and "Total reclaimed space" in pruned
    assert d.docker("ps", "-aq").stdout.strip() == ""
    d.docker("volume", "rm", "bulk", check=True)  # a named volume is kept by prune (only anonymous ones go)
