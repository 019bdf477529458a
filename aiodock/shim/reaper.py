"""The shim's single owner of wait(): a SIGCHLD handler reaps every child and resolves per-pid futures.

Children are started with ``spawn`` (os.posix_spawn), which registers the exit future in the same synchronous
step, before the SIGCHLD callback can run on the loop. Processes the shim does not spawn itself (the container
init, re-parented to the shim because it is a subreaper) are watched with ``watch(pid)``; an exit reaped before
anyone watched that pid is kept (bounded) so the watcher still gets it.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

PR_SET_CHILD_SUBREAPER = 36
PR_SET_NAME = 15
_UNCLAIMED_LIMIT = 1024
# Signals the shim's children get back at their defaults (Python ignores SIGPIPE, and ignored signals survive exec).
_DEFAULT_SIGNALS = frozenset(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}


@dataclass(frozen=True, slots=True)
class Exit:
    pid: int
    status: int  # Docker style: exit code, or 128 + signal number
    ns: int  # time.time_ns() when reaped


def set_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def set_process_name(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


def status_from_wait(raw: int) -> int:
    if os.WIFSIGNALED(raw):
        return 128 + os.WTERMSIG(raw)
    if os.WIFEXITED(raw):
        return os.WEXITSTATUS(raw)
    return 255


class Reaper:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiters: dict[int, asyncio.Future[Exit]] = {}
        self._unclaimed: OrderedDict[int, Exit] = OrderedDict()

    def install(self) -> None:
        self._loop.add_signal_handler(signal.SIGCHLD, self.reap)
        self.reap()  # children that exited before the handler existed

    def uninstall(self) -> None:
        self._loop.remove_signal_handler(signal.SIGCHLD)

    def reap(self) -> None:
        while True:
            try:
                pid, raw = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            exit_ = Exit(pid, status_from_wait(raw), time.time_ns())
            future = self._waiters.pop(pid, None)
            if future is not None and not future.done():
                future.set_result(exit_)
            else:
                self._unclaimed[pid] = exit_
                while len(self._unclaimed) > _UNCLAIMED_LIMIT:
                    self._unclaimed.popitem(last=False)

    def watch(self, pid: int) -> asyncio.Future[Exit]:
        """Future of pid's exit; pid must be (or have been) a child of this process."""
        future: asyncio.Future[Exit] = self._loop.create_future()
        done = self._unclaimed.pop(pid, None)
        if done is not None:
            future.set_result(done)
        else:
            self._waiters[pid] = future
        return future

    def spawn(
        self,
        argv: Sequence[str],
        *,
        stdin: int,
        stdout: int,
        stderr: int,
        env: dict[str, str] | None = None,
    ) -> tuple[int, asyncio.Future[Exit]]:
        """posix_spawn argv[0] (an absolute path) with the given fds as 0, 1, 2; returns (pid, exit future)."""
        actions = [
            (os.POSIX_SPAWN_DUP2, stdin, 0),
            (os.POSIX_SPAWN_DUP2, stdout, 1),
            (os.POSIX_SPAWN_DUP2, stderr, 2),
        ]
        pid = os.posix_spawn(
            argv[0], list(argv), env if env is not None else dict(os.environ),
            file_actions=actions, setsigdef=_DEFAULT_SIGNALS, setsigmask=(),
        )
        self._unclaimed.pop(pid, None)  # a stale exit of an earlier process with this pid
        future: asyncio.Future[Exit] = self._loop.create_future()
        self._waiters[pid] = future
        return pid, future
