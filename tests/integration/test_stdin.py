"""stdin through attach (issue #3): `docker run -i`, `docker start -a -i`, docker-py attach_socket, exec -i."""

from __future__ import annotations

import socket
import time

import docker
import pytest

from aiodock.engine.containers import parse_detach_keys
from aiodock.errors import InvalidArgument
from tests.conftest import Daemon

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
