"""docker pause / unpause / top with the real docker CLI against a real aiodock daemon."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.root

TICKER = "while true; do echo tick; sleep 0.05; done"


def _ticks(daemon: Daemon, name: str) -> int:
    return daemon.docker("logs", name, check=True).stdout.count("tick")


def _wait_ticks(daemon: Daemon, name: str, at_least: int) -> int:
    deadline = time.monotonic() + 10
    while (n := _ticks(daemon, name)) < at_least:
        assert time.monotonic() < deadline, f"only {n} ticks"
        time.sleep(0.05)
    return n


def test_pause_freezes_and_unpause_resumes(daemon: Daemon) -> None:
    cid = daemon.docker("run", "-d", "--name", "counter", "busybox:latest", "sh", "-c", TICKER,
                        check=True).stdout.strip()
    try:
        _wait_ticks(daemon, "counter", 2)
        daemon.docker("pause", "counter", check=True)
        state = json.loads(daemon.docker("inspect", "counter", check=True).stdout)[0]["State"]
        assert (state["Status"], state["Paused"], state["Running"]) == ("paused", True, True)
        assert "(Paused)" in daemon.docker("ps", "--filter", "name=counter", check=True).stdout
        frozen = _ticks(daemon, "counter")
        time.sleep(0.5)
        assert _ticks(daemon, "counter") == frozen  # nothing counts while paused

        proc = daemon.docker("pause", "counter")
        assert proc.returncode != 0 and f"Container {cid} is already paused" in proc.stderr
        proc = daemon.docker("exec", "counter", "true")
        assert proc.returncode != 0 and "is paused, unpause the container before exec" in proc.stderr
        proc = daemon.docker("start", "counter")
        assert proc.returncode != 0 and "cannot start a paused container, try unpause instead" in proc.stderr

        daemon.docker("unpause", "counter", check=True)
        _wait_ticks(daemon, "counter", frozen + 3)  # counting again
        state = json.loads(daemon.docker("inspect", "counter", check=True).stdout)[0]["State"]
        assert (state["Status"], state["Paused"]) == ("running", False)
        proc = daemon.docker("unpause", "counter")
        assert proc.returncode != 0 and f"Container {cid} is not paused" in proc.stderr
        status, data = daemon.api("POST", f"/containers/{cid}/unpause")
        assert status == 409 and json.loads(data)["message"] == f"Container {cid} is not paused"
    finally:
        daemon.docker("rm", "-f", cid)


def test_stop_and_kill_of_a_paused_container(daemon: Daemon) -> None:
    stopped = daemon.docker("run", "-d", "busybox:latest", "sh", "-c",
                            "trap 'exit 7' TERM; while true; do sleep 0.1; done", check=True).stdout.strip()
    killed = daemon.docker("run", "-d", "busybox:latest", "sleep", "600", check=True).stdout.strip()
    try:
        daemon.docker("pause", stopped, killed, check=True)
        began = time.monotonic()
        daemon.docker("stop", "-t", "5", stopped, check=True)
        assert time.monotonic() - began < 4  # the SIGTERM trap runs once thawed: no wait for the timeout
        daemon.docker("kill", killed, check=True)
        for cid, code in ((stopped, 7), (killed, 137)):
            assert daemon.docker("wait", cid, check=True).stdout.strip() == str(code)
            state = json.loads(daemon.docker("inspect", cid, check=True).stdout)[0]["State"]
            assert (state["Status"], state["Paused"], state["ExitCode"]) == ("exited", False, code)
        status, data = daemon.api("POST", f"/containers/{stopped}/pause")
        assert status == 409 and json.loads(data)["message"] == f"Container {stopped} is not running"
    finally:
        daemon.docker("rm", "-f", stopped, killed)


def test_rm_force_of_a_paused_container(daemon: Daemon) -> None:
    cid = daemon.docker("run", "-d", "busybox:latest", "sleep", "600", check=True).stdout.strip()
    daemon.docker("pause", cid, check=True)
    daemon.docker("rm", "-f", cid, check=True)
    assert daemon.docker("ps", "-aq", "--filter", f"id={cid}").stdout.strip() == ""


def test_top_lists_the_container_processes(daemon: Daemon) -> None:
    cid = daemon.docker("run", "-d", "busybox:latest", "sh", "-c", "sleep 600 & sleep 700",
                        check=True).stdout.strip()
    try:
        deadline = time.monotonic() + 10
        while True:
            proc = daemon.docker("top", cid, check=True)
            if "sleep 700" in proc.stdout and "sleep 600" in proc.stdout:
                break
            assert time.monotonic() < deadline, proc.stdout
            time.sleep(0.05)
        header = proc.stdout.splitlines()[0].split()
        assert header == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
        top = daemon.json("GET", f"/containers/{cid}/top")
        assert isinstance(top, dict)
        pids = {int(row[1]) for row in top["Processes"]}
        assert json.loads(daemon.docker("inspect", cid, check=True).stdout)[0]["State"]["Pid"] in pids
        assert sorted(row[-1] for row in top["Processes"]) == ["sleep 600", "sleep 700"]  # sh exec'd the last
        custom = daemon.docker("top", cid, "-o", "pid,comm", check=True).stdout.splitlines()
        assert custom[0].split() == ["PID", "COMMAND"] and len(custom) == 3
        daemon.docker("pause", cid, check=True)
        assert "sleep 700" in daemon.docker("top", cid, check=True).stdout  # a paused container has processes
        daemon.docker("kill", cid, check=True)
        daemon.docker("wait", cid, check=True)
        status, data = daemon.api("GET", f"/containers/{cid}/top")
        assert status == 409 and json.loads(data)["message"] == f"Container {cid} is not running"
    finally:
        daemon.docker("rm", "-f", cid)


def test_paused_container_survives_a_daemon_restart(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    cid = d.docker("run", "-d", "busybox:latest", "sh", "-c", TICKER, check=True).stdout.strip()
    _wait_ticks(d, cid, 2)
    d.docker("pause", cid, check=True)
    d.kill9()
    d.start()
    state = json.loads(d.docker("inspect", cid, check=True).stdout)[0]["State"]
    assert (state["Status"], state["Paused"]) == ("paused", True)
    frozen = _ticks(d, cid)
    d.docker("unpause", cid, check=True)
    _wait_ticks(d, cid, frozen + 3)
    assert d.docker("exec", cid, "echo", "alive", check=True).stdout == "alive\n"
    d.docker("rm", "-f", cid, check=True)
