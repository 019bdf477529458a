"""TCP forwarding for one published port: accept on the host address, connect to the container, copy both ways.

The relay works on the sockets straight from the event loop's reader and writer callbacks: no task, stream or
transport per connection, so a new connection costs a few callbacks rather than several loop turns. Each direction
reads one chunk and sends it; what the receiver cannot take yet stays in a single pending buffer and reading that
direction pauses until it has been sent (back-pressure: nothing grows without bound). An EOF in one direction is
passed on as a half-close (shutdown(SHUT_WR)) once its pending data is sent, so protocols that close their sending
side first keep working; the connection is closed when both directions have ended, and an error on either side
closes both.
"""

from __future__ import annotations

import asyncio
import errno
import socket

from aiodock.log import get_logger

log = get_logger("aiodock.proxy.tcp")

CHUNK = 256 * 1024
CONNECT_TIMEOUT = 10.0
ACCEPT_BATCH = 64  # connections accepted per wake-up of the listening socket


class _Direction:
    """One way of a relayed connection: from ``src`` to ``dst``."""

    __slots__ = ("relay", "src", "dst", "pending", "eof", "done")

    def __init__(self, relay: _Relay, src: socket.socket, dst: socket.socket) -> None:
        self.relay = relay
        self.src = src
        self.dst = dst
        self.pending = b""  # read from src, not yet taken by dst
        self.eof = False  # src has sent its EOF
        self.done = False  # the EOF was passed on: nothing more in this direction

    def start(self) -> None:
        self.relay.loop.add_reader(self.src.fileno(), self.readable)

    def readable(self) -> None:
        try:
            data = self.src.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.relay.close()
            return
        if not data:
            self.eof = True
            self.relay.loop.remove_reader(self.src.fileno())
            self._finish()
            return
        try:
            sent = self.dst.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.relay.close()
            return
        if sent < len(data):  # the receiver is slow: hold the rest, stop reading until it is sent
            self.pending = data[sent:]
            self.relay.loop.remove_reader(self.src.fileno())
            self.relay.loop.add_writer(self.dst.fileno(), self.writable)

    def writable(self) -> None:
        try:
            sent = self.dst.send(self.pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.relay.close()
            return
        self.pending = self.pending[sent:]
        if self.pending:
            return
        self.relay.loop.remove_writer(self.dst.fileno())
        if self.eof:
            self._finish()
        else:
            self.relay.loop.add_reader(self.src.fileno(), self.readable)

    def _finish(self) -> None:
        if self.pending:
            return  # writable() finishes once the rest is sent
        try:
            self.dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.done = True
        if self.relay.up.done and self.relay.down.done:
            self.relay.close()


class _Relay:
    """An accepted client and its connection to the container."""

    def __init__(self, forwarder: TCPForwarder, client: socket.socket) -> None:
        self.forwarder = forwarder
        self.loop = forwarder.loop
        self.client = client
        self.server = socket.socket(socket.AF_INET6 if ":" in forwarder.target[0] else socket.AF_INET,
                                    socket.SOCK_STREAM)
        self.up = _Direction(self, client, self.server)
        self.down = _Direction(self, self.server, client)
        self.closed = False
        self._timer: asyncio.TimerHandle | None = None

    def connect(self) -> None:
        self.server.setblocking(False)
        self.server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = self.server.connect_ex(self.forwarder.target)
        if err == 0:
            self._connected()
        elif err in (errno.EINPROGRESS, errno.EWOULDBLOCK):
            self.loop.add_writer(self.server.fileno(), self._connect_done)
            self._timer = self.loop.call_later(CONNECT_TIMEOUT, self._connect_failed, "timed out")
        else:
            self._connect_failed(errno.errorcode.get(err, str(err)))

    def _connect_done(self) -> None:
        self.loop.remove_writer(self.server.fileno())
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

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        for sock in (self.client, self.server):
            fd = sock.fileno()
            if fd >= 0:
                self.loop.remove_reader(fd)
                self.loop.remove_writer(fd)
            sock.close()
        self.forwarder._relays.discard(self)


class TCPForwarder:
    def __init__(self, sock: socket.socket, target_ip: str, target_port: int) -> None:
        self._sock = sock
        self.target = (target_ip, target_port)
        self._relays: set[_Relay] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "TCPForwarder.start() first"
        return self._loop

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock.setblocking(False)
        self._loop.add_reader(self._sock.fileno(), self._accept)

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
        if self._loop is not None and self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        for relay in list(self._relays):
            relay.close()
        self._relays.clear()
