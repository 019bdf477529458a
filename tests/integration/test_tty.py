"""TTY containers and execs (issue #3) with the real docker CLI under a real pty: what a user sees at a terminal."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import termios
import time
from collections.abc import Iterator

import docker
import pytest

from tests.conftest import DOCKER, Daemon

pytestmark = pytest.mark.root


class Terminal:
    """The docker CLI on the slave side of a pty of ours (its controlling terminal); we type on the master."""

    def __init__(self, daemon: Daemon, *args: str, rows: int = 24, cols: int = 80) -> None:
        assert DOCKER
        pid, fd = pty.fork()
        if pid == 0:  # the child: the pty slave is its stdio and controlling terminal
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
                os.execve(DOCKER, [DOCKER, *args], daemon.env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.buffer = b""
        self.status: int | None = None

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the CLI exited and the slave is closed
            data = b""
        self.buffer += data
        return bool(data)

    def expect(self, pattern: str, timeout: float = 20) -> re.Match[bytes]:
        """Wait for the pattern in what the terminal shows; consume through it."""
        regex = re.compile(pattern.encode())
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.buffer)
            if match:
                self.buffer = self.buffer[match.end():]
                return match
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._read(min(remaining, 0.5)) and self.exited():
                raise AssertionError(f"{pattern!r} not seen; the terminal shows {self.buffer!r}")

    def wait_raw(self, timeout: float = 20) -> None:
        """Wait until the CLI put its terminal in raw mode (before that, the local line discipline would echo
        and cook what we type)."""
        deadline = time.monotonic() + timeout
        while termios.tcgetattr(self.fd)[3] & termios.ECHO:
            if time.monotonic() > deadline or self.exited():
                raise AssertionError(f"the CLI never made its terminal raw; it shows {self.buffer!r}")
            self._read(0.05)

    def resize(self, rows: int, cols: int) -> None:
        """What a terminal emulator does: set the size (the kernel sends the CLI SIGWINCH)."""
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def exited(self) -> bool:
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status is not None

    def wait(self, timeout: float = 20) -> int:
        deadline = time.monotonic() + timeout
        while not self.exited():
            if time.monotonic() > deadline:
                raise AssertionError(f"the docker CLI did not exit; the terminal shows {self.buffer!r}")
            self._read(0.1)
        assert self.status is not None
        return self.status

    def close(self) -> None:
        if not self.exited():
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    yield opened
    for term in opened:
        term.close()


def open_terminal(terminals: list[Terminal], daemon: Daemon, *args: str) -> Terminal:
    term = Terminal(daemon, *args)
    terminals.append(term)
    term.wait_raw()
    return term


def test_run_it_is_an_interactive_shell(daemon: Daemon, terminals: list[Terminal]) -> None:
    term = open_terminal(terminals, daemon, "run", "-it", "--name", "tty-shell", "busybox:latest", "sh")
    try:
        term.send("echo $((6*7))\r")
        term.expect(r"\r\n42\r\n")  # the shell's echo of the command, then its output: a terminal's CRLF
        term.send("tty; stty size\r")
        term.expect(r"/dev/pts/0\r\n24 80\r\n")
        term.resize(33, 101)
        time.sleep(0.3)  # the CLI forwards SIGWINCH as POST /containers/{id}/resize
        term.send("stty size\r")
        term.expect(r"\r\n33 101\r\n")
        term.send("\x10\x11")  # ctrl-p ctrl-q: detach, the container keeps running
        assert term.wait() == 0
        assert daemon.docker("inspect", "-f", "{{.State.Running}}", "tty-shell").stdout.strip() == "true"

        again = open_terminal(terminals, daemon, "attach", "tty-shell")
        again.send("echo back $((1+1))\r")
        again.expect(r"back 2\r\n")
        again.send("exit 3\r")
        assert again.wait() == 3
        assert daemon.docker("inspect", "-f", "{{.State.ExitCode}}", "tty-shell").stdout.strip() == "3"
        logs = daemon.docker("logs", "tty-shell").stdout  # (text mode: "\r\n" reads as "\n")
        assert "\n42\n" in logs and "\nback 2\n" in logs  # the terminal's output is the container's log, raw
    finally:
        daemon.docker("rm", "-f", "tty-shell")


def test_run_t_without_i_and_resize_errors(daemon: Daemon) -> None:
    proc = daemon.docker("run", "--rm", "-t", "busybox:latest", "sh", "-c", "tty; echo out; echo err >&2")
    assert (proc.returncode, proc.stdout) == (0, "/dev/pts/0\nout\nerr\n")  # one stream, as Docker
    cid = daemon.docker("create", "busybox:latest", "true", check=True).stdout.strip()
    try:
        status, body = daemon.api("POST", f"/containers/{cid}/resize?h=10&w=20")
        assert (status, json.loads(body)) == (409, {"message": f"Container {cid} is not running"})
    finally:
        daemon.docker("rm", "-f", cid)


def test_exec_it_is_an_interactive_shell(daemon: Daemon, terminals: list[Terminal]) -> None:
    daemon.docker("run", "-d", "--name", "tty-exec", "busybox:latest", "sleep", "600", check=True)
    try:
        term = open_terminal(terminals, daemon, "exec", "-it", "tty-exec", "sh")
        term.send("echo $((6*7)); tty\r")
        term.expect(r"\r\n42\r\n/dev/pts/\d+\r\n")
        term.send("stty size\r")
        term.expect(r"\r\n24 80\r\n")
        term.resize(40, 120)
        time.sleep(0.3)  # the CLI forwards SIGWINCH as POST /exec/{id}/resize
        term.send("stty size\r")
        term.expect(r"\r\n40 120\r\n")
        term.send("exit 5\r")
        assert term.wait() == 5
        proc = daemon.docker("exec", "-t", "tty-exec", "sh", "-c", "echo out; echo err >&2; exit 2")
        assert (proc.returncode, proc.stdout, proc.stderr) == (2, "out\nerr\n", "")  # one stream: the pty
    finally:
        daemon.docker("rm", "-f", "tty-exec")


def test_daemon_detach_keys_end_a_raw_attach(daemon: Daemon) -> None:
    """A client that does not watch the keys itself (docker-py): the daemon detaches; the stream is raw."""
    client = docker.DockerClient(base_url=daemon.host)
    container = client.containers.run("busybox:latest", "sh", tty=True, stdin_open=True, detach=True)
    try:
        with pytest.raises(docker.errors.APIError) as bad:
            container.attach_socket(params={"stdin": 1, "stdout": 1, "stream": 1, "detachKeys": "ctrl-"})
        assert bad.value.status_code == 400 and "Invalid detach keys (ctrl-) provided" in str(bad.value)
        sock = container.attach_socket(params={"stdin": 1, "stdout": 1, "stream": 1, "detachKeys": "ctrl-x,x"})
        raw = sock._sock
        raw.settimeout(20)
        raw.sendall(b"echo $((2+3))\r")
        seen = b""
        while b"\r\n5\r\n" not in seen:
            piece = raw.recv(4096)
            assert piece, seen
            seen += piece
        raw.sendall(b"\x18x")  # the detach keys: the daemon ends the attach
        while raw.recv(4096):
            pass
        sock.close()
        container.reload()
        assert container.status == "running"
    finally:
        container.remove(force=True)
        client.close()


def test_tty_container_survives_a_daemon_kill(fresh_daemon: Daemon, terminals: list[Terminal]) -> None:
    """The shim owns the pty: after kill -9 of the daemon, `docker attach` finds the same shell."""
    fresh_daemon.docker("run", "-dit", "--name", "tty-live", "busybox:latest", "sh", check=True)
    term = open_terminal(terminals, fresh_daemon, "attach", "tty-live")
    term.send("X=kept\r")
    term.expect(r"X=kept\r\n")  # the shell's echo (the CLI's terminal is raw: no local echo)
    term.send("\x10\x11")
    assert term.wait() == 1  # as with Docker: `docker attach` says so and exits 1 on the detach keys
    assert b"read escape sequence" in term.buffer
    fresh_daemon.kill9()
    fresh_daemon.start()
    again = open_terminal(terminals, fresh_daemon, "attach", "tty-live")
    again.send("echo $X\r")
    again.expect(r"\r\nkept\r\n")
    again.send("exit 7\r")
    assert again.wait() == 7
