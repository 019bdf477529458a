"""The real docker CLI against a real aiodock daemon: the container lifecycle of the core engine issue."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import Daemon, quote_filters

pytestmark = pytest.mark.root


def test_run_prints_output_and_exits_with_the_container_code(daemon: Daemon, busybox: str) -> None:
    proc = daemon.docker("run", "--name", "hi3", busybox, "sh", "-c", "echo hi; echo oops >&2; exit 3")
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "hi\n"
    assert proc.stderr == "oops\n"
    state = json.loads(daemon.docker("inspect", "hi3", check=True).stdout)[0]["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 3 and state["Running"] is False


def test_run_rm_removes_the_container(daemon: Daemon, busybox: str) -> None:
    proc = daemon.docker("run", "--rm", "--name", "gone", busybox, "echo", "bye")
    assert (proc.returncode, proc.stdout) == (0, "bye\n"), proc.stderr
    assert daemon.docker("ps", "-a", "--filter", "name=gone", "-q").stdout.strip() == ""


def test_run_with_env_workdir_user_and_bind(daemon: Daemon, busybox: str) -> None:
    shared = Path(tempfile.mkdtemp(prefix="adk-bind-", dir="/tmp"))
    try:
        shared.chmod(0o755)
        (shared / "f.txt").write_text("from host\n")
        proc = daemon.docker("run", "--rm", "-e", "A=1", "-w", "/tmp", "-u", "nobody", "-v", f"{shared}:/data:ro",
                             busybox, "sh", "-c", "echo $A; pwd; id -u; cat /data/f.txt; touch /data/x || echo ro")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split("\n")[:5] == ["1", "/tmp", "65534", "from host", "ro"]
        assert sorted(p.name for p in shared.iterdir()) == ["f.txt"]
    finally:
        shutil.rmtree(shared)


def test_unknown_command_exits_127_with_runtime_message(daemon: Daemon, busybox: str) -> None:
    proc = daemon.docker("run", "--rm", busybox, "/no/such/binary")
    assert proc.returncode == 127
    assert "no such file or directory" in proc.stderr or "not found" in proc.stderr


def test_detached_logs_inspect_and_ps_filters(daemon: Daemon, busybox: str) -> None:
    cid = daemon.docker("run", "-d", "--name", "ticker", "-l", "role=ticker", busybox, "sh", "-c",
                        "echo started; while true; do sleep 0.1; done", check=True).stdout.strip()
    assert len(cid) == 64
    deadline = time.monotonic() + 5
    while "started" not in daemon.docker("logs", "ticker").stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    assert daemon.docker("logs", "ticker").stdout == "started\n"
    info = json.loads(daemon.docker("inspect", cid).stdout)[0]
    assert info["Name"] == "/ticker" and info["State"]["Running"] and info["State"]["Pid"] > 0
    assert info["Config"]["Labels"] == {"role": "ticker"}
    assert info["LogPath"].endswith(f"{cid}-json.log")
    assert daemon.docker("ps", "-q", "--filter", "label=role=ticker").stdout.strip() == cid[:12]
    assert daemon.docker("ps", "-q", "--filter", "status=exited", "--filter", "name=ticker").stdout.strip() == ""
    assert cid[:12] in daemon.docker("ps", "--filter", "ancestor=busybox").stdout
    daemon.docker("rm", "-f", "ticker", check=True)
    assert daemon.docker("ps", "-aq", "--filter", "name=ticker").stdout.strip() == ""


def test_stop_graceful_and_stubborn(daemon: Daemon, busybox: str) -> None:
    daemon.docker("run", "-d", "--name", "graceful", busybox, "sh", "-c",
                  "trap 'echo got TERM; exit 7' TERM; while true; do sleep 0.1; done", check=True)
    daemon.docker("run", "-d", "--name", "stubborn", busybox, "sh", "-c",
                  "trap '' TERM; while true; do sleep 0.1; done", check=True)
    time.sleep(0.3)
    start = time.monotonic()
    daemon.docker("stop", "graceful", check=True)
    assert time.monotonic() - start < 5
    assert daemon.docker("inspect", "-f", "{{.State.ExitCode}}", "graceful").stdout.strip() == "7"
    assert "got TERM" in daemon.docker("logs", "graceful").stdout
    start = time.monotonic()
    daemon.docker("stop", "-t", "1", "stubborn", check=True)
    assert 0.9 < time.monotonic() - start < 10
    assert daemon.docker("inspect", "-f", "{{.State.ExitCode}}", "stubborn").stdout.strip() == "137"
    daemon.docker("rm", "graceful", "stubborn", check=True)


def test_kill_with_signal_wait_restart(daemon: Daemon, busybox: str) -> None:
    daemon.docker("run", "-d", "--name", "sig", busybox, "sh", "-c",
                  "trap 'echo usr1; exit 5' USR1; while true; do sleep 0.1; done", check=True)
    time.sleep(0.3)
    daemon.docker("kill", "-s", "USR1", "sig", check=True)
    waited = daemon.docker("wait", "sig", check=True)
    assert waited.stdout.strip() == "5"
    assert daemon.docker("logs", "sig").stdout == "usr1\n"
    daemon.docker("restart", "sig", check=True)
    assert daemon.docker("inspect", "-f", "{{.State.Running}}", "sig").stdout.strip() == "true"
    daemon.docker("kill", "sig", check=True)
    assert daemon.docker("wait", "sig").stdout.strip() == "137"
    proc = daemon.docker("kill", "sig")
    assert proc.returncode == 1 and "is not running" in proc.stderr
    daemon.docker("rm", "sig", check=True)


def test_rm_running_needs_force(daemon: Daemon, busybox: str) -> None:
    daemon.docker("run", "-d", "--name", "busy", busybox, "sleep", "60", check=True)
    proc = daemon.docker("rm", "busy")
    assert proc.returncode == 1
    assert "container is running: stop the container before removing or force remove" in proc.stderr
    daemon.docker("rm", "-f", "busy", check=True)


def test_name_conflict_unknown_id_and_malformed_json(daemon: Daemon, busybox: str) -> None:
    daemon.docker("create", "--name", "twice", busybox, "true", check=True)
    proc = daemon.docker("create", "--name", "twice", busybox, "true")
    assert proc.returncode != 0 and 'The container name "/twice" is already in use' in proc.stderr
    status, body = daemon.api("POST", "/containers/create?name=twice", {"Image": busybox, "Cmd": ["true"]})
    assert status == 409 and "already in use" in json.loads(body)["message"]
    status, body = daemon.api("GET", "/containers/0123456789abcdef/json")
    assert status == 404 and json.loads(body) == {"message": "No such container: 0123456789abcdef"}
    status, body = daemon.api("POST", "/containers/create", b"{not json")
    assert status == 400 and json.loads(body)["message"]
    status, body = daemon.api("POST", "/containers/create", {"Image": "nosuchimage:1"})
    assert status == 404 and "No such image" in json.loads(body)["message"]
    daemon.docker("rm", "twice", check=True)


def test_rename_and_ps_filters_over_http(daemon: Daemon, busybox: str) -> None:
    daemon.docker("run", "--name", "old", busybox, "sh", "-c", "exit 2")
    daemon.docker("rename", "old", "new", check=True)
    status, body = daemon.api("GET", "/containers/json?all=1&filters=" + quote_filters({"exited": ["2"]}))
    names = [c["Names"][0] for c in json.loads(body)]
    assert status == 200 and "/new" in names and "/old" not in names
    status, body = daemon.api("POST", "/containers/prune")
    assert status == 200 and json.loads(body)["ContainersDeleted"]
    assert daemon.docker("ps", "-aq").stdout.strip() == ""


def test_import_save_load_roundtrip(daemon: Daemon, busybox: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    saved = tmp_path / "saved.tar"
    daemon.docker("save", "-o", str(saved), busybox, check=True)
    image_id = daemon.docker("inspect", "-f", "{{.Id}}", busybox, check=True).stdout.strip()
    daemon.docker("tag", busybox, "copy:one", check=True)
    daemon.docker("rmi", "copy:one", check=True)
    out = daemon.docker("load", "-i", str(saved), check=True).stdout
    assert "busybox:latest" in out
    assert daemon.docker("inspect", "-f", "{{.Id}}", busybox).stdout.strip() == image_id
    # docker import of a root filesystem tarball with a CMD change
    exported = tmp_path / "rootfs.tar"
    import tarfile
    with tarfile.open(exported, "w") as tar:
        info = tarfile.TarInfo("bin/busybox")
        data = open("/bin/busybox", "rb").read()
        info.size, info.mode = len(data), 0o755
        import io
        tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("bin/sh")
        link.type, link.linkname = tarfile.SYMTYPE, "busybox"
        tar.addfile(link)
    proc = daemon.docker("import", "-c", 'CMD ["sh", "-c", "echo imported"]', str(exported), "imported:v1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith("sha256:")
    run = daemon.docker("run", "--rm", "imported:v1")
    assert (run.returncode, run.stdout) == (0, "imported\n"), run.stderr
    daemon.docker("rmi", "imported:v1", check=True)


def test_image_in_use_cannot_be_removed(daemon: Daemon, busybox: str) -> None:
    daemon.docker("tag", busybox, "inuse:1", check=True)
    daemon.docker("create", "--name", "user", "inuse:1", "true", check=True)
    daemon.docker("rmi", "busybox:latest", check=True) if False else None
    proc = daemon.docker("rmi", daemon.docker("inspect", "-f", "{{.Id}}", "inuse:1").stdout.strip())
    assert proc.returncode == 1 and "conflict" in proc.stderr
    daemon.docker("rm", "user", check=True)
    daemon.docker("rmi", "inuse:1", check=True)


def test_version_and_info(daemon: Daemon) -> None:
    info = json.loads(daemon.docker("info", "--format", "{{json .}}", check=True).stdout)
    assert info["Driver"] == "overlay2" and info["CgroupVersion"] in ("1", "2") and info["NCPU"] >= 1
    assert info["DockerRootDir"] == str(daemon.data_root)
    version = daemon.docker("version", "--format", "{{.Server.APIVersion}}", check=True).stdout.strip()
    assert version == "1.44"


def test_bind_of_a_host_file_and_a_failed_start_with_rm(daemon: Daemon, busybox: str) -> None:
    """-v /host/file:/path binds the file; a bind source that cannot be made fails the start with Docker's
    message, and an attached `docker run --rm` ends (125/126) instead of waiting, leaving no container."""
    shared = Path(tempfile.mkdtemp(prefix="adk-bind-", dir="/tmp"))
    try:
        (shared / "f.txt").write_text("a host file\n")
        proc = daemon.docker("run", "--rm", "-v", f"{shared}/f.txt:/etc/motd:ro", busybox, "cat", "/etc/motd")
        assert (proc.returncode, proc.stdout) == (0, "a host file\n"), proc.stderr
        bad = f"{shared}/f.txt/sub"  # under a file: mkdir cannot make it
        proc = daemon.docker("run", "--rm", "--name", "adk-badbind", "-v", f"{bad}:/x", busybox, "true", timeout=30)
        assert proc.returncode in (125, 126), (proc.returncode, proc.stderr)
        assert f"error while creating mount source path '{bad}': mkdir {bad}: not a directory" in proc.stderr
        assert daemon.docker("ps", "-aq", "--filter", "name=adk-badbind").stdout.strip() == ""
        proc = daemon.docker("run", "--name", "adk-badbind", "-v", f"{bad}:/x", busybox, "true", timeout=30)
        assert proc.returncode in (125, 126), (proc.returncode, proc.stderr)
        state = daemon.docker("inspect", "-f", "{{.State.Status}}", "adk-badbind", check=True).stdout.strip()
        assert state == "created"
    finally:
        daemon.docker("rm", "-f", "adk-badbind")
        shutil.rmtree(shared)


def test_swarm_and_plugin_commands_answer_as_a_daemon_outside_a_swarm(daemon: Daemon) -> None:
    plugins = daemon.docker("plugin", "ls")
    assert plugins.returncode == 0 and plugins.stdout.split()[:2] == ["ID", "NAME"]
    for command in (("node", "ls"), ("service", "ls"), ("secret", "ls"), ("config", "ls"), ("stack", "ls")):
        result = daemon.docker(*command)
        assert result.returncode != 0 and "This node is not a swarm manager" in result.stderr, (command, result.stderr)
    init = daemon.docker("swarm", "init")
    assert init.returncode != 0 and "swarm mode is not supported by aiodock" in init.stderr
    leave = daemon.docker("swarm", "leave")
    assert leave.returncode != 0 and "This node is not part of a swarm" in leave.stderr
    status, body = daemon.api("GET", "/v1.41/services")
    assert status == 503 and json.loads(body)["message"].startswith("This node is not a swarm manager")
