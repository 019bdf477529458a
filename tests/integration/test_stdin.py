"""stdin through attach (issue #3): `docker run -i`, `docker start -a -i`, docker-py attach_socket, exec -i, the
websocket attach (aiodocker), `docker attach --no-stdin` and --sig-proxy."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time

import docker
import pytest

from aiodock.engine.containers import parse_detach_keys
from aiodock.errors import InvalidArgument
from tests.conftest import DOCKER, Daemon

pytestmark = pytest.mark.root


def test_run_i_pipes_stdin_to_the_container(daemon: Daemon) -> None:
    proc = daemon.docker("run", "--rm", "-i", "busybox:latest", "cat", input=b"hi\n")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "hi\n", "")
    big = "".join(f"line {i}\n" for i in range(20000))  # > a FIFO and a pipe: back-pressure, nothing lost
    proc = daemon.docker("run", "--rm", "-i", "busybox:latest", "wc", "-l", input=big.encode())
    assert (proc.returncode, proc.stdout.strip()) == (0, "20000")


def test_run_i_with_empty_stdin_ends(daemon: Daemon) -> None:
    proc = daemon.docker("run", "--rm", "-i", "busybox:latest", "sh", "-c", "cat; echo done; exit 4", input=b"")
    assert (proc.returncode, proc.stdout) == (4, "done\n")


def test_run_without_i_gives_no_stdin(daemon: Daemon) -> None:
    proc = daemon.docker("run", "--rm", "busybox:latest", "sh", "-c", "cat; echo eof", input=b"ignored\n")
    assert (proc.returncode, proc.stdout) == (0, "eof\n")


def test_start_a_i_reads_stdin_each_time(daemon: Daemon) -> None:
    daemon.docker("create", "-i", "--name", "stdin-again", "busybox:latest", "sh", "-c", "read x; echo got $x",
                  check=True)
    try:
        for word in ("one", "two"):
            proc = daemon.docker("start", "-a", "-i", "stdin-again", input=f"{word}\n".encode())
            assert (proc.returncode, proc.stdout) == (0, f"got {word}\n"), proc.stderr
    finally:
        daemon.docker("rm", "-f", "stdin-again")


def test_docker_py_attach_socket_with_stdin(daemon: Daemon) -> None:
    client = docker.DockerClient(base_url=daemon.host)
    container = client.containers.create("busybox:latest", ["sh", "-c", "read a; echo [$a]"], stdin_open=True)
    try:
        sock = container.attach_socket(params={"stdin": 1, "stdout": 1, "stream": 1})
        raw: socket.socket = sock._sock  # the hijacked connection
        container.start()
        raw.sendall(b"py\n")
        raw.settimeout(20)
        data = b""
        deadline = time.monotonic() + 20
        while b"[py]" not in data and time.monotonic() < deadline:
            piece = raw.recv(4096)
            if not piece:
                break
            data += piece
        assert data == b"\x01\x00\x00\x00\x00\x00\x00\x05[py]\n"  # one stdout frame
        sock.close()
        assert container.wait(timeout=20)["StatusCode"] == 0
    finally:
        container.remove(force=True)
        client.close()


def test_exec_i_pipes_stdin(daemon: Daemon) -> None:
    daemon.docker("run", "-d", "--name", "stdin-exec", "busybox:latest", "sleep", "600", check=True)
    try:
        proc = daemon.docker("exec", "-i", "stdin-exec", "cat", input=b"through exec\n")
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "through exec\n", "")
        proc = daemon.docker("exec", "-i", "stdin-exec", "sh", "-c", "wc -c; exit 6", input=b"x" * 300000)
        assert (proc.returncode, proc.stdout.strip()) == (6, "300000")
        proc = daemon.docker("exec", "-i", "stdin-exec", "sh", "-c", "cat; echo end", input=b"")
        assert (proc.returncode, proc.stdout) == (0, "end\n")
    finally:
        daemon.docker("rm", "-f", "stdin-exec")


@pytest.mark.parametrize(("keys", "sequence"), [
    ("ctrl-p,ctrl-q", b"\x10\x11"), ("a,ctrl-@", b"a\x00"), ("ctrl-[,ctrl-_", b"\x1b\x1f"), ("X", b"X"),
])
def test_detach_keys_syntax(keys: str, sequence: bytes) -> None:
    assert parse_detach_keys(keys) == sequence


@pytest.mark.parametrize("keys", ["", "ctrl-", "ctrl-1", "ab", "ctrl-p,"])
def test_bad_detach_keys(keys: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^Invalid detach keys \(.*\) provided$"):
        parse_detach_keys(keys)


def test_attach_to_a_running_container_with_stdin(daemon: Daemon) -> None:
    """`docker attach` of a running `-i` container: its answer to our stdin comes back at once."""
    daemon.docker("run", "-d", "-i", "--name", "stdin-attach", "busybox:latest", "sh", "-c",
                  "echo before; while read x; do echo got $x; done", check=True)
    try:
        client = docker.DockerClient(base_url=daemon.host)
        sock = client.api.attach_socket("stdin-attach", params={"stdin": 1, "stdout": 1, "stream": 1})
        raw: socket.socket = sock._sock
        raw.sendall(b"now\n")  # right after the 101
        raw.settimeout(20)
        data = b""
        while b"got now\n" not in data:
            piece = raw.recv(4096)
            assert piece, data
            data += piece
        assert b"before" not in data  # no logs asked for: only what came after the attach
        sock.close()
        client.close()
    finally:
        daemon.docker("rm", "-f", "stdin-attach")


async def test_websocket_attach_with_aiodocker(daemon: Daemon) -> None:
    """GET /containers/{id}/attach/ws through aiodocker: raw (unframed) output as binary messages, our messages
    as the container's stdin, and the earlier output with logs=1."""
    import aiodocker
    import aiohttp

    daemon.docker("run", "-d", "-i", "--name", "stdin-ws", "busybox:latest", "sh", "-c",
                  "echo before; while read x; do echo got $x; echo err $x >&2; done", check=True)
    client = aiodocker.Docker(url=daemon.host)
    try:
        container = await client.containers.get("stdin-ws")
        ws = await container.websocket(stdin=True, stdout=True, stderr=True, stream=True, logs=True)
        await ws.send_bytes(b"hello\n")
        received = b""
        async with asyncio.timeout(20):
            while b"err hello\n" not in received:
                message = await ws.receive()
                assert message.type == aiohttp.WSMsgType.BINARY, message
                received += message.data
        assert received.startswith(b"before\n"), received  # logs=1: what it wrote before the attach
        assert b"got hello\n" in received and b"\x01\x00\x00\x00" not in received, received  # no stdcopy framing
        await ws.close()
        # the websocket is gone, the container is not
        assert daemon.docker("inspect", "-f", "{{.State.Running}}", "stdin-ws", check=True).stdout.strip() == "true"
        status, body = daemon.api("GET", "/containers/nope/attach/ws")
        assert (status, json.loads(body)) == (404, {"message": "No such container: nope"}), body
    finally:
        await client.close()
        daemon.docker("rm", "-f", "stdin-ws")


