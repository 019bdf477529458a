"""Hijacked attach: ``POST /containers/{id}/attach`` with ``Upgrade: tcp``, then raw frames until EOF.

aiohttp has no public API for taking over a connection after a 101 answer, so the request is written by
hand on an ``asyncio`` stream; everything stays non-blocking.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlencode

from aiodock.client.errors import ClientError, DaemonUnreachable
from aiodock.client.host import Host
from aiodock.client.stream import STDOUT, demux


async def read_exactly(reader: asyncio.StreamReader, n: int) -> bytes:
    """Like ``readexactly`` but returns the short tail at EOF instead of raising."""
    try:
        return await reader.readexactly(n)
    except asyncio.IncompleteReadError as exc:
        return exc.partial


@dataclass
class HijackedStream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    multiplexed: bool

    async def frames(self) -> AsyncIterator[tuple[int, bytes]]:
        """``(stream, data)`` pairs; a raw (TTY) stream is reported as stdout."""
        if self.multiplexed:
            async for frame in demux(lambda n: read_exactly(self.reader, n)):
                yield frame
            return
        while chunk := await self.reader.read(65536):
            yield STDOUT, chunk

    async def close_write(self) -> None:
        if self.writer.can_write_eof():
            self.writer.write_eof()
        await self.writer.drain()


async def _open(host: Host) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        if host.scheme == "unix":
            return await asyncio.open_unix_connection(host.path)
        return await asyncio.open_connection(host.hostname, host.port)
    except OSError as exc:
        raise DaemonUnreachable(host.url, str(exc)) from exc


@asynccontextmanager
async def hijack(host: Host, path: str, params: dict[str, str], user_agent: str) -> AsyncIterator[HijackedStream]:
    reader, writer = await _open(host)
    try:
        netloc = "docker" if host.scheme == "unix" else f"{host.hostname}:{host.port}"
        request = (
            f"POST {path}?{urlencode(params)} HTTP/1.1\r\n"
            f"Host: {netloc}\r\n"
            f"User-Agent: {user_agent}\r\n"
            "Content-Type: text/plain\r\n"
            "Content-Length: 0\r\n"
            "Connection: Upgrade\r\n"
            "Upgrade: tcp\r\n"
            "\r\n"
        )
        writer.write(request.encode("latin-1"))
        await writer.drain()
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise ClientError(0, "attach: the daemon closed the connection before answering") from exc
        lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError) as exc:
            raise ClientError(0, f"attach: bad status line {lines[0]!r}") from exc
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        if status not in (101, 200):
            length = int(headers.get("content-length", "0") or 0)
            body = await read_exactly(reader, length) if length else await reader.read(65536)
            raise ClientError.from_body(status, body)
        multiplexed = headers.get("content-type", "") != "application/vnd.docker.raw-stream"
        yield HijackedStream(reader, writer, multiplexed)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
