"""docker exec (no TTY) with the real docker CLI and docker-py against a real aiodock daemon."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import docker
import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def box(daemon: Daemon) -> Iterator[str]:
    """One long-running container the exec tests share (env and workdir set, to see the merge)."""
    cid = daemon.docker("run", "-d", "--name", "execbox", "-e", "BASE=b", "-e", "X=0", "-w", "/etc",
                        "busybox:latest", "sleep", "600", check=True).stdout.strip()
    yield cid
    daemon.docker("rm", "-f", cid)


def test_exec_prints_output_and_exit_codes(daemon: Daemon, box: str) -> None:
    proc = daemon.docker("exec", "execbox", "echo", "hi")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "hi\n", "")
    proc = daemon.docker("exec", "execbox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")


def test_exec_env_workdir_and_user(daemon: Daemon, box: str) -> None:
    proc = daemon.docker("exec", "execbox", "sh", "-c", "echo $BASE $X; pwd; id -u")
    assert proc.stdout.split("\n")[:3] == ["b 0", "/etc", "0"], proc.stderr
    proc = daemon.docker("exec", "-e", "X=1", "-w", "/tmp", "-u", "nobody", "execbox", "sh", "-c",
                         "echo $BASE $X; pwd; id -u; id -g")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:4] == ["b 1", "/tmp", "65534", "65534"]


def test_exec_detached_runs_and_inspect_reports_exit(daemon: Daemon, box: str) -> None:
    proc = daemon.docker("exec", "-d", "execbox", "sh", "-c", "sleep 0.3; touch /tmp/detached-done")
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stderr
    deadline = time.monotonic() + 10
    while daemon.docker("exec", "execbox", "test", "-e", "/tmp/detached-done").returncode != 0:
        assert time.monotonic() < deadline, "the detached exec never ran"
        time.sleep(0.1)


def test_exec_api_inspect_shape_and_errors(daemon: Daemon, box: str) -> None:
    status, data = daemon.api("POST", "/containers/execbox/exec",
                              {"Cmd": ["sh", "-c", "exit 5"], "AttachStdout": True, "User": "nobody"})
    assert status == 201, data
    exec_id = json.loads(data)["Id"]
    info = daemon.json("GET", f"/exec/{exec_id}/json")
    assert isinstance(info, dict)
    assert info["ID"] == exec_id and info["Running"] is False and info["ExitCode"] is None
    assert info["ContainerID"] == box and info["OpenStdout"] is True and info["OpenStderr"] is False
    assert info["ProcessConfig"] == {"tty": False, "entrypoint": "sh", "arguments": ["-c", "exit 5"],
                                     "privileged": False, "user": "nobody"}
    assert exec_id in daemon.json("GET", "/containers/execbox/json")["ExecIDs"]  # type: ignore[index]
    assert daemon.api("POST", f"/exec/{exec_id}/start", {"Detach": True}) == (200, b"")
    deadline = time.monotonic() + 10
    while (info := daemon.json("GET", f"/exec/{exec_id}/json"))["ExitCode"] is None:  # type: ignore[index]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert info["ExitCode"] == 5 and info["Running"] is False and info["Pid"] > 0  # type: ignore[index]
    status, data = daemon.api("POST", f"/exec/{exec_id}/start", {"Detach": True})
    assert status == 409 and json.loads(data)["message"] == f"Error: Exec command {exec_id} has already run"
    status, data = daemon.api("GET", "/exec/nosuchexec/json")
    assert status == 404 and json.loads(data)["message"] == "No such exec instance: nosuchexec"
    status, data = daemon.api("POST", "/containers/nosuchbox/exec", {"Cmd": ["true"]})
    assert status == 404 and json.loads(data)["message"] == "No such container: nosuchbox"


def test_exec_in_stopped_container_is_a_conflict(daemon: Daemon) -> None:
    cid = daemon.docker("create", "--name", "execstopped", "busybox:latest", "true", check=True).stdout.strip()
    try:
        proc = daemon.docker("exec", "execstopped", "echo", "hi")
        assert proc.returncode != 0
        assert f"container {cid} is not running" in proc.stderr
        status, data = daemon.api("POST", f"/containers/{cid}/exec", {"Cmd": ["true"]})
        assert status == 409 and json.loads(data)["message"] == f"container {cid} is not running"
    finally:
        daemon.docker("rm", "-f", cid)


def test_exec_of_a_missing_binary_fails_with_126(daemon: Daemon, box: str) -> None:
    proc = daemon.docker("exec", "execbox", "/no/such/binary")
    assert proc.returncode == 126
    assert "OCI runtime exec failed" in proc.stdout + proc.stderr
    assert "no such file or directory" in proc.stdout + proc.stderr


def test_exec_privileged_gets_every_capability(daemon: Daemon, box: str) -> None:
    plain = daemon.docker("exec", "execbox", "grep", "CapEff", "/proc/self/status", check=True).stdout.split()[1]
    full = daemon.docker("exec", "--privileged", "execbox", "grep", "CapEff", "/proc/self/status",
                         check=True).stdout.split()[1]
    assert int(full, 16) > int(plain, 16)
    assert int(full, 16) & (1 << 21)  # CAP_SYS_ADMIN


def test_docker_py_exec_run_stream_and_demux(daemon: Daemon, box: str) -> None:
    client = docker.DockerClient(base_url=daemon.host, version="1.44", timeout=60)
    try:
        container = client.containers.get("execbox")
        result = container.exec_run(["sh", "-c", "echo out; echo err >&2; exit 2"])
        assert result.exit_code == 2 and result.output == b"out\nerr\n"
        result = container.exec_run(["sh", "-c", "echo out; echo err >&2"], demux=True)
        assert result.exit_code == 0 and result.output == (b"out\n", b"err\n")
        result = container.exec_run(["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.05; done"], stream=True)
        assert b"".join(result.output) == b"1\n2\n3\n"
        result = container.exec_run(["id", "-u"], user="nobody", environment={"Q": "1"}, workdir="/tmp")
        assert (result.exit_code, result.output) == (0, b"65534\n")
    finally:
        client.close()


def test_exec_large_output_is_complete(daemon: Daemon, box: str) -> None:
    proc = daemon.docker("exec", "execbox", "sh", "-c", "i=0; while [ $i -lt 20000 ]; do echo line$i; "
                         "i=$((i+1)); done")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 20000 and lines[-1] == "line19999"


def test_exec_ends_when_the_container_is_removed(daemon: Daemon) -> None:
    cid = daemon.docker("run", "-d", "busybox:latest", "sleep", "600", check=True).stdout.strip()
    status, data = daemon.api("POST", f"/containers/{cid}/exec", {"Cmd": ["sleep", "600"]})
    assert status == 201, data
    exec_id = json.loads(data)["Id"]
    assert daemon.api("POST", f"/exec/{exec_id}/start", {"Detach": True})[0] == 200
    assert daemon.json("GET", f"/exec/{exec_id}/json")["Running"] is True  # type: ignore[index]
    daemon.docker("rm", "-f", cid, check=True)
    deadline = time.monotonic() + 10
    while (info := daemon.json("GET", f"/exec/{exec_id}/json"))["Running"]:  # type: ignore[index]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert info["ExitCode"] == 137  # type: ignore[index]
