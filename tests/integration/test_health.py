"""Health checks: starting, healthy, then unhealthy when the check starts failing; health_status events."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.root


def health(d: Daemon, name: str) -> dict[str, object]:
    return json.loads(d.docker("inspect", name, check=True).stdout)[0]["State"].get("Health") or {}  # type: ignore[no-any-return]


def wait_for_status(d: Daemon, name: str, status: str, timeout: float = 20) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        current = health(d, name)
        if current.get("Status") == status:
            return current
        assert time.monotonic() < deadline, f"health stayed {current}"
        time.sleep(0.2)


def test_starting_healthy_then_unhealthy(daemon: Daemon, busybox: str) -> None:
    since = time.time()
    daemon.docker("run", "-d", "--name", "checked", "--health-cmd", "test -f /tmp/ok && echo fine",
                  "--health-interval", "1s", "--health-timeout", "2s", "--health-retries", "2", busybox, "sh", "-c",
                  "touch /tmp/ok; sleep 4; rm /tmp/ok; sleep 60", check=True)
    try:
        assert health(daemon, "checked")["Status"] == "starting"
        healthy = wait_for_status(daemon, "checked", "healthy")
        log = healthy["Log"]
        assert isinstance(log, list) and log[-1]["ExitCode"] == 0 and log[-1]["Output"] == "fine\n"
        assert "(healthy)" in daemon.docker("ps", "--filter", "name=checked").stdout
        unhealthy = wait_for_status(daemon, "checked", "unhealthy")
        assert unhealthy["FailingStreak"] >= 2 and len(unhealthy["Log"]) <= 5  # type: ignore[arg-type]
        status, body = daemon.api("GET", f"/events?since={since:.9f}&until={time.time():.9f}"
                                         "&filters=%7B%22event%22%3A%5B%22health_status%22%5D%7D")
        actions = [json.loads(line)["Action"] for line in body.splitlines() if line.strip()]
        assert actions == ["health_status: healthy", "health_status: unhealthy"], actions
    finally:
        daemon.docker("rm", "-f", "checked")


def test_no_healthcheck_means_no_health_state(daemon: Daemon, busybox: str) -> None:
    daemon.docker("run", "-d", "--name", "unchecked", "--no-healthcheck", busybox, "sleep", "30", check=True)
    try:
        assert health(daemon, "unchecked") == {}
    finally:
        daemon.docker("rm", "-f", "unchecked")
