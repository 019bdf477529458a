"""Daemon-side handle of the shim factory process (aiodock.shim.factory).

The factory is exec'd once with one end of a SOCK_SEQPACKET socketpair; each spawn request sends the shim's
listening control socket by SCM_RIGHTS and gets back the shim's pid. Requests are serialised.
"""

from __future__ import annotations

import array
import asyncio
import json
import os
import socket
import sys
from typing import Any

from aiodock.errors import Unavailable
from aiodock.shim.protocol import SpawnRequest

START_TIMEOUT = 30.0
SPAWN_TIMEOUT = 10.0


class ShimFactory:
    def __init__(self) -> None:
        self._proc: asyncio.subprocess.Process | None = None
        self._chan: socket.socket | None = None
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "aiodock.shim.factory", "--fd", str(theirs.fileno()),
                "--parent-pid", str(os.getpid()),
                pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._chan = ours
        try:
            async with asyncio.timeout(START_TIMEOUT):
                ready = await loop.sock_recv(ours, 4096)
            if not ready or not json.loads(ready).get("ready"):
                raise Unavailable("shim factory did not start")
        except BaseException:
            await self.close()
            raise

    async def spawn(self, request: SpawnRequest, listener: socket.socket) -> int:
        """Fork a shim serving listener; returns the shim's pid. Restarts a dead factory once."""
        async with self._lock:
            for attempt in range(2):
                if self._chan is None or (self._proc is not None and self._proc.returncode is not None):
                    await self._restart()
                try:
                    return await self._spawn(request, listener)
                except (OSError, EOFError) as exc:
                    if attempt:
                        raise Unavailable(f"shim factory: {exc}") from exc
                    await self._restart()
        raise Unavailable("shim factory: unreachable")

    async def _spawn(self, request: SpawnRequest, listener: socket.socket) -> int:
        assert self._chan is not None
        loop = asyncio.get_running_loop()
        payload = json.dumps(request.to_json()).encode()
        fds = array.array("i", [listener.fileno()])
        self._chan.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
        async with asyncio.timeout(SPAWN_TIMEOUT):
            raw = await loop.sock_recv(self._chan, 65536)
        if not raw:
            raise EOFError("shim factory closed the channel")
        answer: dict[str, Any] = json.loads(raw)
        if "error" in answer:
            raise Unavailable(str(answer["error"]))
        return int(answer["pid"])

    async def _restart(self) -> None:
        await self.close()
        await self.start()

    async def close(self) -> None:
        """Stop the factory (EOF on its channel). Shims it forked are not its children and keep running."""
        chan, self._chan = self._chan, None
        if chan is not None:
            chan.close()
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                async with asyncio.timeout(5.0):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
