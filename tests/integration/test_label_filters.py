"""The label filters (label=key, label=key=value, label!=...) mean the same for images, volumes and containers."""

from __future__ import annotations

import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.root


def test_label_filters_across_images_volumes_and_containers(daemon: Daemon, busybox: str) -> None:
    try:
        for name, tier in (("lbl-a:1", "front"), ("lbl-b:1", "back")):
            daemon.docker("create", "--name", f"mk-{tier}", busybox, "true", check=True)
            daemon.docker("commit", "-c", f"LABEL tier={tier}", f"mk-{tier}", name, check=True)
            daemon.docker("rm", f"mk-{tier}", check=True)
        listed = daemon.docker("images", "--filter", "label=tier=front", "--format", "{{.Repository}}").stdout.split()
        assert listed == ["lbl-a"]
        pruned = daemon.docker("image", "prune", "-a", "-f", "--filter", "label=tier",
                               "--filter", "label!=tier=front").stdout
        assert "lbl-b:1" in pruned and "lbl-a:1" not in pruned
        assert daemon.docker("image", "inspect", busybox).returncode == 0  # no tier label: not selected

        daemon.docker("volume", "create", "--label", "tier=front", "vol-a", check=True)
        daemon.docker("volume", "create", "--label", "tier=back", "vol-b", check=True)
        vols = daemon.docker("volume", "ls", "-q", "--filter", "label=tier").stdout.split()
        assert sorted(v for v in vols if v.startswith("vol-")) == ["vol-a", "vol-b"]
        assert daemon.docker("volume", "ls", "-q", "--filter", "label=tier=back").stdout.split() == ["vol-b"]

        daemon.docker("create", "--name", "c-front", "-l", "tier=front", busybox, "true", check=True)
        daemon.docker("create", "--name", "c-back", "-l", "tier=back", busybox, "true", check=True)
        names = daemon.docker("ps", "-a", "--filter", "label=tier", "--format", "{{.Names}}").stdout.split()
        assert sorted(names) == ["c-back", "c-front"]
        pruned = daemon.docker("container", "prune", "-f", "--filter", "label=tier",
                               "--filter", "label!=tier=front").stdout
        assert daemon.docker("ps", "-a", "--format", "{{.Names}}", "--filter", "label=tier").stdout.split() == \
            ["c-front"], pruned
    finally:
        daemon.docker("rm", "-f", "c-front", "c-back", "mk-front", "mk-back")
        daemon.docker("volume", "rm", "vol-a", "vol-b")
        daemon.docker("rmi", "lbl-a:1", "lbl-b:1")
