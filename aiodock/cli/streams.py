"""Async file/stdin readers for uploads and the JSON-message printer of load/import."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any, BinaryIO

from aiodock.cli.base import CliExit, err, out

CHUNK = 1 << 20


async def read_chunks(stream: BinaryIO, close: bool = False) -> AsyncIterator[bytes]:
    """Read a binary file in a worker thread, chunk by chunk, so the loop never blocks on disk or a pipe."""
    try:
        while chunk := await asyncio.to_thread(stream.read, CHUNK):
            yield chunk
    finally:
        if close:
            await asyncio.to_thread(stream.close)


async def open_source(path: str | None) -> AsyncIterator[bytes]:
    """Chunks of ``path``, or of stdin for ``None``/``-``."""
    if path in (None, "-"):
        async for chunk in read_chunks(sys.stdin.buffer):
            yield chunk
        return
    assert path is not None
    handle = await asyncio.to_thread(open, path, "rb")
    async for chunk in read_chunks(handle, close=True):
        yield chunk


async def print_messages(messages: AsyncIterator[dict[str, Any]]) -> None:
    """Print a JSON message stream like docker's ``jsonmessage`` (no progress bars); raise on an error."""
    async for msg in messages:
        error = msg.get("errorDetail", {}).get("message") if isinstance(msg.get("errorDetail"), dict) else None
        error = error or msg.get("error")
        if error:
            err(str(error))
            raise CliExit(1)
        if "stream" in msg:
            sys.stdout.write(str(msg["stream"]))
            sys.stdout.flush()
        elif msg.get("status") and not msg.get("progressDetail"):
            prefix = f"{msg['id']}: " if msg.get("id") else ""
            out(f"{prefix}{msg['status']}")
