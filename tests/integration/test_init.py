"""--init: tini as PID 1 reaps zombies and forwards signals, so `docker stop` is quick and the code is the child's."""

from __future__ import annotations

import time

import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.root


def test_init_is_pid_1_and_forwards_signals(daemon: Daemon, busybox: str) -> None:
    out = daemon.docker("run", "--rm", "--init", busybox, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '",
                        check=True).stdout
    assert out.startswith("/sbin/docker-init -- sh -c")
    code = daemon.docker("run", "--rm", "--init", busybox, "sh", "-c", "exit 7").returncode
    assert code == 7
    daemon.docker("run", "-d", "--name", "initstop", "--init", busybox, "sleep", "60", check=True)
    try:
        start = time.monotonic()
        daemon.docker("stop", "initstop", check=True)  # sleep alone as PID 1 would ignore SIGTERM for 10 s
        assert time.monotonic() - start < 5
        assert daemon.docker("inspect", "-f", "{{.State.ExitCode}}", "initstop").stdout.strip() == "143"
    finally:
        daemon.docker("rm", "-f", "initstop")


def test_init_reaps_orphaned_zombies(daemon: Daemon, busybox: str) -> None:
    script = "sh -c 'sleep 0.2 & exit 0'; sleep 1; ps -o stat,comm | grep -c '^Z' || true"
    with_init = daemon.docker("run", "--rm", "--init", busybox, "sh", "-c", script, check=True).stdout.strip()
    assert with_init == "0"
