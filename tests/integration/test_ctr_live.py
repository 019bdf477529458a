"""The real `ctr` against a live daemon: namespaces, containers, tasks, images and exit events from shims."""

from __future__ import annotations

import fcntl
import json
import os
import queue
import select
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Iterator

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
    since = str(int(time.time()) - 1)

    def docker_status() -> str:
        deadline = time.monotonic() + 10
        status = ""
        while time.monotonic() < deadline:
            status = daemon.docker("inspect", "-f", "{{.State.Status}} {{.State.Paused}}", cid,
                                   check=True).stdout.strip()
            if status.startswith("paused") == (state == "PAUSED"):
                break
            time.sleep(0.1)
        return status

    try:
        assert ctr(daemon, "-n", "moby", "tasks", "pause", cid).returncode == 0
        line = next(ln for ln in ctr(daemon, "-n", "moby", "tasks", "ls").stdout.splitlines() if ln.startswith(cid))
        state = line.split()[-1]
        assert state == "PAUSED"
        assert docker_status() == "paused true"  # the engine follows a pause made beside it
        assert daemon.docker("exec", cid, "true").returncode != 0  # and treats it as Docker's own pause
        assert ctr(daemon, "-n", "moby", "tasks", "resume", cid).returncode == 0
        line = next(ln for ln in ctr(daemon, "-n", "moby", "tasks", "ls").stdout.splitlines() if ln.startswith(cid))
        state = line.split()[-1]
        assert state == "RUNNING"
        assert docker_status() == "running false"
        events = daemon.docker("events", "--since", since, "--until", str(int(time.time()) + 1), "--filter",
                               f"container={cid}", "--format", "{{.Action}}", check=True).stdout.split()
        assert events[-2:] == ["pause", "unpause"], events
    finally:
        daemon.docker("rm", "-f", cid)


# --- exec processes, metrics and their events through the Tasks API (ctr tasks exec / metrics) ---------------


