"""Files in a container's root: scoped path resolution, tar out (GET archive), tar in (PUT archive), copy-up.

Every path a client names is resolved inside the container's root only. The walk holds a directory fd per
component and opens each next component with O_NOFOLLOW relative to it; a symlink is read and its target walked
again from the root (absolute) or from the current directory (relative), with ``..`` clamped at the root. No
``..``, absolute symlink or symlink swapped in during the copy can lead outside: nothing is ever opened by a host
path below the root. Blocking: async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import json
import os
import posixpath
import stat
import tarfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from aiodock.core.oci.user import resolve_user
from aiodock.errors import InternalError, InvalidArgument, NotFound

if TYPE_CHECKING:
    from aiodock.engine.containers import ContainerService

MAX_SYMLINKS = 40
CHUNK = 1 << 20
_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

# Go's os.FileMode bits, as Docker's X-Docker-Container-Path-Stat carries them.
_GO_DIR = 1 << 31
_GO_SYMLINK = 1 << 27
_GO_DEVICE = 1 << 26
_GO_PIPE = 1 << 25
_GO_SOCKET = 1 << 24
_GO_SETUID = 1 << 23
_GO_SETGID = 1 << 22
_GO_CHARDEV = 1 << 21
_GO_STICKY = 1 << 20


class Breakout(InvalidArgument):
    """A tar entry that would land outside the extraction directory (HTTP 400)."""


@dataclass(frozen=True, slots=True)
class PathStat:
    name: str
    size: int
    mode: int  # Go os.FileMode
    mtime: str
    link_target: str

    def header(self) -> str:
        doc = {"name": self.name, "size": self.size, "mode": self.mode, "mtime": self.mtime,
               "linkTarget": self.link_target}
        return base64.b64encode(json.dumps(doc).encode()).decode()

    @property
    def is_dir(self) -> bool:
        return bool(self.mode & _GO_DIR)


def go_file_mode(st_mode: int) -> int:
    mode = stat.S_IMODE(st_mode) & 0o777
    if stat.S_ISDIR(st_mode):
        mode |= _GO_DIR
    elif stat.S_ISLNK(st_mode):
        mode |= _GO_SYMLINK
    elif stat.S_ISFIFO(st_mode):
        mode |= _GO_PIPE
    elif stat.S_ISSOCK(st_mode):
        mode |= _GO_SOCKET
    elif stat.S_ISCHR(st_mode):
        mode |= _GO_DEVICE | _GO_CHARDEV
    elif stat.S_ISBLK(st_mode):
        mode |= _GO_DEVICE
    if st_mode & stat.S_ISUID:
        mode |= _GO_SETUID
    if st_mode & stat.S_ISGID:
        mode |= _GO_SETGID
    if st_mode & stat.S_ISVTX:
        mode |= _GO_STICKY
    return mode


def _go_time(seconds: float, nanos: int) -> str:
    moment = datetime.fromtimestamp(int(seconds), UTC)
    frac = f"{nanos % 1_000_000_000:09d}".rstrip("0")
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


# ---- scoped resolution ---------------------------------------------------------------------------------------


class Root:
    """An open container root directory. Use as a context manager; every fd it hands out is the caller's."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> Root:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def resolve(self, path: str, *, follow_last: bool = True, create_dirs: bool = False) -> tuple[int, str]:
        """An O_PATH fd of ``path`` inside the root and its resolved absolute path in the container.

        FileNotFoundError / NotADirectoryError as the OS raises them; ELOOP after MAX_SYMLINKS links.
        """
        parts = [p for p in path.split("/") if p not in ("", ".")]
        stack: list[tuple[int, str]] = [(os.dup(self.fd), "")]
        links = 0
        try:
            while parts:
                comp = parts.pop(0)
                if comp == "..":
                    if len(stack) > 1:
                        os.close(stack.pop()[0])
                    continue
                cur_fd, cur_path = stack[-1]
                try:
                    fd = os.open(comp, _PATH, dir_fd=cur_fd)
                except FileNotFoundError:
                    if not create_dirs:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(comp, 0o755, dir_fd=cur_fd)
                    fd = os.open(comp, _PATH, dir_fd=cur_fd)
                st = os.fstat(fd)
                if stat.S_ISLNK(st.st_mode) and (parts or follow_last):
                    target = os.readlink(comp, dir_fd=cur_fd)
                    os.close(fd)
                    links += 1
                    if links > MAX_SYMLINKS:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                    if target.startswith("/"):
                        while len(stack) > 1:
                            os.close(stack.pop()[0])
                    parts = [p for p in target.split("/") if p not in ("", ".")] + parts
                    continue
                if parts and not stat.S_ISDIR(st.st_mode):
                    os.close(fd)
                    raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
                stack.append((fd, f"{cur_path}/{comp}"))
            fd, resolved = stack.pop()
            return fd, resolved or "/"
        finally:
            for fd, _ in stack:
                os.close(fd)

    def resolve_parent(self, path: str, *, create_dirs: bool = False) -> tuple[int, str, str]:
        """(O_PATH fd of the parent directory, its resolved path, the base name) of ``path``."""
        clean = posixpath.normpath("/" + path)
        parent, base = posixpath.split(clean)
        fd, resolved = self.resolve(parent, create_dirs=create_dirs)
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            os.close(fd)
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
        return fd, resolved, base


