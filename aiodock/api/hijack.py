"""Docker's HTTP "hijack": after "101 UPGRADED" the connection is a raw bidirectional byte stream.

aiohttp only upgrades to websockets, so the attach route prepares a 101 response (1xx responses have no body,
so aiohttp adds neither Content-Length nor chunked encoding), then takes the transport over from aiohttp's
protocol with ``transport.set_protocol``. From then on this protocol sees the client's bytes (stdin) and its
half-close (``eof_received`` keeps the write side open so output still flows), and writes go straight to the
transport with the transport's own flow control. ``connection_lost`` is forwarded to aiohttp's protocol so
the server's connection bookkeeping stays right.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque

from aiohttp import web

_READ_LIMIT = 1 << 20  # pause reading when this much client input waits unread


class HijackedConnection(asyncio.Protocol):
    def __init__(self, transport: asyncio.Transport, previous: asyncio.BaseProtocol) -> None:
        self._transport = transport
        self._previous = previous
        self._incoming: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False
        self._data_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tls = transport.get_extra_info("sslcontext") is not None

    # -- asyncio.Protocol ------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self._incoming.append(data)
        self._buffered += len(data)
        if self._buffered > _READ_LIMIT:
            self._transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        """The client closed its write side (stdin done): keep ours open for the remaining output."""
        self._eof = True
        self._wake_reader()
        return not self._tls  # asyncio's TLS transport cannot half-close

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._wake_reader()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        if not self._lost.done():
            self._lost.set_result(None)
        self._previous.connection_lost(exc)

    def pause_writing(self) -> None:  # the transport calls resume_writing once drained below its low mark
        pass

    def resume_writing(self) -> None:
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # -- API for the route ---------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._lost.done()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._lost)

    async def read(self) -> bytes:
        """Next bytes from the client; b"" once it half-closed or went away."""
        while not self._incoming:
            if self._eof:
                return b""
            self._data_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._data_waiter
            finally:
                self._data_waiter = None
        data = self._incoming.popleft()
        self._buffered -= len(data)
        if self._buffered <= _READ_LIMIT and not self.closed and not self._transport.is_reading():
            self._transport.resume_reading()
        return data

    async def write(self, data: bytes) -> None:
        if self.closed or self._transport.is_closing():
            raise ConnectionResetError("connection closed by the client")
        self._transport.write(data)
        _low, high = self._transport.get_write_buffer_limits()
        if self._transport.get_write_buffer_size() > high:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None
            if self.closed:
                raise ConnectionResetError("connection closed by the client")

    def close(self) -> None:
        """Flush what was written, then close (the client reads EOF)."""
        self._transport.close()

    def _wake_reader(self) -> None:
        if self._data_waiter is not None and not self._data_waiter.done():
            self._data_waiter.set_result(None)


# Live hijacked connections of an application, closed on shutdown (aiohttp does not know about them).
HIJACKED: web.AppKey[weakref.WeakSet[HijackedConnection]] = web.AppKey("hijacked")


def setup(app: web.Application) -> None:
    app[HIJACKED] = weakref.WeakSet()
    app.on_shutdown.append(_close_all)


async def _close_all(app: web.Application) -> None:
    live: weakref.WeakSet[HijackedConnection] = app[HIJACKED]
    for connection in list(live):
        connection.close()


def wants_upgrade(request: web.Request) -> bool:
    connection = {token.strip().lower() for token in request.headers.get("Connection", "").split(",")}
    return "upgrade" in connection and request.headers.get("Upgrade", "").strip().lower() == "tcp"


async def upgrade(request: web.Request, content_type: str) -> tuple[web.StreamResponse, HijackedConnection]:
    """Send "101 UPGRADED" and take the connection over. Return the response for the handler to return."""
    response = web.StreamResponse(status=101, reason="UPGRADED", headers={
        "Content-Type": content_type, "Connection": "Upgrade", "Upgrade": "tcp"})
    response.force_close()  # aiohttp must not serve another request on this connection
    await response.prepare(request)
    transport = request.transport
    if not isinstance(transport, asyncio.Transport) or transport.is_closing():
        raise ConnectionResetError("connection closed by the client")
    previous = transport.get_protocol()
    connection = HijackedConnection(transport, previous)
    transport.set_protocol(connection)
    request.app[HIJACKED].add(connection)
    # Bytes aiohttp's parser kept after an upgrade request (a client that did not wait for the 101).
    tail = getattr(previous, "_message_tail", b"")
    if tail:
        connection.data_received(tail)
    if not transport.is_reading():
        transport.resume_reading()
    return response, connection
