"""Daemon-side client of one shim's control socket (JSON lines, aiodock.shim.protocol)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiodock import errors
from aiodock.shim import protocol

CALL_TIMEOUT = 30.0
_KINDS: dict[str, type[errors.AiodockError]] = {
    "NotFound": errors.NotFound,
    "AlreadyExists": errors.AlreadyExists,
    "Conflict": errors.Conflict,
    "FailedPrecondition": errors.FailedPrecondition,
    "InvalidArgument": errors.InvalidArgument,
    "RuntimeFailure": errors.RuntimeFailure,
    "Unavailable": errors.Unavailable,
    "InternalError": errors.InternalError,
}


class ShimUnreachable(Exception):
    """The control connection could not be made or was lost (the shim may still be alive)."""


class ShimClient:
    """One connection; calls are serialised on it. Use a separate client for the long-poll wait."""

    def __init__(self, address: Path) -> None:
        self.address = address
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def connect(self, timeout: float = 5.0) -> None:
        if self._writer is not None:
            return
        try:
            async with asyncio.timeout(timeout):
                self._reader, self._writer = await asyncio.open_unix_connection(
                    str(self.address), limit=protocol.MAX_LINE
                )
        except (TimeoutError, OSError) as exc:
            raise ShimUnreachable(f"connect to shim {self.address}: {exc!r}") from exc

    async def call(self, op: str, *, timeout: float | None = CALL_TIMEOUT, **params: Any) -> dict[str, Any]:
        """Send one request; raise the aiodock error the shim named, or ShimUnreachable."""
        async with self._lock:
            await self.connect()
            assert self._reader is not None and self._writer is not None
            try:
                self._writer.write(protocol.encode({"op": op, **params}))
                await self._writer.drain()
                async with asyncio.timeout(timeout):
                    line = await self._reader.readline()
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                await self._drop()
                raise ShimUnreachable(f"shim {self.address} {op}: {exc!r}") from exc
            except asyncio.CancelledError:
                await self._drop()
                raise
            if not line:
                await self._drop()
                raise ShimUnreachable(f"shim {self.address} {op}: connection closed")
        response = protocol.decode(line)
        if "error" in response:
            kind = _KINDS.get(str(response.get("kind")), errors.InternalError)
            raise kind(str(response["error"]))
        response.pop("_stop", None)
        return response

    async def _drop(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, asyncio.CancelledError):
                pass

    async def close(self) -> None:
        await self._drop()
