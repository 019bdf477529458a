"""The real `ctr` against a live daemon: namespaces, containers, tasks, images and exit events from shims."""

from __future__ import annotations

import queue
import subprocess
import threading
import time

import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.root


def ctr(d: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ctr", "--address", str(d.grpc_socket), *args], capture_output=True, text=True,
                          timeout=30)


def test_ctr_lists_namespace_containers_tasks_images(daemon: Daemon, busybox: str) -> None:
    cid = daemon.docker("run", "-d", "--name", "forctr", busybox, "sleep", "60", check=True).stdout.strip()
    try:
        ns = ctr(daemon, "namespaces", "ls")
        assert ns.returncode == 0, ns.stderr
        assert "moby" in ns.stdout.split()
        containers = ctr(daemon, "-n", "moby", "containers", "ls")
        assert cid in containers.stdout and "io.containerd.runc.v2" in containers.stdout
        tasks = ctr(daemon, "-n", "moby", "tasks", "ls")
        pid = daemon.docker("inspect", "-f", "{{.State.Pid}}", "forctr").stdout.strip()
        line = next(ln for ln in tasks.stdout.splitlines() if ln.startswith(cid))
        assert line.split()[1:] == [pid, "RUNNING"]
        images = ctr(daemon, "-n", "moby", "images", "ls")
        assert images.returncode == 0, images.stderr
        assert "docker.io/library/busybox:latest" in images.stdout
        version = ctr(daemon, "version")
        assert version.returncode == 0 and "Server:" in version.stdout
    finally:
        daemon.docker("rm", "-f", "forctr")


def test_ctr_events_show_exits_reported_by_shims(daemon: Daemon, busybox: str) -> None:
    events = subprocess.Popen(["ctr", "--address", str(daemon.grpc_socket), "events"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(ln) for ln in events.stdout], daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        time.sleep(0.5)
        cid = daemon.docker("run", "-d", busybox, "sh", "-c", "exit 9", check=True).stdout.strip()
        assert daemon.docker("wait", cid, check=True).stdout.strip() == "9"
        deadline = time.monotonic() + 10
        exit_line = ""
        while time.monotonic() < deadline and not exit_line:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if "/tasks/exit" in line and cid in line:
                exit_line = line
        assert '"exit_status":9' in exit_line.replace(" ", ""), exit_line
        daemon.docker("rm", cid, check=True)
    finally:
        events.kill()
        events.wait()
        reader.join(5)


def test_ctr_pauses_and_resumes_a_task(daemon: Daemon, busybox: str) -> None:
    cid = daemon.docker("run", "-d", busybox, "sleep", "60", check=True).stdout.strip()
    try:
        assert ctr(daemon, "-n", "moby", "tasks", "pause", cid).returncode == 0
        line = next(ln for ln in ctr(daemon, "-n", "moby", "tasks", "ls").stdout.splitlines() if ln.startswith(cid))
        assert line.split()[-1] == "PAUSED"
        assert ctr(daemon, "-n", "moby", "tasks", "resume", cid).returncode == 0
        line = next(ln for ln in ctr(daemon, "-n", "moby", "tasks", "ls").stdout.splitlines() if ln.startswith(cid))
        assert line.split()[-1] == "RUNNING"
    finally:
        daemon.docker("rm", "-f", cid)
