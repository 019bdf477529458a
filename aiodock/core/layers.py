"""Layer tarballs: apply one into a snapshot directory (overlay upper layout), make one from a directory.

Applying is two passes over the (decompressed) tar: the first validates every entry against a model of the
resulting tree and computes the diff id; only a fully valid tar is written, and only inside ``dest``.
Blocking: async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import hashlib
import io
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

import zstandard

from aiodock.errors import InternalError, InvalidArgument

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
OVERLAY_XATTR_PREFIX = "trusted.overlay."
PAX_XATTR_PREFIX = "SCHILY.xattr."
CHUNK = 1 << 20

_STREAM_ERRORS = (tarfile.TarError, EOFError, lzma.LZMAError, gzip.BadGzipFile, zlib.error, zstandard.ZstdError)
_DIR, _SYMLINK, _FILE, _WHITEOUT, _ABSENT = "dir", "symlink", "file", "whiteout", "absent"


@dataclass(frozen=True, slots=True)
class AppliedLayer:
    diff_id: str  # sha256 of the uncompressed tar
    size: int  # bytes of the uncompressed tar


def detect_compression(head: bytes) -> str:
    """``gzip``, ``bzip2``, ``xz``, ``zstd`` or ``none`` from the first bytes of a stream."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh"):
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    return "none"


def decompressed(fh: BinaryIO) -> IO[bytes]:
    """Wrap a raw stream so it reads uncompressed tar bytes, whatever compression its magic bytes say."""
    buffered: io.BufferedReader[Any] = (
        fh if isinstance(fh, io.BufferedReader) else io.BufferedReader(fh))
    kind = detect_compression(buffered.peek(6)[:6])
    if kind == "gzip":
        return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    if kind == "bzip2":
        return bz2.BZ2File(buffered, "rb")
    if kind == "xz":
        return lzma.LZMAFile(buffered, "rb")
    if kind == "zstd":
        reader = zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True, closefd=True)
        return reader
    return buffered


class _HashingReader(io.RawIOBase):
    """Reads from ``inner`` and hashes every byte handed out."""

    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner
        self.hash = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.inner.read(len(b))
        n = len(data)
        b[:n] = data
        self.hash.update(data)
        self.size += n
        return n

    def drain(self) -> None:
        while chunk := self.inner.read(CHUNK):
            self.hash.update(chunk)
            self.size += len(chunk)

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class _HashingWriter(io.RawIOBase):
    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        data = bytes(b)
        self.inner.write(data)
        self.hash.update(data)
        self.size += len(data)
        return len(data)


@contextmanager
def _opener(src: Path | BinaryIO) -> Iterator[Callable[[], BinaryIO]]:
    """A factory of fresh readers of src (a path, a seekable stream, or a stream spooled to a temp file)."""
    if isinstance(src, (str, Path)):
        yield lambda: open(src, "rb")  # noqa: SIM115 - the caller closes it
        return
    if src.seekable():
        start = src.tell()

        def rewind() -> BinaryIO:
            src.seek(start)
            return _Unclosable(src)  # type: ignore[return-value]

        yield rewind
        return
    with tempfile.TemporaryFile(prefix="adk-layer-") as spool:
        shutil.copyfileobj(src, spool, CHUNK)
        spool.flush()
        path = f"/proc/self/fd/{spool.fileno()}"
        yield lambda: open(path, "rb")  # noqa: SIM115 - the caller closes it


class _Unclosable(io.RawIOBase):
    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.inner.read(len(b))
        b[: len(data)] = data
        return len(data)


@contextmanager
def _tar_stream(raw: BinaryIO) -> Iterator[tuple[tarfile.TarFile, _HashingReader]]:
    with raw:
        reader = _HashingReader(decompressed(raw))
        try:
            tf = tarfile.open(fileobj=reader, mode="r|", errorlevel=2)  # noqa: SIM115

        except (tarfile.TarError, EOFError, OSError) as exc:
            raise InvalidArgument(f"invalid layer tar: {exc}") from None
        with tf:
            yield tf, reader


def layer_diff_id(src: Path | BinaryIO) -> tuple[str, int]:
    """sha256 digest and length of the uncompressed tar stream of a (possibly compressed) layer."""
    if isinstance(src, (str, Path)):
        with open(src, "rb") as fh:
            return layer_diff_id(fh)
    reader = _HashingReader(decompressed(_Unclosable(src)))  # type: ignore[arg-type]
    try:
        reader.drain()
    except _STREAM_ERRORS as exc:
        raise InvalidArgument(f"invalid layer: {exc}") from None
    return reader.digest, reader.size


