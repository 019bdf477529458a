"""runc command line, run through the shim's reaper (never asyncio subprocesses: they would race the reaper).

Errors come from runc's own log (--log <bundle>/runc-log.json --log-format json): the last "error" entry's msg,
which is the text Docker shows (e.g. 'runc create failed: unable to start container process: exec: ...').
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass

from aiodock.shim.reaper import Reaper


class RuncError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class Runc:
    binary: str
    root: str
    log_path: str

    def _base(self) -> list[str]:
        return [self.binary, "--root", self.root, "--log", self.log_path, "--log-format", "json"]

    async def run(
        self,
        reaper: Reaper,
        args: list[str],
        *,
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
        capture: bool = False,
    ) -> bytes:
        """Run runc with args; raise RuncError with runc's message when it fails; return stdout if capture."""
        log_offset = _file_size(self.log_path)
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        read_end = write_end = -1
        try:
            if capture:
                read_end, write_end = os.pipe2(os.O_CLOEXEC)
            out_fd = write_end if capture else (stdout if stdout is not None else devnull)
            _pid, exited = reaper.spawn(
                self._base() + args,
                stdin=stdin if stdin is not None else devnull,
                stdout=out_fd,
                stderr=stderr if stderr is not None else devnull,
            )
        finally:
            os.close(devnull)
            if write_end >= 0:
                os.close(write_end)
        output = b""
        if capture:
            try:
                output = await _read_all(read_end)
            finally:
                os.close(read_end)
        result = await exited
        if result.status != 0:
            message = _last_error(self.log_path, log_offset) or f"runc {args[0]} exited with status {result.status}"
            raise RuncError(message, result.status)
        return output


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _last_error(path: str, offset: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return ""
    message = ""
    for line in data.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal") and entry.get("msg"):
            message = str(entry["msg"])
    return message


async def _read_all(fd: int) -> bytes:
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    done: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        try:
            while True:
                data = os.read(fd, 65536)
                if not data:
                    loop.remove_reader(fd)
                    if not done.done():
                        done.set_result(None)
                    return
                chunks.append(data)
        except BlockingIOError:
            return

    loop.add_reader(fd, on_readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
    return b"".join(chunks)
