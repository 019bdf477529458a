"""Container stdio inside the shim.

The container's stdout/stderr are pipes the shim reads. Each chunk goes (a) to the json-file log, written by the
shim so the container never blocks while the daemon is away, and (b) to the init-stdout / init-stderr FIFOs,
opened O_RDWR|O_NONBLOCK so there is never EPIPE and never a blocked shim: data is dropped when a FIFO is full.
stdin (when asked for) is a pipe fed from the init-stdin FIFO; close_stdin() gives the container EOF once what
was already written to the FIFO has reached the container.
With a terminal (process.terminal), runc hands the shim the pty master (console socket): the master's output is
the container's stdout, and stdin is written to the master. resize() sets the master's window size.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import stat
import struct
import sys
import termios
from collections.abc import Callable
from pathlib import Path

from aiodock.logs.jsonfile import JsonFileWriter
from aiodock.shim.protocol import STDERR_FIFO, STDIN_FIFO, STDOUT_FIFO

_READ_SIZE = 65536
_READS_PER_WAKEUP = 8


def make_fifo(path: str) -> None:
    try:
        os.mkfifo(path, 0o600)
    except FileExistsError:
        if not stat.S_ISFIFO(os.stat(path).st_mode):
            raise


def _log(message: str) -> None:
    print(f"shim io: {message}", file=sys.stderr, flush=True)


class _OutputStream:
    def __init__(self, io: ContainerIO, name: str, read_fd: int, fifo_fd: int) -> None:
        self.io = io
        self.name = name
        self.read_fd = read_fd
        self.fifo_fd = fifo_fd
        self.closed = asyncio.Event()

    def on_readable(self) -> None:
        for _ in range(_READS_PER_WAKEUP):
            try:
                data = os.read(self.read_fd, _READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.EIO:  # EIO: a pty master whose slave side is all closed
                    _log(f"read {self.name}: {exc}")
                data = b""
            if not data:
                self.finish()
                return
            self.io.deliver(self.name, data, self.fifo_fd)

    def finish(self) -> None:
        if self.closed.is_set():
            return
        self.io.loop.remove_reader(self.read_fd)
        os.close(self.read_fd)
        self.io.end_stream(self.name)
        self.closed.set()


class ContainerIO:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        bundle: str,
        log_path: str | None,
        log_max_size: int | None,
        log_max_files: int,
        stdin: bool,
        terminal: bool = False,
    ) -> None:
        self.loop = loop
        self.bundle = bundle
        self.log_path = log_path
        self.log_max_size = log_max_size
        self.log_max_files = log_max_files
        self.want_stdin = stdin
        self.terminal = terminal
        self.console_fd = -1  # our own dup of the pty master (resize)
        self._stdin_closing = False
        self.log: JsonFileWriter | None = None
        self._streams: list[_OutputStream] = []
        self._owned: list[int] = []  # fds to close at the end
        self._child_fds: list[int] = []  # ends the container gets; closed once runc create has them
        self._pending: dict[str, tuple[int, int]] = {}
        self._stdin_fifo = -1
        self._stdin_pipe = -1
        self._stdin_buffer = b""
        self.child_stdin = -1
        self.child_stdout = -1
        self.child_stderr = -1

    def prepare(self) -> None:
        """Make the FIFOs and the pipes; child_* are the fds to hand to runc create."""
        for name in (STDIN_FIFO, STDOUT_FIFO, STDERR_FIFO):
            make_fifo(os.path.join(self.bundle, name))
        if self.terminal:  # runc's own stdio; the container gets the pty slave
            for _ in range(3):
                self._child_fds.append(os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
            self.child_stdin, self.child_stdout, self.child_stderr = self._child_fds
            return
        for name in ("stdout", "stderr"):
            read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
            self._child_fds.append(write_fd)
            self._pending[name] = (read_fd, write_fd)
        self.child_stdout = self._pending["stdout"][1]
        self.child_stderr = self._pending["stderr"][1]
        if self.want_stdin:
            read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
            self._child_fds.append(read_fd)
            self._stdin_pipe = write_fd
            self.child_stdin = read_fd
        else:
            self.child_stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            self._child_fds.append(self.child_stdin)

    def start(self, master: int = -1) -> None:
        """runc create succeeded: drop our copies of the child ends, start copying (master: the pty master)."""
        self._close_child_fds()
        if self.log_path:
            self.log = JsonFileWriter(Path(self.log_path), self.log_max_size, self.log_max_files)
        if master >= 0:
            os.set_blocking(master, False)
            self.console_fd = os.dup(master)
            self._owned.append(self.console_fd)
            self._pending["stdout"] = (master, -1)
            if self.want_stdin:
                self._stdin_pipe = os.dup(master)
        for name, fifo in (("stdout", STDOUT_FIFO), ("stderr", STDERR_FIFO)):
            if name not in self._pending:
                continue
            read_fd, _ = self._pending[name]
            os.set_blocking(read_fd, False)
            fifo_fd = os.open(os.path.join(self.bundle, fifo), os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            self._owned.append(fifo_fd)
            stream = _OutputStream(self, name, read_fd, fifo_fd)
            self._streams.append(stream)
            self.loop.add_reader(read_fd, stream.on_readable)
        self._pending.clear()
        if self._stdin_pipe >= 0:
            os.set_blocking(self._stdin_pipe, False)
            self._stdin_fifo = os.open(os.path.join(self.bundle, STDIN_FIFO),
                                       os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            self.loop.add_reader(self._stdin_fifo, self._on_stdin)

    def abandon(self) -> None:
        """runc create failed: close everything without logging runc's own complaints."""
        self._close_child_fds()
        for read_fd, _ in self._pending.values():
            os.close(read_fd)
        self._pending.clear()
        self._hard_close_stdin()

    def _close_child_fds(self) -> None:
        for fd in self._child_fds:
            os.close(fd)
        self._child_fds.clear()

    def deliver(self, stream: str, data: bytes, fifo_fd: int) -> None:
        if self.log is not None:
            try:
                self.log.write(stream, data)
            except OSError as exc:
                _log(f"write log: {exc}")
        try:
            os.write(fifo_fd, data)
        except (BlockingIOError, BrokenPipeError):
            pass  # nobody reads and the FIFO is full: drop, like a full attach buffer

    def end_stream(self, stream: str) -> None:
        if self.log is not None:
            self.log.end_stream(stream)

    async def drained(self, timeout: float) -> None:
        """Wait until stdout and stderr reached EOF (bounded: daemonised grandchildren may hold them)."""
        waits = [asyncio.ensure_future(s.closed.wait()) for s in self._streams]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=timeout)
            for task in pending:
                task.cancel()
        for stream in self._streams:
            if not stream.closed.is_set():
                stream.on_readable()  # what is buffered now
                stream.finish()

    def sync(self) -> None:
        if self.log is not None:
            self.log.sync()

    def _on_stdin(self) -> None:
        try:
            data = os.read(self._stdin_fifo, _READ_SIZE)
        except BlockingIOError:
            return
        if not data or self._stdin_pipe < 0:
            return
        self._stdin_buffer += data
        self._flush_stdin()

    def _flush_stdin(self) -> None:
        if self._stdin_pipe < 0:
            return
        try:
            written = os.write(self._stdin_pipe, self._stdin_buffer) if self._stdin_buffer else 0
        except BlockingIOError:
            written = 0
        except OSError:  # EPIPE: the container closed its stdin; EIO: the pty is gone
            self._hard_close_stdin()
            return
        self._stdin_buffer = self._stdin_buffer[written:]
        if self._stdin_buffer:
            # The container reads slower than we get input: stop reading the FIFO until the pipe drains.
            if self._stdin_fifo >= 0:
                self.loop.remove_reader(self._stdin_fifo)
            self.loop.add_writer(self._stdin_pipe, self._on_stdin_writable)
        elif self._stdin_closing:
            self._hard_close_stdin()

    def _on_stdin_writable(self) -> None:
        self.loop.remove_writer(self._stdin_pipe)
        self._flush_stdin()
        if not self._stdin_buffer and self._stdin_pipe >= 0 and self._stdin_fifo >= 0:
            self.loop.add_reader(self._stdin_fifo, self._on_stdin)

    def close_stdin(self) -> None:
        """EOF for the container's stdin, after what the FIFO already holds (with a terminal: stop feeding)."""
        if self._stdin_fifo >= 0:
            self.loop.remove_reader(self._stdin_fifo)
            while True:
                try:
                    data = os.read(self._stdin_fifo, _READ_SIZE)
                except OSError:
                    break
                if not data:
                    break
                self._stdin_buffer += data
            os.close(self._stdin_fifo)
            self._stdin_fifo = -1
        self._stdin_closing = True
        if self._stdin_pipe >= 0:
            self.loop.remove_writer(self._stdin_pipe)
        self._flush_stdin()

    def _hard_close_stdin(self) -> None:
        if self._stdin_fifo >= 0:
            self.loop.remove_reader(self._stdin_fifo)
            os.close(self._stdin_fifo)
            self._stdin_fifo = -1
        if self._stdin_pipe >= 0:
            self.loop.remove_writer(self._stdin_pipe)
            os.close(self._stdin_pipe)
            self._stdin_pipe = -1
        self._stdin_buffer = b""

    def resize(self, width: int, height: int) -> None:
        if self.console_fd < 0:
            raise OSError(errno.ENOTTY, "the container has no terminal")
        set_window_size(self.console_fd, width, height)

    def close(self) -> None:
        for stream in self._streams:
            stream.finish()
        self._hard_close_stdin()
        if self.log is not None:
            try:
                self.log.close()
            except OSError as exc:
                _log(f"close log: {exc}")
            self.log = None
        for fd in self._owned:
            os.close(fd)
        self._owned.clear()


