"""TCP forwarding for one published port: accept on the host address, connect to the container, copy both ways.

The relay works on the sockets straight from reader and writer callbacks: no task, stream or transport per
connection. On the daemon's loop the callbacks are relays (proxy/loop.py), run inline as epoll reports the socket,
so a small message costs no asyncio loop turn per hop; on any other loop they are the loop's own callbacks.

A new connection is served in the accept callback itself as far as it can be: the connection to the container (a
local bridge or loopback) has usually completed by the time connect() returns, so a zero-timeout poll confirms it
and the client's first bytes, often there already, are read and passed on at once; only a connection still in
progress waits for its writer callback (with a timeout).

Each direction reads one chunk and sends it; what the receiver cannot take yet stays pending and reading that
direction pauses until it has been sent (back-pressure: nothing grows without bound). A direction that reads a
full chunk is carrying bulk data and switches to splice(2) through a pipe of its own: the bytes go from socket to
socket inside the kernel, never copied into Python objects (the pipe is the bounded pending buffer then). An EOF in
one direction is passed on as a half-close (shutdown(SHUT_WR)) once its pending data is sent, so protocols that close
their sending side first keep working; the connection is closed when both directions have ended, and an error on
either side closes both.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import select
import socket

from aiodock.log import get_logger
from aiodock.proxy.loop import Watcher, watcher

log = get_logger("aiodock.proxy.tcp")

CHUNK = 256 * 1024  # one recv() in copy mode; a read this full means bulk data: splice from then on
PIPE_SIZE = 1 << 20  # splice pipe per bulk direction (the kernel's default 64 KiB halves the rate)
CONNECT_TIMEOUT = 10.0
ACCEPT_BATCH = 64  # connections accepted per wake-up of the listening socket
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_SPLICE_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
_AGAIN = (BlockingIOError, InterruptedError)


def _splice_pipe() -> tuple[int, int]:
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.fcntl(write_end, _F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:  # over the user's pipe-buffer allowance: the default size still works
        pass
    return read_end, write_end


class _Direction:
    """One way of a relayed connection: from ``src`` to ``dst``.

    Copy mode reads into ``pending`` (bytes not yet taken by dst); splice mode moves bytes into ``pipe`` and
    ``in_pipe`` counts those not yet taken by dst. Reading stops while either is non-empty."""

    __slots__ = ("relay", "src", "dst", "pending", "pipe", "in_pipe", "eof", "done", "reading", "waiting")

    def __init__(self, relay: _Relay, src: socket.socket, dst: socket.socket) -> None:
        self.relay = relay
        self.src = src
        self.dst = dst
        self.pending = b""
        self.pipe: tuple[int, int] | None = None
        self.in_pipe = 0
        self.eof = False  # src has sent its EOF
        self.done = False  # the EOF was passed on: nothing more in this direction
        self.reading = False  # our reader callback is registered on src
        self.waiting = False  # our writer callback is registered on dst

    def start(self) -> None:
        self.relay.io.add_reader(self.src.fileno(), self.readable)
        self.reading = True

    def readable(self) -> None:
        if self.pipe is not None:
            self._splice_in()
            return
        try:
            data = self.src.recv(CHUNK)
        except _AGAIN:
            return
        except OSError:
            self.relay.close()
            return
        if not data:
            self._eof()
            return
        try:
            sent = self.dst.send(data)
        except _AGAIN:
            sent = 0
        except OSError:
            self.relay.close()
            return
        if sent < len(data):  # the receiver is slow: hold the rest, stop reading until it is sent
            self.pending = data[sent:]
            self._wait_for_dst()
        elif len(data) == CHUNK:
            try:
                self.pipe = _splice_pipe()
            except OSError:  # out of file descriptors: keep copying
                pass

    def _splice_in(self) -> None:
        assert self.pipe is not None
        try:
            got = os.splice(self.src.fileno(), self.pipe[1], PIPE_SIZE, flags=_SPLICE_FLAGS)
        except _AGAIN:
            return
        except OSError:
            self.relay.close()
            return
        if got == 0:
            self._eof()
            return
        self.in_pipe = got
        if not self._splice_out():
            self._wait_for_dst()

    def _splice_out(self) -> bool:
        """Move what is in the pipe to dst; True once the pipe is empty."""
        assert self.pipe is not None
        try:
            self.in_pipe -= os.splice(self.pipe[0], self.dst.fileno(), self.in_pipe, flags=_SPLICE_FLAGS)
        except _AGAIN:
            pass
        except OSError:
            self.relay.close()
            return False
        return self.in_pipe == 0

    def _wait_for_dst(self) -> None:
        if self.relay.closed:
            return
        self.relay.io.remove_reader(self.src.fileno())
        self.reading = False
        self.relay.io.add_writer(self.dst.fileno(), self.writable)
        self.waiting = True

    def writable(self) -> None:
        if self.pipe is not None:
            if not self._splice_out():
                return
        else:
            try:
                sent = self.dst.send(self.pending)
            except _AGAIN:
                return
            except OSError:
                self.relay.close()
                return
            self.pending = self.pending[sent:]
            if self.pending:
                return
        self.relay.io.remove_writer(self.dst.fileno())
        self.waiting = False
        if self.eof:
            self._finish()
        else:
            self.start()

    def _eof(self) -> None:
        self.eof = True
        self.relay.io.remove_reader(self.src.fileno())
        self.reading = False
        self._finish()

    def _finish(self) -> None:
        if self.pending or self.in_pipe:
            return  # writable() finishes once the rest is sent
        try:
            self.dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.done = True
        if self.relay.up.done and self.relay.down.done:
            self.relay.close()

    def stop(self) -> None:
        """Unregister our callbacks (the relay is closing): only those registered, as a lookup of an fd that is
        not registered costs asyncio an exception."""
        if self.reading:
            self.relay.io.remove_reader(self.src.fileno())
            self.reading = False
        if self.waiting:
            self.relay.io.remove_writer(self.dst.fileno())
            self.waiting = False
        if self.pipe is not None:
            os.close(self.pipe[0])
            os.close(self.pipe[1])
            self.pipe = None


class _Relay:
    """An accepted client and its connection to the container."""

    def __init__(self, forwarder: TCPForwarder, client: socket.socket) -> None:
        self.forwarder = forwarder
        self.loop = forwarder.loop
        self.io = forwarder.io
        self.client = client
        self.server = socket.socket(socket.AF_INET6 if ":" in forwarder.target[0] else socket.AF_INET,
                                    socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        self.up = _Direction(self, client, self.server)
        self.down = _Direction(self, self.server, client)
        self.closed = False
        self._timer: asyncio.TimerHandle | None = None

    def connect(self) -> None:
        self.server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = self.server.connect_ex(self.forwarder.target)
        if err == errno.EINPROGRESS and _writable_now(self.server):  # a local peer has usually answered already
            err = self.server.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err == 0:
            self._connected()
        elif err in (errno.EINPROGRESS, errno.EWOULDBLOCK):
            self.io.add_writer(self.server.fileno(), self._connect_done)
            self._timer = self.loop.call_later(CONNECT_TIMEOUT, self._connect_failed, "timed out")
        else:
            self._connect_failed(errno.errorcode.get(err, str(err)))

    def _connect_done(self) -> None:
        self.io.remove_writer(self.server.fileno())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        err = self.server.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._connect_failed(errno.errorcode.get(err, str(err)))
            return
        self._connected()

    def _connect_failed(self, why: str) -> None:
        log.debug("proxy connect failed", target=self.forwarder.target, error=why)
        self.close()

    def _connected(self) -> None:
        self.up.start()
        self.down.start()
        self.up.readable()  # the client's first bytes are often there already: no need to wait for a wake-up

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:  # still connecting
            self._timer.cancel()
            self.io.remove_writer(self.server.fileno())
        self.up.stop()
        self.down.stop()
        self.client.close()
        self.server.close()
        self.forwarder._relays.discard(self)


def _writable_now(sock: socket.socket) -> bool:
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLOUT)
    return bool(poller.poll(0))


class TCPForwarder:
    def __init__(self, sock: socket.socket, target_ip: str, target_port: int) -> None:
        self._sock = sock
        self.target = (target_ip, target_port)
        self._relays: set[_Relay] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._io: Watcher | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "TCPForwarder.start() first"
        return self._loop

    @property
    def io(self) -> Watcher:
        """Where the sockets are registered: the daemon loop's RelaySelector (inline), else the loop."""
        assert self._io is not None, "TCPForwarder.start() first"
        return self._io

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._io = watcher(self._loop)
        self._sock.setblocking(False)
        self._io.add_reader(self._sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                client, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: try again at the next wake-up
                log.warning("proxy accept failed", error=str(exc))
                return
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            relay = _Relay(self, client)
            self._relays.add(relay)
            try:
                relay.connect()
            except OSError as exc:
                log.debug("proxy connect failed", target=self.target, error=str(exc))
                relay.close()

    async def close(self) -> None:
        if self._io is not None and self._sock.fileno() >= 0:
            self._io.remove_reader(self._sock.fileno())
        self._sock.close()
        for relay in list(self._relays):
            relay.close()
        self._relays.clear()
