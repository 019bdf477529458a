"""TCP forwarding for one published port: accept on the host address, connect to the container, copy both ways.

Each accepted connection becomes two protocol objects wired to each other (no task and no stream object per
direction): what one side reads is written to the other side's transport. Back-pressure comes from the transports'
flow control: when a side's write buffer passes its high-water mark, reading from its peer pauses until the buffer
drains, so no buffer grows without bound. An EOF in one direction is passed on as a half-close (write_eof, i.e.
shutdown(SHUT_WR)), so protocols that close their sending side first keep working; the connection is closed once
both directions have ended, and an error on either side aborts both.
"""

from __future__ import annotations

import asyncio
import socket
from typing import cast

from aiodock.log import get_logger

log = get_logger("aiodock.proxy.tcp")

CONNECT_TIMEOUT = 10.0
HIGH_WATER = 256 * 1024  # per-direction write buffer before the producing side stops reading


class _Side(asyncio.Protocol):
    """One socket of a proxied connection; what it reads goes to its peer."""

    def __init__(self, forwarder: TCPForwarder) -> None:
        self._forwarder = forwarder
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.eof = False  # this side has read its EOF (and passed it on)
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=HIGH_WATER)
        self._forwarder._sides.add(self)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is None or peer.transport is None or peer.transport.is_closing():
            return False  # nothing to pass it on to: close
        if peer.eof:  # both directions ended
            peer.transport.close()
            return False
        if peer.transport.can_write_eof():
            peer.transport.write_eof()
        return True  # keep our transport open: the other direction may still carry data

    def pause_writing(self) -> None:  # our write buffer is full: stop reading what fills it
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None and not self.peer.transport.is_closing():
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._forwarder._sides.discard(self)
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            if exc is not None:
                peer.transport.abort()
            else:
                peer.transport.close()  # after what is buffered for it has been sent


class _Downstream(_Side):
    """The accepted connection: reading waits until the connection to the container is up."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.pause_reading()
        self._forwarder._spawn_connect(self)


class TCPForwarder:
    def __init__(self, sock: socket.socket, target_ip: str, target_port: int) -> None:
        self._sock = sock
        self.target = (target_ip, target_port)
        self._server: asyncio.Server | None = None
        self._sides: set[_Side] = set()
        self._connecting: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Downstream(self), sock=self._sock)

    def _spawn_connect(self, down: _Downstream) -> None:
        task = asyncio.get_running_loop().create_task(self._connect(down))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, down: _Downstream) -> None:
        loop = asyncio.get_running_loop()
        up = _Side(self)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await loop.create_connection(lambda: up, *self.target)
        except (OSError, TimeoutError) as exc:
            log.debug("proxy connect failed", target=self.target, error=str(exc))
            if down.transport is not None:
                down.transport.abort()
            return
        assert up.transport is not None and down.transport is not None
        if down.lost or down.transport.is_closing():  # the client left while we connected
            up.transport.close()
            return
        up.peer, down.peer = down, up
        down.transport.resume_reading()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        else:
            self._sock.close()
        for task in list(self._connecting):
            task.cancel()
        await asyncio.gather(*self._connecting, return_exceptions=True)
        for side in list(self._sides):
            if side.transport is not None:
                side.transport.abort()
        self._sides.clear()