def ctr_exec(d: Daemon, cid: str, exec_id: str, *cmd: str, input: str | None = None,
             flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    fifo_dir = d.root / "ctr-fifo"
    fifo_dir.mkdir(exist_ok=True)
    return subprocess.run(["ctr", "--address", str(d.grpc_socket), "-n", "moby", "tasks", "exec", "--fifo-dir",
                           str(fifo_dir), "--exec-id", exec_id, *flags, cid, *cmd],
                          input=input if input is not None else "", capture_output=True, text=True, timeout=60)


@pytest.fixture
def sleeper(daemon: Daemon, busybox: str) -> Iterator[str]:
    cid = daemon.docker("run", "-d", "--memory", "64m", busybox, "sleep", "300", check=True).stdout.strip()
    try:
        yield cid
    finally:
        daemon.docker("rm", "-f", cid)


def test_ctr_exec_prints_output_and_exits_with_the_process_code(daemon: Daemon, sleeper: str) -> None:
    proc = ctr_exec(daemon, sleeper, "e1", "sh", "-c", "echo hi; echo oops >&2; exit 3")
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "hi\n"
    assert "oops" in proc.stderr
    # the exec is deleted after it ran (DeleteProcess): its id can be used again
    again = ctr_exec(daemon, sleeper, "e1", "true")
    assert again.returncode == 0, again.stderr


def test_ctr_exec_pipes_stdin_and_closes_it(daemon: Daemon, sleeper: str) -> None:
    data = "".join(f"line {i}\n" for i in range(2000))  # more than a pipe buffer
    proc = ctr_exec(daemon, sleeper, "cat1", "cat", input=data)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == data
    counted = ctr_exec(daemon, sleeper, "wc1", "wc", "-l", input="a\nb\nc\n")
    assert counted.returncode == 0 and counted.stdout.strip() == "3", (counted.stdout, counted.stderr)
    # stdin that ends later: ctr sends CloseIO at its EOF, and cat gets EOF after the data
    fifo_dir = daemon.root / "ctr-fifo"
    slow = subprocess.Popen(["ctr", "--address", str(daemon.grpc_socket), "-n", "moby", "tasks", "exec", "--fifo-dir",
                             str(fifo_dir), "--exec-id", "cat2", sleeper, "sh", "-c", "cat; echo done"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert slow.stdin is not None
    slow.stdin.write(b"first\n")
    slow.stdin.flush()
    time.sleep(1.0)
    slow.stdin.write(b"second\n")
    slow.stdin.close()
    slow.stdin = None
    try:
        out, err = slow.communicate(timeout=30)
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait()
    assert slow.returncode == 0, err
    assert out == b"first\nsecond\ndone\n"


def test_ctr_exec_with_a_terminal_gets_the_console_size(daemon: Daemon, sleeper: str) -> None:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    fifo_dir = daemon.root / "ctr-fifo"
    fifo_dir.mkdir(exist_ok=True)
    proc = subprocess.Popen(["ctr", "--address", str(daemon.grpc_socket), "-n", "moby", "tasks", "exec",
                             "--fifo-dir", str(fifo_dir), "-t", "--exec-id", "tty1", sleeper,
                             "sh", "-c", "sleep 1; stty size; tty; exit 5"],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    output = b""
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: ctr exited and closed the slave
                    break
                if not chunk:
                    break
                output += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(30) == 5, output
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = output.decode(errors="replace")
    assert "33 101" in text, text
    assert "/dev/pts/" in text, text


def test_ctr_exec_detached_then_ps_kill_and_state(daemon: Daemon, sleeper: str) -> None:
    started = ctr_exec(daemon, sleeper, "bg1", "sleep", "123", flags=("-d",))
    assert started.returncode == 0, started.stderr
    ps = ctr(daemon, "-n", "moby", "tasks", "ps", sleeper)
    assert ps.returncode == 0, ps.stderr
    pids = [line.split()[0] for line in ps.stdout.splitlines()[1:]]
    assert len(pids) == 2, ps.stdout  # the init's sleep and the exec's
    twice = ctr_exec(daemon, sleeper, "bg1", "true", flags=("-d",))
    assert twice.returncode != 0 and "already exists" in twice.stderr, twice.stderr
    killed = ctr(daemon, "-n", "moby", "tasks", "kill", "--exec-id", "bg1", "-s", "SIGKILL", sleeper)
    assert killed.returncode == 0, killed.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ps = ctr(daemon, "-n", "moby", "tasks", "ps", sleeper)
        if len(ps.stdout.splitlines()[1:]) == 1:
            break
        time.sleep(0.1)
    assert len(ps.stdout.splitlines()[1:]) == 1, ps.stdout
    again = ctr(daemon, "-n", "moby", "tasks", "kill", "--exec-id", "bg1", "-s", "SIGKILL", sleeper)
    assert again.returncode != 0 and "process already finished" in again.stderr, again.stderr
    missing = ctr(daemon, "-n", "moby", "tasks", "kill", "--exec-id", "nope", sleeper)
    assert missing.returncode != 0 and "not found" in missing.stderr, missing.stderr


def test_ctr_tasks_metrics_prints_the_cgroup_table(daemon: Daemon, sleeper: str) -> None:
    proc = ctr(daemon, "-n", "moby", "tasks", "metrics", sleeper)
    assert proc.returncode == 0, proc.stderr
    lines = [line.split() for line in proc.stdout.splitlines() if line.strip()]
    assert lines[0] == ["ID", "TIMESTAMP"]
    assert lines[1][0] == sleeper
    assert lines[2] == ["METRIC", "VALUE"]
    values = {line[0]: line[1:] for line in lines[3:]}
    if "memory.usage_in_bytes" in values:  # cgroup v1
        assert values["memory.limit_in_bytes"] == [str(64 * 1024 * 1024)]
        assert int(values["memory.usage_in_bytes"][0]) > 0
        assert int(values["cpuacct.usage"][0]) > 0
    else:  # cgroup v2
        assert values["memory.usage_limit"] == [str(64 * 1024 * 1024)]
    assert values["pids.current"] == ["1"]
    as_json = ctr(daemon, "-n", "moby", "tasks", "metrics", "--format", "json", sleeper)
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc["pids"]["current"] == 1 and doc["memory"]
    gone = ctr(daemon, "-n", "moby", "tasks", "metrics", "no-such-container")
    assert gone.returncode != 0 and "not found" in gone.stderr


def test_ctr_events_show_exec_and_freezer_events(daemon: Daemon, sleeper: str) -> None:
    events = subprocess.Popen(["ctr", "--address", str(daemon.grpc_socket), "events"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(ln) for ln in events.stdout], daemon=True)  # type: ignore[union-attr]
    reader.start()
    seen: list[str] = []

    def wait_for(*needles: str) -> str:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for line in seen:
                if all(n in line.replace(" ", "") for n in needles):
                    return line
            try:
                seen.append(lines.get(timeout=0.5))
            except queue.Empty:
                continue
        raise AssertionError(f"no event with {needles}: {seen}")

    try:
        time.sleep(0.5)
        assert ctr_exec(daemon, sleeper, "ev1", "sh", "-c", "exit 4").returncode == 4
        wait_for("/tasks/exec-added", '"exec_id":"ev1"', sleeper)
        wait_for("/tasks/exec-started", '"exec_id":"ev1"', '"pid":')
        wait_for("/tasks/exit", '"id":"ev1"', '"exit_status":4')
        seen.clear()
        docker_exec = daemon.docker("exec", sleeper, "sh", "-c", "exit 6")
        assert docker_exec.returncode == 6
        added = wait_for("/tasks/exec-added", sleeper, '"exec_id":"', "moby")
        exec_id = added.replace(" ", "").split('"exec_id":"')[1].split('"')[0]
        assert len(exec_id) == 64  # Docker's exec id
        wait_for("/tasks/exec-started", f'"exec_id":"{exec_id}"')
        wait_for("/tasks/exit", f'"id":"{exec_id}"', '"exit_status":6')
        daemon.docker("pause", sleeper, check=True)
        wait_for("/tasks/paused", sleeper)
        daemon.docker("unpause", sleeper, check=True)
        wait_for("/tasks/resumed", sleeper)
    finally:
        events.kill()
        events.wait()
        reader.join(5)