def clean_name(name: str, what: str = "entry") -> str:
    """A tar name as a relative path without ``.`` parts; refuse absolute names and ``..``."""
    if name.startswith("/"):
        raise InvalidArgument(f"invalid layer: {what} {name!r} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"invalid layer: {what} {name!r} escapes the layer root with '..'")
    if "\x00" in name:
        raise InvalidArgument(f"invalid layer: {what} {name!r} contains a NUL byte")
    return "/".join(parts)


def _kind_of(member: tarfile.TarInfo) -> str:
    if member.isdir():
        return _DIR
    if member.issym():
        return _SYMLINK
    if member.isreg() or member.islnk() or member.ischr() or member.isblk() or member.isfifo():
        return _FILE
    raise InvalidArgument(f"invalid layer: entry {member.name!r} has unsupported tar type {member.type!r}")


class _TreeModel:
    """What the destination tree will look like as entries are applied; consulted before any write."""

    def __init__(self, dest: Path, overlay: bool) -> None:
        self.dest = dest
        self.overlay = overlay
        self.kinds: dict[str, str] = {}

    def kind(self, rel: str) -> str:
        if rel in self.kinds:
            return self.kinds[rel]
        parts = rel.split("/")
        for i in range(1, len(parts)):
            if self.kinds.get("/".join(parts[:i])) == _ABSENT:
                return _ABSENT
        try:
            st = os.lstat(self.dest / rel)
        except FileNotFoundError:
            return _ABSENT
        except NotADirectoryError:
            return _ABSENT
        if stat.S_ISDIR(st.st_mode):
            return _DIR
        if stat.S_ISLNK(st.st_mode):
            return _SYMLINK
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return _WHITEOUT
        return _FILE

    def check_parents(self, rel: str, entry: str) -> None:
        parts = rel.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            kind = self.kind(prefix)
            if kind == _SYMLINK:
                raise InvalidArgument(
                    f"invalid layer: entry {entry!r} would be written through the symlink {prefix!r}")
            if kind in (_FILE, _WHITEOUT):
                raise InvalidArgument(f"invalid layer: entry {entry!r}: parent {prefix!r} is not a directory")
            if kind == _ABSENT:
                self.kinds[prefix] = _DIR

    def set(self, rel: str, kind: str) -> None:
        if kind != _DIR:
            pre = rel + "/"
            for key in [k for k in self.kinds if k.startswith(pre)]:
                del self.kinds[key]
        self.kinds[rel] = kind


def _validate(tf: tarfile.TarFile, dest: Path, overlay: bool) -> None:
    model = _TreeModel(dest, overlay)
    for m in tf:
        rel = clean_name(m.name)
        if not rel:
            if not m.isdir():
                raise InvalidArgument(f"invalid layer: root entry {m.name!r} is not a directory")
            continue
        parent, _, base = rel.rpartition("/")
        if base.startswith(WHITEOUT_PREFIX):
            if parent:
                model.check_parents(rel, m.name)
            if base.startswith(WHITEOUT_META_PREFIX):
                continue
            target = base[len(WHITEOUT_PREFIX):]
            if target in ("", ".", ".."):
                raise InvalidArgument(f"invalid layer: whiteout {m.name!r} names no file")
            model.set(f"{parent}/{target}" if parent else target, _WHITEOUT if overlay else _ABSENT)
            continue
        model.check_parents(rel, m.name)
        kind = _kind_of(m)
        if m.islnk():
            target = clean_name(m.linkname, f"hardlink target of {m.name!r}:")
            if not target:
                raise InvalidArgument(f"invalid layer: hardlink {m.name!r} points at the layer root")
            model.check_parents(target, m.name)
            tkind = model.kind(target)
            if tkind in (_ABSENT, _WHITEOUT):
                raise InvalidArgument(
                    f"invalid layer: hardlink {m.name!r} points at {m.linkname!r} which does not exist in the layer")
            if tkind == _DIR:
                raise InvalidArgument(f"invalid layer: hardlink {m.name!r} points at directory {m.linkname!r}")
            if target == rel:
                raise InvalidArgument(f"invalid layer: hardlink {m.name!r} points at itself")
        model.set(rel, kind)


class _Applier:
    def __init__(self, dest: Path, overlay: bool) -> None:
        self.dest = dest
        self.overlay = overlay
        self.dir_times: list[tuple[str, int]] = []
        self.written: set[str] = set()
        self.opaque_dirs: list[str] = []

    def path(self, rel: str) -> str:
        return os.path.join(self.dest, rel) if rel else str(self.dest)

    def ensure_parents(self, rel: str) -> None:
        parts = rel.split("/")
        for i in range(1, len(parts)):
            p = self.path("/".join(parts[:i]))
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                os.mkdir(p, 0o755)
                continue
            if not stat.S_ISDIR(st.st_mode):  # validated away; never follow anything here
                raise InternalError(f"apply layer: {p} changed under us (not a directory)")

    def remove_existing(self, rel: str, keep_dir: bool) -> None:
        p = self.path(rel)
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return
            shutil.rmtree(p)
        else:
            os.unlink(p)

    def apply(self, tf: tarfile.TarFile) -> None:
        for m in tf:
            rel = clean_name(m.name)
            if not rel:
                self.meta(rel, m)
                continue
            parent, _, base = rel.rpartition("/")
            if base.startswith(WHITEOUT_PREFIX):
                self.whiteout(parent, base, m)
                continue
            self.ensure_parents(rel)
            self.remove_existing(rel, keep_dir=m.isdir())
            p = self.path(rel)
            if m.isdir():
                if not os.path.isdir(p):
                    os.mkdir(p, 0o700)
            elif m.issym():
                os.symlink(m.linkname, p)
            elif m.islnk():
                os.link(self.path(clean_name(m.linkname)), p, follow_symlinks=False)
                self.written.add(rel)
                continue
            elif m.isreg():
                self.write_file(p, tf, m)
            elif m.ischr() or m.isblk():
                kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
                os.mknod(p, kind | (m.mode & 0o7777), os.makedev(m.devmajor, m.devminor))
            elif m.isfifo():
                os.mkfifo(p, m.mode & 0o7777)
            self.written.add(rel)
            self.meta(rel, m)
        if not self.overlay:
            self.clear_opaque_dirs()
        for rel, mtime_ns in reversed(self.dir_times):
            os.utime(self.path(rel), ns=(mtime_ns, mtime_ns), follow_symlinks=False)

    def whiteout(self, parent: str, base: str, m: tarfile.TarInfo) -> None:
        if parent:
            self.ensure_parents(parent + "/x")
        if base == WHITEOUT_OPAQUE:
            d = self.path(parent)
            if not os.path.isdir(d):
                os.mkdir(d, 0o755)
            if self.overlay:
                os.setxattr(d, OPAQUE_XATTR, b"y", follow_symlinks=False)
            else:
                self.opaque_dirs.append(parent)
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            return  # aufs bookkeeping entries (.wh..wh.plnk and friends)
        rel = f"{parent}/{base[len(WHITEOUT_PREFIX):]}" if parent else base[len(WHITEOUT_PREFIX):]
        self.remove_existing(rel, keep_dir=False)
        if self.overlay:
            p = self.path(rel)
            os.mknod(p, stat.S_IFCHR, os.makedev(0, 0))
            os.lchown(p, m.uid, m.gid)
            mtime_ns = round(float(m.mtime) * 1e9)
            os.utime(p, ns=(mtime_ns, mtime_ns), follow_symlinks=False)

    def clear_opaque_dirs(self) -> None:
        for parent in self.opaque_dirs:
            d = self.path(parent)
            for name in os.listdir(d):
                rel = f"{parent}/{name}" if parent else name
                if not any(w == rel or w.startswith(rel + "/") for w in self.written):
                    self.remove_existing(rel, keep_dir=False)

    def write_file(self, p: str, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            data = tf.extractfile(m)
            if data is not None:
                shutil.copyfileobj(data, out, CHUNK)

    def meta(self, rel: str, m: tarfile.TarInfo) -> None:
        p = self.path(rel)
        os.lchown(p, m.uid, m.gid)
        if not m.issym():
            os.chmod(p, m.mode & 0o7777)
        for key, value in m.pax_headers.items():
            if not key.startswith(PAX_XATTR_PREFIX):
                continue
            name = key[len(PAX_XATTR_PREFIX):]
            if name.startswith(OVERLAY_XATTR_PREFIX):
                continue  # never let a layer steer overlayfs
            try:
                os.setxattr(p, name, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
            except OSError as exc:
                if exc.errno not in (errno.ENOTSUP, errno.EPERM):
                    raise
        mtime_ns = round(float(m.mtime) * 1e9)
        if m.isdir():
            self.dir_times.append((rel, mtime_ns))
        else:
            os.utime(p, ns=(mtime_ns, mtime_ns), follow_symlinks=False)


def apply_layer(src: Path | BinaryIO, dest: Path, *, overlay: bool = True) -> AppliedLayer:
    """Apply a layer tar (plain, gzip, bzip2, xz, zstd) into ``dest``.

    With ``overlay`` whiteouts become overlay whiteouts (char 0/0) and opaque markers the
    ``trusted.overlay.opaque`` xattr; without it they delete. A tar that would touch anything outside ``dest``
    is refused (InvalidArgument naming the entry) before anything is written.
    """
    dest = Path(dest)
    if not dest.is_dir() or dest.is_symlink():
        raise InvalidArgument(f"apply layer: {dest} is not a directory")
    with _opener(src) as reopen:
        try:
            with _tar_stream(reopen()) as (tf, reader):
                _validate(tf, dest, overlay)
                reader.drain()
                result = AppliedLayer(reader.digest, reader.size)
        except _STREAM_ERRORS as exc:
            raise InvalidArgument(f"invalid layer tar: {exc}") from None
        try:
            with _tar_stream(reopen()) as (tf, _):
                _Applier(dest, overlay).apply(tf)
        except _STREAM_ERRORS as exc:
            raise InvalidArgument(f"invalid layer tar: {exc}") from None
        except OSError as exc:
            raise InternalError(f"apply layer into {dest}: {exc}") from exc
    return result


def write_layer_tar(src_dir: Path, out: Path | BinaryIO, *, mtime: int | None = None,
                    overlay: bool = True) -> tuple[str, int]:
    """Write ``src_dir`` as an uncompressed layer tar; returns (diff id, size).

    Entries are sorted (deterministic output); with ``mtime`` every entry gets that time. With ``overlay`` a
    char 0/0 device is written as a ``.wh.<name>`` whiteout and an opaque directory gets ``.wh..wh..opq``.
    """
    if isinstance(out, (str, Path)):
        with open(out, "wb") as fh:
            return write_layer_tar(src_dir, fh, mtime=mtime, overlay=overlay)
    writer = _HashingWriter(out)
    seen: dict[tuple[int, int], str] = {}
    root = Path(src_dir)
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        _add_dir(tf, root, "", seen, mtime, overlay)
    return "sha256:" + writer.hash.hexdigest(), writer.size


def _add_dir(tf: tarfile.TarFile, root: Path, rel_dir: str, seen: dict[tuple[int, int], str],
             mtime: int | None, overlay: bool) -> None:
    base = os.path.join(root, rel_dir) if rel_dir else str(root)
    for name in sorted(os.listdir(base)):
        rel = f"{rel_dir}/{name}" if rel_dir else name
        p = os.path.join(base, name)
        st = os.lstat(p)
        if overlay and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            wh = f"{rel_dir}/{WHITEOUT_PREFIX}{name}" if rel_dir else WHITEOUT_PREFIX + name
            tf.addfile(_empty_file(wh, st, mtime))
            continue
        ti = tarfile.TarInfo(rel)
        ti.mode = stat.S_IMODE(st.st_mode)
        ti.uid, ti.gid = st.st_uid, st.st_gid
        ti.uname = ti.gname = ""
        ti.mtime = mtime if mtime is not None else int(st.st_mtime)
        xattrs = _xattrs(p)
        if xattrs:
            ti.pax_headers = {PAX_XATTR_PREFIX + k: v.decode("utf-8", "surrogateescape")
                              for k, v in sorted(xattrs.items())}
        key = (st.st_dev, st.st_ino)
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1 and key in seen:
            ti.type = tarfile.LNKTYPE
            ti.linkname = seen[key]
            tf.addfile(ti)
            continue
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            seen[key] = rel
        if stat.S_ISDIR(st.st_mode):
            ti.type = tarfile.DIRTYPE
            tf.addfile(ti)
            if overlay and _getxattr(p, OPAQUE_XATTR) == b"y":
                tf.addfile(_empty_file(f"{rel}/{WHITEOUT_OPAQUE}", st, mtime))
            _add_dir(tf, root, rel, seen, mtime, overlay)
        elif stat.S_ISLNK(st.st_mode):
            ti.type = tarfile.SYMTYPE
            ti.linkname = os.readlink(p)
            tf.addfile(ti)
        elif stat.S_ISREG(st.st_mode):
            ti.type = tarfile.REGTYPE
            ti.size = st.st_size
            with open(p, "rb") as fh:
                tf.addfile(ti, fh)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            tf.addfile(ti)
        elif stat.S_ISFIFO(st.st_mode):
            ti.type = tarfile.FIFOTYPE
            tf.addfile(ti)
        # sockets are skipped, as Docker does


def _empty_file(name: str, st: os.stat_result, mtime: int | None) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.REGTYPE
    ti.mode = 0o644
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.uname = ti.gname = ""
    ti.mtime = mtime if mtime is not None else int(st.st_mtime)
    return ti


def _xattrs(p: str) -> dict[str, bytes]:
    out = {}
    try:
        names = os.listxattr(p, follow_symlinks=False)
    except OSError:
        return {}
    for name in names:
        if name.startswith(OVERLAY_XATTR_PREFIX):
            continue
        value = _getxattr(p, name)
        if value is not None:
            out[name] = value
    return out


def _getxattr(p: str, name: str) -> bytes | None:
    try:
        return os.getxattr(p, name, follow_symlinks=False)
    except OSError:
        return None