def set_window_size(fd: int, width: int, height: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


class Pump:
    """Copy src to dst on the shim's loop, never blocking it: while dst is full, src is not read (back-pressure).
    on_done runs once, when src reached EOF (or EIO, a pty whose slave is closed) and all is written, or when
    dst failed. The fds stay the caller's."""

    def __init__(self, loop: asyncio.AbstractEventLoop, src: int, dst: int, on_done: Callable[[], None]) -> None:
        self.loop = loop
        self.src = src
        self.dst = dst
        self._on_done = on_done
        self._buffer = b""
        self._eof = False
        self.done = False
        os.set_blocking(src, False)
        os.set_blocking(dst, False)
        loop.add_reader(src, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.src, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._eof = True
            self.loop.remove_reader(self.src)
            if not self._buffer:
                self.finish()
            return
        self._buffer += data
        self._flush()

    def _flush(self) -> None:
        try:
            written = os.write(self.dst, self._buffer)
        except BlockingIOError:
            written = 0
        except OSError:
            self.finish()
            return
        self._buffer = self._buffer[written:]
        if self._buffer:
            self.loop.remove_reader(self.src)
            self.loop.add_writer(self.dst, self._writable)

    def _writable(self) -> None:
        self.loop.remove_writer(self.dst)
        self._flush()
        if self.done or self._buffer:
            return
        if self._eof:
            self.finish()
        else:
            self.loop.add_reader(self.src, self._readable)

    def end_input(self) -> None:
        """No more input than what src holds now (a client's CloseIO): read that, deliver it, then finish."""
        if self.done or self._eof:
            return
        self.loop.remove_reader(self.src)
        while True:
            try:
                data = os.read(self.src, _READ_SIZE)
            except OSError:  # EAGAIN: nothing more now
                break
            if not data:
                break
            self._buffer += data
        self._eof = True
        if self._buffer:
            self._flush()
        if not self._buffer:
            self.finish()

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        self.loop.remove_reader(self.src)
        self.loop.remove_writer(self.dst)
        self._buffer = b""
        self._on_done()
