"""The label filters (label=key, label=key=value, label!=...) mean the same for images, volumes and containers;
ps applies its other filters (health, volume, is-task) as dockerd does."""

from __future__ import annotations

import time

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


def test_ps_health_volume_and_is_task_filters(daemon: Daemon, busybox: str) -> None:
    """ps filters beyond labels, as dockerd applies them: health (a container without a check is "none"), volume
    (by volume name, bind source or destination), is-task (no container is a swarm task); bad values are 400."""
    try:
        daemon.docker("run", "-d", "--name", "f-healthy", "--health-cmd", "true", "--health-interval", "1s",
                      "-v", "fvol:/data", busybox, "sleep", "60", check=True)
        daemon.docker("run", "-d", "--name", "f-plain", "-v", "/tmp:/hosttmp:ro", busybox, "sleep", "60", check=True)

        def names(*filters: str) -> list[str]:
            args = [arg for f in filters for arg in ("--filter", f)]
            out = daemon.docker("ps", "-a", "--format", "{{.Names}}", *args, check=True).stdout.split()
            return sorted(n for n in out if n.startswith("f-"))

        deadline = time.monotonic() + 15
        while names("health=healthy") != ["f-healthy"] and time.monotonic() < deadline:
            time.sleep(0.3)
        assert names("health=healthy") == ["f-healthy"]
        assert names("health=none") == ["f-plain"]
        assert names("health=unhealthy") == []
        assert names("volume=fvol") == ["f-healthy"] and names("volume=/data") == ["f-healthy"]
        assert names("volume=/tmp") == ["f-plain"] and names("volume=/hosttmp") == ["f-plain"]
        assert names("volume=nosuch") == []
        assert names("is-task=false") == ["f-healthy", "f-plain"] and names("is-task=true") == []
        status, body = daemon.api("GET", '/containers/json?filters={"health":["great"]}'.replace('"', "%22"))
        assert status == 400 and b"Unrecognised filter value for health: great" in body
    finally:
        daemon.docker("rm", "-f", "f-healthy", "f-plain")
        daemon.docker("volume", "rm", "fvol")