def _dir_fd(fd: int) -> int:
    """A readable directory fd for an O_PATH directory fd."""
    return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)


def _split_request(path: str) -> tuple[str, str, str]:
    """Docker's ResolvePath: (absolute path keeping a trailing "/" or "/.", its dir part, its base part)."""
    abs_path = posixpath.normpath("/" + path)
    if path.endswith("/.") or path == ".":
        abs_path = abs_path.rstrip("/") + "/."
    elif path.endswith("/") and abs_path != "/":
        abs_path += "/"
    dir_part, base = abs_path.rsplit("/", 1)
    return abs_path, dir_part or "/", base


def stat_path(root: Root, path: str) -> tuple[PathStat, str]:
    """Docker's StatPath: lstat of the last element (its dir resolved in scope); a symlink's linkTarget is the
    fully resolved path. Returns the stat and the resolved path (the symlink itself when it is one)."""
    abs_path, dir_part, base = _split_request(path)
    name = posixpath.basename(abs_path.rstrip("/")) or "/"
    if abs_path.endswith("/."):
        name = "."
    if base in ("", "."):
        fd, resolved = root.resolve(dir_part)
    else:
        pfd, presolved = root.resolve(dir_part)
        try:
            if not stat.S_ISDIR(os.fstat(pfd).st_mode):
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            fd = os.open(base, _PATH, dir_fd=pfd)
        finally:
            os.close(pfd)
        resolved = posixpath.join(presolved, base)
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    link_target = ""
    if stat.S_ISLNK(st.st_mode):
        lfd, link_target = root.resolve(abs_path)
        os.close(lfd)
    return PathStat(name, st.st_size, go_file_mode(st.st_mode), _go_time(st.st_mtime, st.st_mtime_ns),
                    link_target), resolved


# ---- tar out --------------------------------------------------------------------------------------------------


class _Exact:
    """Exactly ``size`` bytes of ``fh``: a file that shrinks while read is padded with zeros."""

    def __init__(self, fh: IO[bytes], size: int) -> None:
        self.fh = fh
        self.left = size

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self.left:
            n = self.left
        data = self.fh.read(n) if n else b""
        if len(data) < n:
            data += b"\0" * (n - len(data))
        self.left -= len(data)
        return data


def write_tar(root: Root, path: str, out: IO[bytes]) -> None:
    """Docker's archive of ``path``: a directory's entries under its requested base name ("." for "/dir/."),
    anything else (a symlink included: not followed) as one entry."""
    st_info, resolved = stat_path(root, path)
    abs_path, _, _ = _split_request(path)
    rebase = posixpath.basename(abs_path.rstrip("/")) if not abs_path.endswith("/.") else "."
    if not rebase:
        rebase = "."
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        seen: dict[tuple[int, int], str] = {}
        if st_info.is_dir and not st_info.link_target:
            fd, _ = root.resolve(resolved)
            try:
                _add_entry(tf, fd, None, rebase, seen)
            finally:
                os.close(fd)
        else:
            pfd, _, base = root.resolve_parent(resolved)
            try:
                _add_entry(tf, pfd, base, rebase, seen)
            finally:
                os.close(pfd)


