"""TCP forwarding for one published port: accept on the host address, connect to the container, copy both ways.

Each direction reads at most one chunk and waits for the peer to drain it before reading the next (back-pressure:
no unbounded buffer), and an EOF in one direction is passed on as a half-close (shutdown(SHUT_WR)), so protocols
that close their sending side first keep working.
"""

from __future__ import annotations

import asyncio
import socket

from aiodock.log import get_logger

log = get_logger("aiodock.proxy.tcp")

CHUNK = 64 * 1024
CONNECT_TIMEOUT = 10.0


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof() and not writer.is_closing():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.transport.abort()


class TCPForwarder:
    def __init__(self, sock: socket.socket, target_ip: str, target_port: int) -> None:
        self._sock = sock
        self.target = (target_ip, target_port)
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, sock=self._sock, limit=CHUNK)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    up_reader, up_writer = await asyncio.open_connection(*self.target, limit=CHUNK)
            except (OSError, TimeoutError) as exc:
                log.debug("proxy connect failed", target=self.target, error=str(exc))
                writer.transport.abort()
                return
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        finally:
            writer.close()
            self._conns.discard(task)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        else:
            self._sock.close()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
