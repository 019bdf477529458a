"""Named network namespaces: a namespace file bind-mounted at a path of our choosing (no /var/run/netns).

Blocking: call from a thread. The calling thread switches namespace only for the duration of a call and always
switches back (network namespaces are per thread), so a worker thread of ``asyncio.to_thread`` is safe to use.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _check(result: int, what: str, path: Path | str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", str(path))


@contextmanager
def entered(path: Path | str) -> Iterator[None]:
    """Run the body of the ``with`` in the network namespace at ``path`` (this thread only)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target, path)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own, path)
    finally:
        os.close(own)


def create(path: Path) -> None:
    """Create a new network namespace and keep it alive as a bind mount on ``path`` (which must not exist)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _check(_libc.unshare(CLONE_NEWNET), "unshare", path)
            src = f"/proc/self/task/{_gettid()}/ns/net".encode()
            _check(_libc.mount(src, str(path).encode(), b"none", MS_BIND, None), "bind mount netns", path)
        finally:
            _setns(own, path)
    except BaseException:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
    finally:
        os.close(own)


def _setns(fd: int, path: Path | str) -> None:
    _check(_libc.setns(fd, CLONE_NEWNET), "setns", path)


def _gettid() -> int:
    return int(os.readlink("/proc/thread-self").rsplit("/", 1)[1])


def is_mounted(path: Path) -> bool:
    target = str(path)
    try:
        with open("/proc/self/mountinfo") as fh:
            return any(line.split()[4] == target for line in fh)
    except OSError:
        return False


def delete(path: Path) -> None:
    """Unmount and remove a namespace file; a missing one is fine."""
    while is_mounted(path):
        if _libc.umount2(str(path).encode(), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err in (errno.EINVAL, errno.ENOENT):
                break
            raise OSError(err, f"umount netns: {os.strerror(err)}", str(path))
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