def _add_entry(tf: tarfile.TarFile, parent_fd: int, name: str | None, arcname: str,
               seen: dict[tuple[int, int], str]) -> None:
    """Add ``name`` below ``parent_fd`` (or the directory ``parent_fd`` itself when name is None)."""
    if name is None:
        st = os.fstat(parent_fd)
    else:
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return  # removed meanwhile
    ti = tarfile.TarInfo(arcname)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.mtime = int(st.st_mtime)
    key = (st.st_dev, st.st_ino)
    if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
        if key in seen:
            ti.type = tarfile.LNKTYPE
            ti.linkname = seen[key]
            tf.addfile(ti)
            return
        seen[key] = arcname
    if stat.S_ISDIR(st.st_mode):
        ti.type = tarfile.DIRTYPE
        tf.addfile(ti)
        dfd = _dir_fd(parent_fd) if name is None else os.open(name, _DIR, dir_fd=parent_fd)
        try:
            for child in sorted(os.listdir(dfd)):
                _add_entry(tf, dfd, child, f"{arcname}/{child}" if arcname != "." else f"./{child}", seen)
        finally:
            os.close(dfd)
    elif stat.S_ISLNK(st.st_mode):
        assert name is not None
        ti.type = tarfile.SYMTYPE
        ti.linkname = os.readlink(name, dir_fd=parent_fd)
        tf.addfile(ti)
    elif stat.S_ISREG(st.st_mode):
        assert name is not None
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=parent_fd)
        with os.fdopen(fd, "rb") as fh:
            real = os.fstat(fh.fileno())
            if not stat.S_ISREG(real.st_mode):
                return  # swapped meanwhile
            ti.type = tarfile.REGTYPE
            ti.size = real.st_size
            tf.addfile(ti, cast(IO[bytes], _Exact(fh, real.st_size)))
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        tf.addfile(ti)
    elif stat.S_ISFIFO(st.st_mode):
        ti.type = tarfile.FIFOTYPE
        tf.addfile(ti)
    # sockets are skipped, as Docker does


def add_children(tf: tarfile.TarFile, root: Root) -> None:
    """Every entry of the root, named relative to it (docker export)."""
    seen: dict[tuple[int, int], str] = {}
    dfd = _dir_fd(root.fd)
    try:
        for child in sorted(os.listdir(dfd)):
            _add_entry(tf, dfd, child, child, seen)
    finally:
        os.close(dfd)


# ---- tar in ---------------------------------------------------------------------------------------------------


def _entry_rel(name: str, dest: str) -> str:
    """Docker's untar check: filepath.Join(dest, name) must stay inside dest. Returns the cleaned relative name."""
    rel = posixpath.normpath(name.lstrip("/")) if name.lstrip("/") else "."
    if rel == ".." or rel.startswith("../"):
        raise Breakout(f"{json.dumps(name)} is outside of {json.dumps(dest)}")
    if "\x00" in name:
        raise InvalidArgument(f"invalid tar entry name {name!r}")
    return rel


def validate_tar(fh: IO[bytes], dest: str) -> None:
    """First pass over the whole tar: refuse any entry, hardlink or relative symlink that leaves ``dest``."""
    try:
        with tarfile.open(fileobj=fh, mode="r|*") as tf:
            for m in tf:
                rel = _entry_rel(m.name, dest)
                if m.islnk():
                    _entry_rel(m.linkname, dest)
                elif m.issym() and not m.linkname.startswith("/"):
                    target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), m.linkname))
                    if target == ".." or target.startswith("../"):
                        raise Breakout(f"invalid symlink {json.dumps(posixpath.join(dest, rel))} -> "
                                       f"{json.dumps(m.linkname)}")
                elif not (m.isdir() or m.isreg() or m.issym() or m.ischr() or m.isblk() or m.isfifo()):
                    continue
    except (tarfile.TarError, EOFError) as exc:
        raise InvalidArgument(f"invalid tar: {exc}") from None


