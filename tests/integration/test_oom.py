"""A container killed by its memory limit reports OOMKilled true, exit code 137 and an oom event."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.root


def test_memory_hog_is_oom_killed(daemon: Daemon, busybox: str) -> None:
    since = time.time()
    proc = daemon.docker("run", "--name", "hog", "--memory", "32m", "--memory-swap", "32m", busybox, "sh", "-c",
                         "a=aaaaaaaaaaaaaaaa; while true; do a=$a$a; done", timeout=120)
    try:
        assert proc.returncode == 137, proc.stderr
        state = json.loads(daemon.docker("inspect", "hog", check=True).stdout)[0]["State"]
        assert state["OOMKilled"] is True and state["ExitCode"] == 137
        status, body = daemon.api("GET", f"/events?since={since:.9f}&until={time.time():.9f}"
                                         "&filters=%7B%22container%22%3A%5B%22hog%22%5D%7D")
        actions = [json.loads(line)["Action"] for line in body.splitlines() if line.strip()]
        assert "oom" in actions and actions.index("oom") < actions.index("die"), actions
        daemon.docker("run", "--name", "fits", "--memory", "32m", busybox, "true", check=True)
        assert json.loads(daemon.docker("inspect", "fits").stdout)[0]["State"]["OOMKilled"] is False
    finally:
        daemon.docker("rm", "-f", "hog", "fits")


def test_oom_kill_while_the_daemon_is_down_is_reported_after_restart(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    cid = d.docker("run", "-d", "--name", "hog", "--memory", "32m", "--memory-swap", "32m", "busybox:latest", "sh",
                   "-c", "sleep 2; a=aaaaaaaaaaaaaaaa; while true; do a=$a$a; done", check=True).stdout.strip()
    d.kill9()  # the hog is still sleeping: it is OOM-killed while no daemon runs
    exit_file = d.exec_root / "moby" / cid / "exit.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not exit_file.exists():
        time.sleep(0.1)
    record = json.loads(exit_file.read_text())  # the shim's durable exit record
    assert record["oom_killed"] is True and record["exit_status"] == 137, record
    d.start()
    state = json.loads(d.docker("inspect", "hog", check=True).stdout)[0]["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 137
    assert state["OOMKilled"] is True
    d.docker("rm", "hog", check=True)
