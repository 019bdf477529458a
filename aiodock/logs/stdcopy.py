"""Docker's stream multiplexing (``stdcopy``): an 8-byte header before each chunk of a non-TTY stream.

Header: stream byte (0 stdin, 1 stdout, 2 stderr, 3 systemerr), three zero bytes, big-endian uint32 length.
"""

from __future__ import annotations

import struct

from aiodock.errors import InvalidArgument

STDIN = 0
STDOUT = 1
STDERR = 2
SYSTEMERR = 3

HEADER_SIZE = 8
MAX_FRAME_DATA = 2**32 - 1
_HEADER = struct.Struct(">BxxxI")

STREAM_NUMBERS: dict[str, int] = {"stdin": STDIN, "stdout": STDOUT, "stderr": STDERR}


def frame(stream: int, data: bytes) -> bytes:
    """``data`` framed for ``stream`` (split into several frames only beyond 4 GiB)."""
    if stream not in (STDIN, STDOUT, STDERR, SYSTEMERR):
        raise InvalidArgument(f"Unrecognized stream: {stream}")
    if len(data) <= MAX_FRAME_DATA:
        return _HEADER.pack(stream, len(data)) + data
    parts = []
    for start in range(0, len(data), MAX_FRAME_DATA):
        chunk = data[start : start + MAX_FRAME_DATA]
        parts.append(_HEADER.pack(stream, len(chunk)) + chunk)
    return b"".join(parts)


class Demuxer:
    """Incremental parser: ``feed`` bytes as they arrive, get back the complete ``(stream, data)`` frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a complete frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        frames: list[tuple[int, bytes]] = []
        while len(self._buffer) >= HEADER_SIZE:
            stream, length = _HEADER.unpack_from(self._buffer)
            if stream not in (STDIN, STDOUT, STDERR, SYSTEMERR):
                raise InvalidArgument(f"Unrecognized input header: {stream}")
            if len(self._buffer) < HEADER_SIZE + length:
                break
            frames.append((stream, bytes(self._buffer[HEADER_SIZE : HEADER_SIZE + length])))
            del self._buffer[: HEADER_SIZE + length]
        return frames

    def close(self) -> None:
        """End of input: a torn frame left over is an error."""
        if self._buffer:
            raise InvalidArgument(f"Unexpected EOF in multiplexed stream: {len(self._buffer)} bytes left")