def extract_tar(root: Root, fh: IO[bytes], dest: str, *, no_overwrite_dir_non_dir: bool = False,
                owner: tuple[int, int] | None = None) -> None:
    """Extract a (validated) tar into the directory ``dest`` of the root, every path resolved in scope.
    ``owner`` (copyUIDGID): every entry gets that uid/gid instead of the tar's."""
    dir_times: list[tuple[str, int]] = []
    try:
        with tarfile.open(fileobj=fh, mode="r|*") as tf:
            for m in tf:
                rel = _entry_rel(m.name, dest)
                target = posixpath.join(dest, rel)
                if not (m.isdir() or m.isreg() or m.issym() or m.islnk() or m.ischr() or m.isblk() or m.isfifo()):
                    continue
                if owner is not None:
                    m.uid, m.gid = owner
                _extract_one(root, tf, m, target, dest, no_overwrite_dir_non_dir)
                if m.isdir():
                    dir_times.append((target, int(m.mtime)))
    except (tarfile.TarError, EOFError) as exc:
        raise InvalidArgument(f"invalid tar: {exc}") from None
    for target, mtime in reversed(dir_times):
        with contextlib.suppress(OSError):
            pfd, _, base = root.resolve_parent(target)
            try:
                if base:
                    os.utime(base, ns=(mtime * 10**9, mtime * 10**9), dir_fd=pfd, follow_symlinks=False)
            finally:
                os.close(pfd)