def test_docker_attach_no_stdin_and_sig_proxy(daemon: Daemon) -> None:
    """`docker attach --no-stdin` sends nothing of ours; the default --sig-proxy turns a SIGINT to the CLI into a
    kill of the container with that signal (POST /containers/{id}/kill?signal=INT)."""
    daemon.docker("run", "-d", "-i", "--name", "stdin-sig", "busybox:latest", "sh", "-c",
                  "trap 'echo got-int; exit 7' INT; while true; do if read -t 1 x; then echo read $x; fi; done",
                  check=True)
    try:
        proc = subprocess.Popen([DOCKER, "attach", "--no-stdin", "stdin-sig"], env=daemon.env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdin is not None
        proc.stdin.write(b"ours\n")
        proc.stdin.flush()
        time.sleep(1.5)  # the attach is up, and the container would have echoed our line by now
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        # The CLI (28) also cancels its own context on SIGINT and drops the stream, so the container's answer is
        # read from its log; the exit code comes from the CLI's wait.
        assert proc.returncode == 7, (proc.returncode, err)
        state = daemon.docker("inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", "stdin-sig",
                              check=True).stdout.split()
        assert state == ["false", "7"], state
        logs = daemon.docker("logs", "stdin-sig", check=True).stdout
        assert "got-int" in logs and "read ours" not in logs + out.decode(), (logs, out)
    finally:
        daemon.docker("rm", "-f", "stdin-sig")
