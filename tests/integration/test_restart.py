"""Restart safety: kill -9 of the daemon stops no container; exits during the outage are recorded."""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.root


def _log_lines(d: Daemon, name: str) -> int:
    return len(d.docker("logs", name).stdout.splitlines())


def test_kill9_keeps_containers_running_and_records_exits(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    names = [f"c{i}" for i in range(5)]
    for name in names:
        d.docker("run", "-d", "--name", name, "busybox", "sh", "-c",
                 "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done", check=True)
    d.docker("run", "-d", "--name", "short", "busybox", "sh", "-c", "sleep 1; exit 42", check=True)
    pids = {n: json.loads(d.docker("inspect", n).stdout)[0]["State"]["Pid"] for n in names}
    time.sleep(0.3)
    before = {n: _log_lines(d, n) for n in names}

    d.kill9()
    time.sleep(2.0)  # "short" exits while nobody listens; the others keep logging
    for pid in pids.values():
        os.kill(pid, 0)  # still alive
    d.start()

    for name in names:
        state = json.loads(d.docker("inspect", name).stdout)[0]["State"]
        assert state["Running"] is True and state["Pid"] == pids[name]
        assert _log_lines(d, name) > before[name] + 10  # the shim kept writing the log while the daemon was away
    short = json.loads(d.docker("inspect", "short").stdout)[0]["State"]
    assert short["Status"] == "exited" and short["ExitCode"] == 42

    # the reattached containers are fully controllable
    d.docker("stop", "-t", "1", "c0", check=True)
    assert d.docker("inspect", "-f", "{{.State.ExitCode}}", "c0").stdout.strip() in ("137", "143")
    d.docker("kill", "c1", check=True)
    assert d.docker("wait", "c1").stdout.strip() == "137"


def test_graceful_daemon_stop_leaves_containers_running(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    d.docker("run", "-d", "--name", "keeper", "busybox", "sleep", "60", check=True)
    pid = json.loads(d.docker("inspect", "keeper").stdout)[0]["State"]["Pid"]
    d.stop()
    os.kill(pid, 0)
    d.start()
    assert d.docker("inspect", "-f", "{{.State.Running}}", "keeper").stdout.strip() == "true"
    d.docker("rm", "-f", "keeper", check=True)


def test_dead_shim_gives_synthetic_exit(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    d.docker("run", "-d", "--name", "orphan", "busybox", "sleep", "60", check=True)
    bundle = d.exec_root / "moby" / json.loads(d.docker("inspect", "orphan").stdout)[0]["Id"]
    boot = json.loads((bundle / "bootstrap.json").read_text())
    pid = json.loads(d.docker("inspect", "orphan").stdout)[0]["State"]["Pid"]
    d.kill9()
    os.kill(boot["shim_pid"], 9)
    os.kill(pid, 9)
    time.sleep(0.3)
    d.start()
    state = json.loads(d.docker("inspect", "orphan").stdout)[0]["State"]
    assert state["Running"] is False
    assert state["ExitCode"] in (137, 255)


def test_start_removes_snapshots_that_belong_to_nobody(fresh_daemon: Daemon) -> None:
    from aiodock.core.snapshots.base import Kind
    from aiodock.core.snapshots.overlay import OverlaySnapshotter

    d = fresh_daemon
    kept = d.docker("create", "--name", "kept", "busybox", "true", check=True).stdout.strip()
    d.stop()
    snapshots = OverlaySnapshotter(d.data_root / "snapshots" / "overlay")
    snapshots.prepare("f" * 64, None)  # a container that no longer exists
    snapshots.prepare("extract-0123456789ab-sha256:dead", None)  # a load that died half-way
    d.start()
    active = {s.name for s in snapshots.list() if s.kind != Kind.COMMITTED}
    assert active == {kept}
    assert d.docker("start", "-a", "kept").returncode == 0
