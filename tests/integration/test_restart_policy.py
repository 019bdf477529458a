"""Restart policies: no, on-failure[:max], always, unless-stopped, with Docker's growing delay."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.root


def state(d: Daemon, name: str) -> dict[str, object]:
    return json.loads(d.docker("inspect", name, check=True).stdout)[0]  # type: ignore[no-any-return]


def wait_until(predicate, timeout: float = 15) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_on_failure_restarts_up_to_the_maximum(daemon: Daemon, busybox: str) -> None:
    daemon.docker("run", "-d", "--name", "flaky", "--restart", "on-failure:2", busybox, "sh", "-c",
                  "echo run; exit 3", check=True)
    wait_until(lambda: state(daemon, "flaky")["RestartCount"] == 2 and
               state(daemon, "flaky")["State"]["Status"] == "exited")  # type: ignore[index]
    time.sleep(1.0)  # no third run
    info = state(daemon, "flaky")
    assert info["RestartCount"] == 2 and info["State"]["ExitCode"] == 3  # type: ignore[index]
    assert daemon.docker("logs", "flaky").stdout == "run\nrun\nrun\n"
    daemon.docker("rm", "flaky", check=True)


def test_on_failure_does_not_restart_a_success_and_no_never_restarts(daemon: Daemon, busybox: str) -> None:
    daemon.docker("run", "-d", "--name", "fine", "--restart", "on-failure", busybox, "true", check=True)
    daemon.docker("run", "-d", "--name", "never", busybox, "sh", "-c", "exit 1", check=True)
    time.sleep(1.0)
    assert state(daemon, "fine")["RestartCount"] == 0 and state(daemon, "never")["RestartCount"] == 0
    daemon.docker("rm", "fine", "never", check=True)


def test_always_restarts_after_kill_but_not_after_stop(daemon: Daemon, busybox: str) -> None:
    daemon.docker("run", "-d", "--name", "phoenix", "--restart", "always", busybox, "sleep", "30", check=True)
    first_pid = state(daemon, "phoenix")["State"]["Pid"]  # type: ignore[index]
    daemon.docker("kill", "phoenix", check=True)
    wait_until(lambda: state(daemon, "phoenix")["State"]["Running"] and  # type: ignore[index]
               state(daemon, "phoenix")["State"]["Pid"] != first_pid)  # type: ignore[index]
    assert state(daemon, "phoenix")["RestartCount"] == 1
    daemon.docker("stop", "-t", "1", "phoenix", check=True)
    time.sleep(0.8)
    assert state(daemon, "phoenix")["State"]["Status"] == "exited"  # type: ignore[index]
    daemon.docker("rm", "phoenix", check=True)


def test_always_survives_a_daemon_restart(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    d.docker("run", "-d", "--name", "keeper", "--restart", "always", "busybox", "sh", "-c",
             "echo started; sleep 1; exit 5", check=True)
    d.docker("run", "-d", "--name", "quitter", "--restart", "unless-stopped", "busybox", "sleep", "30", check=True)
    d.docker("stop", "-t", "1", "quitter", check=True)
    d.kill9()
    time.sleep(1.5)  # keeper exits while the daemon is away
    d.start()
    try:
        wait_until(lambda: state(d, "keeper")["RestartCount"] >= 1)  # the policy applied to the exit seen at start-up
    except AssertionError:
        print(d.log_path.read_text()[-4000:])
        raise
    wait_until(lambda: d.docker("logs", "keeper").stdout.count("started") >= 2)  # it really ran again
    assert state(d, "quitter")["State"]["Status"] == "exited"  # type: ignore[index]  # stopped by hand: stays
    d.docker("rm", "-f", "keeper", "quitter", check=True)


def test_manual_restart_does_not_race_the_policy(daemon: Daemon, busybox: str) -> None:
    daemon.docker("run", "-d", "--name", "steady", "--restart", "always", busybox, "sleep", "30", check=True)
    try:
        daemon.docker("restart", "-t", "1", "steady", check=True)
        info = state(daemon, "steady")
        assert info["State"]["Status"] == "running" and info["RestartCount"] == 0  # type: ignore[index]
        assert daemon.docker("exec", "steady", "true").returncode == 0  # usable at once, no "restarting" window
    finally:
        daemon.docker("rm", "-f", "steady")
