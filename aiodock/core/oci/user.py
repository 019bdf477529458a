"""Docker's ``User`` syntax resolved against an image's /etc/passwd and /etc/group.

Accepted forms: ``""`` (root), ``name``, ``uid``, ``name:group``, ``name:gid``, ``uid:group``, ``uid:gid``.
A name (or group name) must exist in the image; a numeric uid need not (its gid is then 0); a numeric gid need
not either. Supplementary groups are the ones listing the user by name, when no group was given.

The files are read inside the rootfs only: every path component is resolved relative to the rootfs, symlinks
included (an absolute or ``..`` target is clamped to the rootfs), and the final open refuses symlinks and
anything but a regular file, so a hostile image cannot make the daemon read a host file or block on a FIFO.
This is blocking I/O: call it through ``asyncio.to_thread`` from the event loop.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from aiodock.errors import InvalidArgument

MAX_ID = 2**31 - 1
_MAX_SYMLINKS = 255
_MAX_FILE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


def secure_join(root: Path, unsafe_path: str) -> Path:
    """``unsafe_path`` resolved inside ``root`` as if ``root`` were ``/`` (symlinks followed, never escaping).

    The last component is resolved too; a missing component ends the walk (the rest is appended unresolved).
    """
    root = Path(os.path.abspath(root))
    pending = [p for p in unsafe_path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            resolved.append(part)
            resolved.extend(p for p in pending if p not in ("", "."))
            break
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_SYMLINKS:
                raise InvalidArgument(f"too many levels of symbolic links resolving {unsafe_path} in the rootfs")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            pending = [p for p in target.split("/") if p not in ("", ".")] + pending
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


def _read_rootfs_file(rootfs: Path, path: str) -> str | None:
    """Contents of a regular file of the image, or None when it is missing or not a regular file."""
    target = secure_join(rootfs, path)
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks: list[bytes] = []
        size = 0
        while size < _MAX_FILE_BYTES:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks).decode("utf-8", errors="replace")
    finally:
        os.close(fd)


def _parse_id(text: str) -> int | None:
    try:
        value = int(text, 10)
    except ValueError:
        return None
    return value


def parse_passwd(text: str) -> list[PasswdEntry]:
    entries: list[PasswdEntry] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) < 4:
            continue
        uid, gid = _parse_id(fields[2]), _parse_id(fields[3])
        if uid is None or gid is None:
            continue
        entries.append(PasswdEntry(name=fields[0], uid=uid, gid=gid))
    return entries


def parse_group(text: str) -> list[GroupEntry]:
    entries: list[GroupEntry] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) < 3:
            continue
        gid = _parse_id(fields[2])
        if gid is None:
            continue
        members = tuple(m for m in fields[3].split(",") if m) if len(fields) > 3 else ()
        entries.append(GroupEntry(name=fields[0], gid=gid, members=members))
    return entries


def _check_range(value: int) -> int:
    if not 0 <= value <= MAX_ID:
        raise InvalidArgument(f"uids and gids must be in range 0-{MAX_ID}")
    return value


def resolve_user(rootfs: Path, user: str) -> tuple[int, int, list[int]]:
    """``(uid, gid, additional_gids)`` for Docker's ``User`` string inside the image at ``rootfs``."""
    user_part, _, group_part = user.partition(":")
    passwd_text = _read_rootfs_file(rootfs, "/etc/passwd")
    passwd = parse_passwd(passwd_text) if passwd_text is not None else []

    uid, gid, name = 0, 0, ""
    if user_part == "":
        user_part = "0"
    numeric_uid = _parse_id(user_part)
    match = next((e for e in passwd if e.name == user_part), None)
    if match is None and numeric_uid is not None:
        match = next((e for e in passwd if e.uid == numeric_uid), None)
    if match is not None:
        uid, gid, name = match.uid, match.gid, match.name
    elif numeric_uid is not None:
        uid = _check_range(numeric_uid)
    else:
        raise InvalidArgument(f"unable to find user {user_part}: no matching entries in passwd file")

    additional: list[int] = []
    if group_part or name:
        group_text = _read_rootfs_file(rootfs, "/etc/group")
        groups = parse_group(group_text) if group_text is not None else []
        if group_part:
            numeric_gid = _parse_id(group_part)
            group = next(
                (g for g in groups if (g.gid == numeric_gid if numeric_gid is not None else g.name == group_part)),
                None,
            )
            if group is not None:
                gid = group.gid
            elif numeric_gid is not None:
                gid = _check_range(numeric_gid)
            else:
                raise InvalidArgument(f"unable to find group {group_part}: no matching entries in group file")
        else:
            additional = list(dict.fromkeys(g.gid for g in groups if name in g.members))
    return _check_range(uid), _check_range(gid), additional
