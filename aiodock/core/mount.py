"""Mount records (containerd's types.Mount) and the mount/unmount syscalls, through util-linux.

Blocking: call from a thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from aiodock.errors import InternalError

MNT_DETACH = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


@dataclass(frozen=True, slots=True)
class Mount:
    type: str  # "overlay", "bind"
    source: str
    options: tuple[str, ...] = ()


def mount_all(mounts: list[Mount] | tuple[Mount, ...], target: Path) -> None:
    """Mount each record on target, in order (an overlay snapshot is a single record)."""
    target.mkdir(parents=True, exist_ok=True)
    for m in mounts:
        args = ["mount", "-t", m.type if m.type != "bind" else "none"]
        opts = list(m.options)
        if m.type == "bind" and "bind" not in opts and "rbind" not in opts:
            opts.append("bind")
        if opts:
            args += ["-o", ",".join(opts)]
        args += [m.source, str(target)]
        proc = subprocess.run(args, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise InternalError(f"mount {m.type} on {target}: {proc.stderr.strip()}")


def unmount(target: Path, detach: bool = True) -> None:
    """Unmount every mount stacked on target; a target that is not mounted is fine."""
    while is_mountpoint(target):
        flags = MNT_DETACH if detach else 0
        if _libc.umount2(os.fsencode(str(target)), flags) != 0:
            err = ctypes.get_errno()
            if err == 22:  # EINVAL: not a mount point (raced)
                return
            raise InternalError(f"unmount {target}: {os.strerror(err)}")


def is_mountpoint(target: Path) -> bool:
    target_s = os.path.realpath(target)
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                if line.split()[4] == target_s:
                    return True
    except FileNotFoundError:
        return False
    return False


def mounts_under(prefix: Path) -> list[str]:
    """Mount points at or below prefix, deepest first (for cleanup and leak checks)."""
    pre = os.path.realpath(prefix)
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            point = line.split()[4].replace("\\040", " ")
            if point == pre or point.startswith(pre + "/"):
                found.append(point)
    return sorted(set(found), key=len, reverse=True)
