"""UDP forwarding for one published port, with a flow table: each client address gets its own connected socket
to the container, so replies go back to the right client. Idle flows expire after 90 s (as Docker's proxy).
Datagrams are dropped, never queued without bound, when a socket's send buffer is full or the table is full.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import cast

IDLE_TIMEOUT = 90.0
MAX_FLOWS = 1024
MAX_BUFFER = 256 * 1024

Addr = tuple[str, int]


def _buffered(transport: asyncio.DatagramTransport) -> int:
    """Bytes waiting in the transport's send buffer (selector transports have it; typeshed does not say so)."""
    size = getattr(transport, "get_write_buffer_size", None)
    return int(size()) if callable(size) else 0


class _Flow(asyncio.DatagramProtocol):
    def __init__(self, owner: UDPForwarder, client: Addr) -> None:
        self.owner = owner
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None
        self.last = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # 3.11's selector transport is no subclass

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        self.last = time.monotonic()
        self.owner.reply(data, self.client)

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable: keep the flow
        pass

    def send(self, data: bytes) -> None:
        self.last = time.monotonic()
        if self.transport is not None and _buffered(self.transport) < MAX_BUFFER:
            self.transport.sendto(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class UDPForwarder(asyncio.DatagramProtocol):
    def __init__(self, sock: socket.socket, target_ip: str, target_port: int, idle_timeout: float = IDLE_TIMEOUT):
        self._sock = sock
        self.target = (target_ip, target_port)
        self.idle_timeout = idle_timeout
        self._transport: asyncio.DatagramTransport | None = None
        self._flows: dict[Addr, _Flow] = {}
        self._pending: dict[Addr, list[bytes]] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, sock=self._sock)
        self._reaper = asyncio.create_task(self._reap())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        client = (addr[0], addr[1])
        flow = self._flows.get(client)
        if flow is not None:
            flow.send(data)
            return
        if client in self._pending:
            if len(self._pending[client]) < 64:
                self._pending[client].append(data)
            return
        if len(self._flows) + len(self._pending) >= MAX_FLOWS:
            return
        self._pending[client] = [data]
        task = asyncio.create_task(self._open_flow(client))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _open_flow(self, client: Addr) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, flow = await loop.create_datagram_endpoint(lambda: _Flow(self, client), remote_addr=self.target)
        except OSError:
            self._pending.pop(client, None)
            return
        self._flows[client] = flow
        for data in self._pending.pop(client, []):
            flow.send(data)

    def reply(self, data: bytes, client: Addr) -> None:
        if self._transport is not None and _buffered(self._transport) < MAX_BUFFER:
            self._transport.sendto(data, client)

    def flow_count(self) -> int:
        return len(self._flows)

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(min(self.idle_timeout / 3, 30.0))
            now = time.monotonic()
            for client, flow in list(self._flows.items()):
                if now - flow.last >= self.idle_timeout:
                    flow.close()
                    del self._flows[client]

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for flow in self._flows.values():
            flow.close()
        self._flows.clear()
        if self._transport is not None:
            self._transport.close()
        else:
            self._sock.close()