def _extract_one(root: Root, tf: tarfile.TarFile, m: tarfile.TarInfo, target: str, dest: str,
                 no_overwrite: bool) -> None:
    pfd, _, base = root.resolve_parent(target, create_dirs=True)
    try:
        if not base:  # the root itself
            return
        try:
            existing = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None:
            is_dir = stat.S_ISDIR(existing.st_mode)
            if no_overwrite and is_dir and not m.isdir():
                raise InvalidArgument(f"cannot overwrite directory {json.dumps(target)} with non-directory "
                                      f"{json.dumps(dest)}")
            if no_overwrite and not is_dir and m.isdir():
                raise InvalidArgument(f"cannot overwrite non-directory {json.dumps(target)} with directory "
                                      f"{json.dumps(dest)}")
            if not (is_dir and m.isdir()):
                _remove(pfd, base, is_dir)
        if m.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                os.mkdir(base, 0o700, dir_fd=pfd)
        elif m.isreg():
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=pfd)
            with os.fdopen(fd, "wb") as out:
                data = tf.extractfile(m)
                if data is not None:
                    while chunk := data.read(CHUNK):
                        out.write(chunk)
        elif m.issym():
            os.symlink(m.linkname, base, dir_fd=pfd)
            os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
            return
        elif m.islnk():
            link_rel = _entry_rel(m.linkname, dest)
            spfd, _, sbase = root.resolve_parent(posixpath.join(dest, link_rel))
            try:
                os.link(sbase, base, src_dir_fd=spfd, dst_dir_fd=pfd, follow_symlinks=False)
            finally:
                os.close(spfd)
            return
        elif m.ischr() or m.isblk():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(base, kind | (m.mode & 0o7777), os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
        elif m.isfifo():
            os.mkfifo(base, m.mode & 0o7777, dir_fd=pfd)
        _set_meta(pfd, base, m.uid, m.gid, m.mode & 0o7777, None if m.isdir() else int(m.mtime))
    finally:
        os.close(pfd)


def _set_meta(pfd: int, base: str, uid: int, gid: int, mode: int, mtime: int | None) -> None:
    os.chown(base, uid, gid, dir_fd=pfd, follow_symlinks=False)
    fd = os.open(base, _PATH, dir_fd=pfd)
    try:
        if not stat.S_ISLNK(os.fstat(fd).st_mode):
            os.chmod(f"/proc/self/fd/{fd}", mode)
    finally:
        os.close(fd)
    if mtime is not None:
        os.utime(base, ns=(mtime * 10**9, mtime * 10**9), dir_fd=pfd, follow_symlinks=False)


def _remove(pfd: int, base: str, is_dir: bool) -> None:
    if is_dir:
        import shutil
        shutil.rmtree(base, dir_fd=pfd)
    else:
        os.unlink(base, dir_fd=pfd)


# ---- a stopped container's mounts ------------------------------------------------------------------------------

_MS_RDONLY, _MS_REMOUNT, _MS_BIND, _MS_REC = 1, 32, 4096, 16384


def bind_in_root(root_path: str, source: str, destination: str, read_only: bool) -> bool:
    """Bind-mount the host path ``source`` on ``destination`` resolved inside the root (made when missing).

    The mount goes on the resolved O_PATH fd (/proc/self/fd/N), so no symlink in the root can redirect it.
    False when the destination cannot be made (a file where a directory is wanted, or the reverse)."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    source_is_dir = os.path.isdir(source)
    with Root(root_path) as root:
        try:
            fd, _ = root.resolve(destination, create_dirs=source_is_dir)
        except FileNotFoundError:
            if source_is_dir:
                return False
            pfd, _, base = root.resolve_parent(destination, create_dirs=True)
            try:
                os.close(os.open(base, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                                 dir_fd=pfd))
            finally:
                os.close(pfd)
            fd, _ = root.resolve(destination)
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode) != source_is_dir:
                return False
            target = f"/proc/self/fd/{fd}".encode()
            if libc.mount(source.encode(), target, None, _MS_BIND | _MS_REC, None) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err), destination)
            if read_only:
                libc.mount(None, target, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY, None)
            return True
        finally:
            os.close(fd)


# ---- copy-up --------------------------------------------------------------------------------------------------


def copy_up(rootfs: str, path: str, dest: str) -> bool:
    """Docker's volume copy-up: copy the image's content at ``path`` (resolved inside ``rootfs``) into the empty
    host directory ``dest``, keeping owners, modes, symlinks and times. False when there is nothing to copy."""
    with Root(rootfs) as root:
        try:
            fd, _ = root.resolve(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            st = os.fstat(fd)
            if not stat.S_ISDIR(st.st_mode):
                return False
            src = _dir_fd(fd)
        finally:
            os.close(fd)
    try:
        dst = os.open(dest, _DIR)
        try:
            _copy_dir(src, dst)
            os.fchown(dst, st.st_uid, st.st_gid)
            os.fchmod(dst, stat.S_IMODE(st.st_mode))
        finally:
            os.close(dst)
    finally:
        os.close(src)
    return True


def _copy_dir(src: int, dst: int) -> None:
    for name in sorted(os.listdir(src)):
        st = os.stat(name, dir_fd=src, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(name, 0o700, dir_fd=dst)
            s = os.open(name, _DIR, dir_fd=src)
            d = os.open(name, _DIR, dir_fd=dst)
            try:
                _copy_dir(s, d)
            finally:
                os.close(s)
                os.close(d)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
        elif stat.S_ISREG(st.st_mode):
            s = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=src)
            d = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                        dir_fd=dst)
            try:
                while chunk := os.read(s, CHUNK):
                    os.write(d, chunk)
            finally:
                os.close(s)
                os.close(d)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                continue  # an overlay whiteout never shows in a mounted rootfs; be safe anyway
            os.mknod(name, st.st_mode, st.st_rdev, dir_fd=dst)
        else:
            continue
        _set_meta(dst, name, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode),
                  None if stat.S_ISDIR(st.st_mode) else int(st.st_mtime))
        if stat.S_ISDIR(st.st_mode):
            os.utime(name, ns=(st.st_mtime_ns, st.st_mtime_ns), dir_fd=dst, follow_symlinks=False)


# ---- the engine's archive backend --------------------------------------------------------------------------


class ArchiveService:
    """GET/HEAD/PUT /containers/{id}/archive on running containers (through /proc/<pid>/root: the processes'
    own view, volumes included) and stopped ones (their rootfs snapshot mounted for the operation)."""

    def __init__(self, containers: ContainerService) -> None:
        self._containers = containers

    async def stat_path(self, ref: str, path: str) -> str:
        async with self._containers.container_root(ref) as (_, root_path):
            info: PathStat = (await asyncio.to_thread(_guarded, ref, path, _stat_in, str(root_path), path))[0]
        return info.header()

    async def get_archive(self, ref: str, path: str) -> tuple[str, AsyncIterator[bytes]]:
        ctx = self._containers.container_root(ref)
        container, root_path = await ctx.__aenter__()
        try:
            info, _ = await asyncio.to_thread(_guarded, ref, path, _stat_in, str(root_path), path)
        except BaseException as exc:
            await ctx.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._containers.emit("archive-path", container.id)
        return info.header(), self._stream(ctx, str(root_path), path)

    def _stream(self, ctx: contextlib.AbstractAsyncContextManager[Any], root_path: str,
                path: str) -> AsyncIterator[bytes]:
        def produce(out: IO[bytes]) -> None:
            with Root(root_path) as root:
                write_tar(root, path, out)
        return ClosingStream(piped(produce), lambda: ctx.__aexit__(None, None, None))

    async def put_archive(self, ref: str, path: str, src: Path, no_overwrite_dir_non_dir: bool = False,
                          copy_uid_gid: bool = False) -> None:
        async with self._containers.container_root(ref) as (container, root_path):
            read_only = bool(container.host_config.get("ReadonlyRootfs"))
            writable = self._containers.writable_mounts(container.id) if read_only else []
            owner: tuple[int, int] | None = None
            if copy_uid_gid:  # the container's user, from its own passwd/group, read inside its root
                uid, gid, _ = await asyncio.to_thread(resolve_user, Path(root_path),
                                                      container.config.get("User") or "0")
                owner = (uid, gid)
            await asyncio.to_thread(_guarded, ref, path, _extract_in, str(root_path), path, src,
                                    no_overwrite_dir_non_dir, read_only, writable, owner)
        self._containers.emit("extract-to-dir", container.id)


class ClosingStream:
    """An async byte stream that releases what it holds (a mount, a lock) once, when exhausted or closed, even
    if it was never iterated."""

    def __init__(self, chunks: AsyncIterator[bytes], release: Callable[[], Awaitable[Any]]) -> None:
        self._chunks = chunks
        self._release = release
        self._closed = False

    def __aiter__(self) -> ClosingStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._chunks.__anext__()
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            closer = getattr(self._chunks, "aclose", None)
            if closer is not None:
                await closer()
        finally:
            await self._release()


async def piped(produce: Callable[[IO[bytes]], None]) -> AsyncIterator[bytes]:
    """Run ``produce(out)`` in a thread writing into a pipe and yield what it writes; closing the stream early
    makes the writer fail with EPIPE and stop."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)

    def run() -> None:
        with os.fdopen(write_fd, "wb") as out:
            produce(out)

    writer = asyncio.ensure_future(asyncio.to_thread(run))
    try:
        while data := await asyncio.to_thread(os.read, read_fd, CHUNK):
            yield data
    finally:
        os.close(read_fd)  # a writer still busy gets EPIPE and stops
        with contextlib.suppress(OSError, InvalidArgument, tarfile.TarError):
            await writer


def _guarded(ref: str, path: str, fn: Any, *args: Any) -> Any:
    """Run fn, turning OS errors about the container path into Docker's answers."""
    try:
        return fn(*args)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"Could not find the file {path} in container {ref}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidArgument(f"{path}: too many levels of symbolic links") from None
        if exc.errno == errno.EROFS:
            raise InvalidArgument("container rootfs is marked read-only") from None
        raise InternalError(f"{path}: {exc.strerror or exc}") from None


def _stat_in(root_path: str, path: str) -> tuple[PathStat, str]:
    with Root(root_path) as root:
        return stat_path(root, path)


def _extract_in(root_path: str, path: str, src: Path, no_overwrite: bool, read_only: bool,
                writable: list[str], owner: tuple[int, int] | None = None) -> None:
    with Root(root_path) as root:
        abs_path = posixpath.normpath("/" + path)
        fd, dest = root.resolve(abs_path)
        try:
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                raise InvalidArgument("extraction point is not a directory")
        finally:
            os.close(fd)
        if read_only and not any(dest == w or dest.startswith(w.rstrip("/") + "/") for w in writable):
            raise InvalidArgument("container rootfs is marked read-only")
        with open(src, "rb") as fh:
            validate_tar(fh, dest)
        with open(src, "rb") as fh:
            extract_tar(root, fh, dest, no_overwrite_dir_non_dir=no_overwrite, owner=owner)


__all__ = ["ArchiveService", "Breakout", "ClosingStream", "PathStat", "piped", "Root", "copy_up", "extract_tar", "go_file_mode", "stat_path",
           "validate_tar", "write_tar"]
