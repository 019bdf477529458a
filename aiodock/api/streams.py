"""Wire formats of streamed answers: stdcopy framing, JSON progress lines, request bodies to temp files."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from aiodock.engine.backend import OutputChunk
from aiodock.logs import stdcopy

MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
RAW = "application/vnd.docker.raw-stream"
COPY_CHUNK = 64 * 1024


def content_type(tty: bool) -> str:
    return RAW if tty else MULTIPLEXED


def rfc3339_nano(moment: datetime) -> str:
    """Go's RFC3339NanoFixed as the daemon prefixes log lines with it."""
    utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}000Z"


def frame(chunk: OutputChunk, tty: bool, timestamps: bool = False) -> bytes:
    """One chunk as it goes on the wire: raw for a TTY, else the 8-byte stdcopy header then the payload."""
    data = chunk.data
    if timestamps and chunk.time is not None:
        data = rfc3339_nano(chunk.time).encode() + b" " + data
    if tty:
        return data
    return stdcopy.frame(stdcopy.STREAM_NUMBERS.get(chunk.stream, stdcopy.STDOUT), data)


async def framed(chunks: AsyncIterator[OutputChunk], tty: bool, timestamps: bool = False) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        if chunk.data:
            yield frame(chunk, tty, timestamps)


def json_line(message: dict[str, Any]) -> bytes:
    """One message of Docker's JSON progress stream (streamformatter uses CRLF)."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\r\n"


def error_line(message: str) -> bytes:
    return json_line({"errorDetail": {"message": message}, "error": message})


async def start_stream(request: web.Request, content_type: str, status: int = 200) -> web.StreamResponse:
    """Send status and headers at once: clients see the stream open before any payload exists."""
    response = web.StreamResponse(status=status, headers={"Content-Type": content_type})
    await response.prepare(request)
    return response


async def body_to_file(request: web.Request, dest: Path) -> None:
    """Stream the request body into ``dest``; file writes run off the event loop."""
    handle = await asyncio.to_thread(open, dest, "wb")
    try:
        async for data in request.content.iter_chunked(COPY_CHUNK):
            await asyncio.to_thread(handle.write, data)
    finally:
        await asyncio.to_thread(handle.close)


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    """Read ``path`` in chunks, each read off the event loop."""
    handle = await asyncio.to_thread(open, path, "rb")
    try:
        while data := await asyncio.to_thread(handle.read, COPY_CHUNK):
            yield data
    finally:
        await asyncio.to_thread(handle.close)


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON answer as Docker sends it: Content-Type exactly "application/json" (the docker CLI compares it
    literally before reading an error's "message"), and a trailing newline like Go's json.Encoder."""
    return web.Response(body=json.dumps(data).encode() + b"\n", status=status, content_type="application/json")
