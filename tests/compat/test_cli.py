"""The ``aiodock`` CLI against a running daemon: output layouts like the docker CLI's, and its exit codes."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.root


def aiodock(daemon: Any, *args: str, timeout: float = 60, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiodock", "-H", daemon.host, *args],
        env=daemon.env, capture_output=True, text=True, timeout=timeout,
        input=input.decode() if input is not None else None,
        stdin=subprocess.DEVNULL if input is None else None,
    )


def ok(daemon: Any, *args: str, timeout: float = 60) -> str:
    proc = aiodock(daemon, *args, timeout=timeout)
    assert proc.returncode == 0, f"aiodock {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_run_prints_output_and_exits_with_the_container_code(daemon: Any, busybox: str) -> None:
    name = unique("run")
    proc = aiodock(daemon, "run", "--name", name, busybox, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "out\n"
    assert proc.stderr == "err\n"
    assert ok(daemon, "inspect", "-f", "{{.State.ExitCode}}", name) == "3\n"
    assert ok(daemon, "inspect", "-f", "{{.State.Status}}", name) == "exited\n"
    ok(daemon, "rm", name)


def test_run_options_reach_the_container(daemon: Any, busybox: str) -> None:
    out = ok(daemon, "run", "--rm", "-e", "FOO=bar", "-w", "/tmp", "-u", "1000", "--hostname", "box",
             busybox, "sh", "-c", 'echo "$FOO $(pwd) $(id -u) $(hostname)"')
    assert out == "bar /tmp 1000 box\n"
    assert ok(daemon, "run", "--rm", "--entrypoint", "/bin/echo", busybox, "-l", "x") == "-l x\n"


def test_run_rm_removes_the_container(daemon: Any, busybox: str) -> None:
    name = unique("rm")
    assert ok(daemon, "run", "--rm", "--name", name, busybox, "echo", "hello from aiodock") == "hello from aiodock\n"
    proc = aiodock(daemon, "inspect", name)
    assert proc.returncode == 1
    assert f"No such object: {name}" in proc.stderr


def test_run_exit_codes_for_daemon_errors(daemon: Any, busybox: str) -> None:
    missing = aiodock(daemon, "run", "--rm", busybox, "/does-not-exist")
    assert missing.returncode == 127, missing.stderr
    assert "Error response from daemon:" in missing.stderr
    no_image = aiodock(daemon, "run", "--rm", "no-such-image-aiodock:nope", "true")
    assert no_image.returncode == 125, no_image.stderr
    assert "Error response from daemon:" in no_image.stderr


def test_run_detached_prints_the_full_id(daemon: Any, busybox: str) -> None:
    cid = ok(daemon, "run", "-d", busybox, "true").strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    assert ok(daemon, "wait", cid) == "0\n"
    ok(daemon, "rm", cid)


def test_ps_shows_the_container_in_dockers_table(daemon: Any, busybox: str) -> None:
    name = unique("ps")
    cid = ok(daemon, "run", "-d", "--name", name, busybox, "sleep", "30").strip()
    try:
        lines = ok(daemon, "ps").splitlines()
        header = lines[0]
        assert re.match(r"CONTAINER ID\s{3}IMAGE\s+COMMAND\s+CREATED\s+STATUS\s+PORTS\s+NAMES$", header), header
        row = next(line for line in lines[1:] if line.endswith(name))
        assert row.startswith(cid[:12] + "   busybox")
        assert '"sleep 30"' in row
        assert re.search(r"\d+ seconds? ago|Less than a second ago", row)
        assert "Up " in row
        # the columns line up under the header
        assert row.index('"sleep 30"') == header.index("COMMAND")
        assert row.index("Up ") == header.index("STATUS")
        assert cid[:12] in ok(daemon, "ps", "-q").split()
        assert cid in ok(daemon, "ps", "--no-trunc")
        assert ok(daemon, "ps", "-a", "-f", f"name={name}", "--format", "{{.Names}}") == f"{name}\n"
    finally:
        ok(daemon, "rm", "-f", cid)


def test_ps_all_shows_exited_status_text(daemon: Any, busybox: str) -> None:
    name = unique("exited")
    aiodock(daemon, "run", "--name", name, busybox, "sh", "-c", "exit 3")
    rows = [line for line in ok(daemon, "ps", "-a").splitlines() if line.endswith(name)]
    assert len(rows) == 1
    assert re.search(r"Exited \(3\) (\d+ seconds?|Less than a second) ago", rows[0]), rows[0]
    assert name not in ok(daemon, "ps")
    ok(daemon, "rm", name)


def test_logs_stream_stdout_and_stderr_separately(daemon: Any, busybox: str) -> None:
    name = unique("logs")
    aiodock(daemon, "run", "--name", name, busybox, "sh", "-c", "echo one; echo two >&2; sleep 0.3; echo three")
    proc = aiodock(daemon, "logs", name)
    assert proc.returncode == 0
    assert proc.stdout == "one\nthree\n"
    assert proc.stderr == "two\n"
    assert ok(daemon, "logs", "--tail", "1", name) == "three\n"
    stamped = ok(daemon, "logs", "-t", name).splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z (one|three)$", line) for line in stamped), stamped
    ok(daemon, "rm", name)


def test_logs_follow_ends_when_the_container_exits(daemon: Any, busybox: str) -> None:
    name = unique("follow")
    ok(daemon, "run", "-d", "--name", name, busybox, "sh", "-c", "echo a; sleep 1; echo b")
    assert ok(daemon, "logs", "-f", name, timeout=30) == "a\nb\n"
    ok(daemon, "rm", name)


def test_stop_restart_kill_and_rm(daemon: Any, busybox: str) -> None:
    name = unique("stop")
    ok(daemon, "run", "-d", "--name", name, busybox, "sleep", "300")
    assert ok(daemon, "stop", "-t", "1", name) == f"{name}\n"
    assert ok(daemon, "inspect", "-f", "{{.State.Status}}", name) == "exited\n"
    assert ok(daemon, "restart", "-t", "1", name) == f"{name}\n"
    assert ok(daemon, "inspect", "-f", "{{.State.Running}}", name) == "true\n"
    assert ok(daemon, "kill", name) == f"{name}\n"
    assert ok(daemon, "wait", name) == "137\n"
    assert ok(daemon, "rm", name) == f"{name}\n"
    gone = aiodock(daemon, "rm", name)
    assert gone.returncode == 1
    assert gone.stderr.startswith("Error response from daemon: ")
    assert "No such container" in gone.stderr


def test_rm_force_removes_a_running_container(daemon: Any, busybox: str) -> None:
    name = unique("force")
    ok(daemon, "run", "-d", "--name", name, busybox, "sleep", "300")
    refused = aiodock(daemon, "rm", name)
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error response from daemon: ")
    assert ok(daemon, "rm", "-f", name) == f"{name}\n"


def test_images_lists_busybox(daemon: Any, busybox: str) -> None:
    lines = ok(daemon, "images").splitlines()
    assert re.match(r"REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$", lines[0]), lines[0]
    rows = [line.split() for line in lines[1:]]
    row = next(r for r in rows if r[:2] == ["busybox", "latest"])
    assert re.fullmatch(r"[0-9a-f]{12}", row[2])
    assert re.fullmatch(r"\d+(\.\d+)?(B|kB|MB|GB)", row[-1]), row
    assert row[2] in ok(daemon, "images", "-q").split()
    image_id = ok(daemon, "inspect", "-f", "{{.Id}}", busybox).strip()
    assert image_id.startswith("sha256:" + row[2])


def test_tag_save_load_and_rmi(daemon: Any, busybox: str, tmp_path: Any) -> None:
    ok(daemon, "tag", busybox, "aiodock-cli-test:v1")
    assert any(line.split()[:2] == ["aiodock-cli-test", "v1"] for line in ok(daemon, "images").splitlines())
    tar = tmp_path / "saved.tar"
    ok(daemon, "save", "-o", str(tar), "aiodock-cli-test:v1")
    assert tar.stat().st_size > 1024
    removed = ok(daemon, "rmi", "aiodock-cli-test:v1")
    assert "Untagged: aiodock-cli-test:v1" in removed
    loaded = ok(daemon, "load", "-i", str(tar))
    assert "Loaded image: aiodock-cli-test:v1" in loaded
    with open(tar, "rb") as fh:
        piped = subprocess.run([sys.executable, "-m", "aiodock", "-H", daemon.host, "load", "-q"], stdin=fh,
                               env=daemon.env, capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0, piped.stderr
    ok(daemon, "rmi", "aiodock-cli-test:v1")


def test_save_refuses_to_write_to_a_terminal(daemon: Any, busybox: str) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # child: stdout is the pty
        os.environ.update(daemon.env)
        os.execv(sys.executable, [sys.executable, "-m", "aiodock", "-H", daemon.host, "save", busybox])
    output = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 1
    assert b"cowardly refusing to save to a terminal. Use the -o flag or redirect" in output


def test_import_creates_an_image(daemon: Any, busybox: str, tmp_path: Any) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    busybox_bin = "/bin/busybox" if os.path.exists("/bin/busybox") else "/usr/bin/busybox"
    subprocess.run(["cp", busybox_bin, str(rootfs / "bin" / "busybox")], check=True)
    os.symlink("busybox", rootfs / "bin" / "sh")
    os.symlink("busybox", rootfs / "bin" / "echo")
    tar = tmp_path / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    out = ok(daemon, "import", "-c", 'CMD ["/bin/echo", "imported"]', "-m", "cli test", str(tar), "aiodock-imp:1")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", out), out
    assert ok(daemon, "run", "--rm", "aiodock-imp:1") == "imported\n"
    ok(daemon, "rmi", "aiodock-imp:1")


def test_inspect_json_and_formats(daemon: Any, busybox: str) -> None:
    import json

    name = unique("inspect")
    ok(daemon, "run", "--name", name, "-l", "app=cli", busybox, "true")
    data = json.loads(ok(daemon, "inspect", name))
    assert isinstance(data, list) and data[0]["Name"] == f"/{name}"
    assert json.loads(ok(daemon, "inspect", "-f", "{{json .Config.Labels}}", name)) == {"app": "cli"}
    assert ok(daemon, "inspect", "-f", '{{index .Config.Labels "app"}}', name) == "cli\n"
    assert ok(daemon, "inspect", "-f", "{{.Id}}", name).strip() == data[0]["Id"]
    ok(daemon, "rm", name)


def test_version_and_info_talk_to_the_server(daemon: Any) -> None:
    version = ok(daemon, "version")
    assert version.startswith("Client:\n Version:")
    assert "\nServer:" in version
    assert re.search(r"API version:\s+\d+\.\d+", version)
    info = ok(daemon, "info")
    assert "\nServer:\n Containers: " in info
    assert " Server Version: " in info


def test_unreachable_daemon_is_reported(tmp_path: Any) -> None:
    sock = tmp_path / "nothing.sock"
    proc = subprocess.run([sys.executable, "-m", "aiodock", "-H", f"unix://{sock}", "ps"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"Cannot connect to the Docker daemon at unix://{sock}. "
                                   "Is the docker daemon running?")


def test_docker_host_is_used_without_dash_h(daemon: Any, busybox: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "aiodock", "images", "-q"], env=daemon.env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


def test_ctr_lists_the_moby_namespace_containers_and_tasks(daemon: Any, busybox: str) -> None:
    name = unique("ctr")
    cid = ok(daemon, "run", "-d", "--name", name, busybox, "sleep", "30").strip()
    try:
        address = str(daemon.grpc_socket)
        namespaces = ok(daemon, "ctr", "--address", address, "namespaces", "ls").splitlines()
        assert namespaces[0].split() == ["NAME", "LABELS"]
        assert "moby" in [line.split()[0] for line in namespaces[1:]]
        assert "moby" in ok(daemon, "ctr", "-a", address, "ns", "ls", "-q").split()
        containers = ok(daemon, "ctr", "-a", address, "-n", "moby", "containers", "ls").splitlines()
        assert containers[0].split() == ["CONTAINER", "IMAGE", "RUNTIME"]
        assert any(line.startswith(cid + " ") for line in containers[1:])
        tasks = ok(daemon, "ctr", "-a", address, "-n", "moby", "tasks", "ls").splitlines()
        assert tasks[0].split() == ["TASK", "PID", "STATUS"]
        row = next(line.split() for line in tasks[1:] if line.startswith(cid))
        assert row[2] == "RUNNING" and int(row[1]) > 0
    finally:
        ok(daemon, "rm", "-f", cid)


def test_help_lists_the_commands() -> None:
    proc = subprocess.run([sys.executable, "-m", "aiodock", "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    for command in ("run", "ps", "logs", "stop", "kill", "rm", "restart", "wait", "images", "import", "load",
                    "save", "inspect", "rmi", "tag", "version", "info", "ctr", "daemon"):
        assert re.search(rf"^  {command}\s", proc.stdout, re.M), command
    bad = subprocess.run([sys.executable, "-m", "aiodock", "frobnicate"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1
    assert "'frobnicate' is not an aiodock command" in bad.stderr
