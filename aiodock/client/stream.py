"""Docker's stdcopy framing: an 8-byte header (stream type, 3 zero bytes, big-endian uint32 length) per frame."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Awaitable, Callable

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3
HEADER = struct.Struct(">BxxxI")

ReadExactly = Callable[[int], Awaitable[bytes]]


async def demux(read_exactly: ReadExactly) -> AsyncIterator[tuple[int, bytes]]:
    """Yield ``(stream, payload)`` frames until a clean EOF; ``read_exactly`` returns b"" at EOF."""
    while True:
        header = await read_exactly(HEADER.size)
        if len(header) < HEADER.size:
            return
        stream, length = HEADER.unpack(header)
        payload = await read_exactly(length) if length else b""
        if stream == SYSTEMERR:
            raise RuntimeError(payload.decode("utf-8", "replace").strip())
        yield stream, payload
        if len(payload) < length:
            return


def encode_frame(stream: int, payload: bytes) -> bytes:
    return HEADER.pack(stream, len(payload)) + payload
