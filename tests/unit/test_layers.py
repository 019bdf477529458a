"""Layer tar apply/write on real files: metadata kept, whiteouts as overlay expects, escapes refused."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiodock.core.layers import apply_layer, layer_diff_id, write_layer_tar
from aiodock.errors import InvalidArgument

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod, trusted xattrs)")

MTIME = 1_600_000_000
# VFS_CAP_REVISION_2 with cap_net_bind_service permitted (all bytes < 0x80, so the PAX text is plain)
CAP_NET_BIND = b"\x01\x00\x00\x02" + b"\x00\x04\x00\x00" + b"\x00" * 12


@pytest.fixture
def tmp() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="adk-", dir="/tmp"))
    yield d
    shutil.rmtree(d)


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", mode: int = 0o644, uid: int = 0,
          gid: int = 0, linkname: str = "", xattrs: dict[str, str] | None = None,
          dev: tuple[int, int] = (0, 0)) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.uid, ti.gid, ti.mtime, ti.linkname = kind, mode, uid, gid, MTIME, linkname
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    ti.devmajor, ti.devminor = dev
    if xattrs:
        ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
    return ti, data


def make_tar(*entries: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_apply_keeps_owners_modes_mtimes_xattrs_links_and_devices(tmp: Path) -> None:
    dest = tmp / "layer"
    dest.mkdir()
    tar = make_tar(
        entry("usr", tarfile.DIRTYPE, mode=0o755),
        entry("usr/bin", tarfile.DIRTYPE, mode=0o750, uid=7, gid=8),
        entry("usr/bin/tool", data=b"#!/bin/sh\n", mode=0o4755, uid=1234, gid=5678,
              xattrs={"user.origin": "test", "security.capability": CAP_NET_BIND.decode("latin-1")}),
        entry("usr/bin/alias", tarfile.SYMTYPE, linkname="/usr/bin/tool", uid=1234, gid=5678),
        entry("usr/bin/hard", tarfile.LNKTYPE, linkname="usr/bin/tool"),
        entry("dev", tarfile.DIRTYPE, mode=0o755),
        entry("dev/null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3)),
        entry("dev/fifo", tarfile.FIFOTYPE, mode=0o600),
        entry("./implicit/parent/file", data=b"x"),
    )
    result = apply_layer(io.BytesIO(tar), dest)
    assert result.diff_id == sha(tar) and result.size == len(tar)

    tool = dest / "usr/bin/tool"
    st = os.lstat(tool)
    assert tool.read_bytes() == b"#!/bin/sh\n"
    assert stat.S_IMODE(st.st_mode) == 0o4755 and (st.st_uid, st.st_gid) == (1234, 5678)
    assert st.st_mtime == MTIME and st.st_nlink == 2
    assert os.getxattr(tool, "user.origin") == b"test"
    assert os.getxattr(tool, "security.capability") == CAP_NET_BIND
    assert os.lstat(dest / "usr/bin/hard").st_ino == st.st_ino
    assert os.readlink(dest / "usr/bin/alias") == "/usr/bin/tool"
    assert os.lstat(dest / "usr/bin/alias").st_uid == 1234
    bindir = os.lstat(dest / "usr/bin")
    assert stat.S_IMODE(bindir.st_mode) == 0o750 and bindir.st_uid == 7 and bindir.st_mtime == MTIME
    null = os.lstat(dest / "dev/null")
    assert stat.S_ISCHR(null.st_mode) and (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert stat.S_ISFIFO(os.lstat(dest / "dev/fifo").st_mode)
    assert (dest / "implicit/parent/file").read_bytes() == b"x"


def test_gzip_layer_has_the_diff_id_of_its_uncompressed_tar(tmp: Path) -> None:
    tar = make_tar(entry("hello", data=b"world"))
    packed = gzip.compress(tar)
    (tmp / "l.tar.gz").write_bytes(packed)
    (tmp / "d").mkdir()
    assert apply_layer(tmp / "l.tar.gz", tmp / "d").diff_id == sha(tar)
    assert layer_diff_id(tmp / "l.tar.gz") == (sha(tar), len(tar))
    assert (tmp / "d/hello").read_bytes() == b"world"


def test_whiteouts_become_overlay_whiteouts_and_opaque_xattr(tmp: Path) -> None:
    dest = tmp / "upper"
    dest.mkdir()
    tar = make_tar(
        entry("etc", tarfile.DIRTYPE, mode=0o755),
        entry("etc/.wh.motd"),
        entry("var", tarfile.DIRTYPE, mode=0o755),
        entry("var/cache", tarfile.DIRTYPE, mode=0o755),
        entry("var/cache/.wh..wh..opq"),
        entry("var/cache/fresh", data=b"new"),
    )
    apply_layer(io.BytesIO(tar), dest)
    wh = os.lstat(dest / "etc/motd")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert not (dest / "etc/.wh.motd").exists()
    assert os.getxattr(dest / "var/cache", "trusted.overlay.opaque") == b"y"
    assert not (dest / "var/cache/.wh..wh..opq").exists()
    assert (dest / "var/cache/fresh").read_bytes() == b"new"


def test_whiteouts_delete_when_not_applying_onto_overlay(tmp: Path) -> None:
    dest = tmp / "flat"
    (dest / "etc").mkdir(parents=True)
    (dest / "etc/motd").write_text("old")
    (dest / "cache").mkdir()
    (dest / "cache/stale").write_text("old")
    tar = make_tar(entry("etc/.wh.motd"), entry("cache/.wh..wh..opq"), entry("cache/fresh", data=b"n"))
    apply_layer(io.BytesIO(tar), dest, overlay=False)
    assert not os.path.lexists(dest / "etc/motd")
    assert sorted(os.listdir(dest / "cache")) == ["fresh"]


def test_write_layer_tar_round_trips_through_apply(tmp: Path) -> None:
    src, copy = tmp / "src", tmp / "copy"
    src.mkdir()
    copy.mkdir()
    tar = make_tar(
        entry("a", tarfile.DIRTYPE, mode=0o700, uid=10),
        entry("a/file", data=b"data", mode=0o640, uid=11, gid=12, xattrs={"user.k": "v"}),
        entry("a/link", tarfile.LNKTYPE, linkname="a/file"),
        entry("a/sym", tarfile.SYMTYPE, linkname="file"),
        entry(".wh.removed"),
        entry("o", tarfile.DIRTYPE, mode=0o755),
        entry("o/.wh..wh..opq"),
    )
    apply_layer(io.BytesIO(tar), src)
    out = io.BytesIO()
    diff_id, size = write_layer_tar(src, out)
    assert (diff_id, size) == (sha(out.getvalue()), len(out.getvalue()))
    apply_layer(io.BytesIO(out.getvalue()), copy)
    for rel in ("a", "a/file", "a/sym", "removed", "o"):
        s1, s2 = os.lstat(src / rel), os.lstat(copy / rel)
        assert (s1.st_mode, s1.st_uid, s1.st_gid, s1.st_mtime, s1.st_rdev) == \
            (s2.st_mode, s2.st_uid, s2.st_gid, s2.st_mtime, s2.st_rdev), rel
    assert os.lstat(copy / "a/link").st_ino == os.lstat(copy / "a/file").st_ino
    assert os.getxattr(copy / "a/file", "user.k") == b"v"
    assert os.getxattr(copy / "o", "trusted.overlay.opaque") == b"y"
    again = io.BytesIO()
    write_layer_tar(src, again)
    assert again.getvalue() == out.getvalue()  # deterministic


MALICIOUS = {
    "dotdot": ([entry("ok", data=b"1"), entry("../escaped", data=b"pwned")], "'../escaped'"),
    "nested-dotdot": ([entry("a/../../escaped", data=b"pwned")], "escapes the layer root"),
    "absolute": ([entry("ok", data=b"1"), entry("/tmp/adk-abs-escape", data=b"pwned")], "absolute path"),
    "symlink-escape": ([entry("link", tarfile.SYMTYPE, linkname="{outside}"),
                        entry("link/escaped", data=b"pwned")], "through the symlink 'link'"),
    "relative-symlink-escape": ([entry("d", tarfile.DIRTYPE, mode=0o755),
                                 entry("d/up", tarfile.SYMTYPE, linkname="../../outside"),
                                 entry("d/up/escaped", data=b"pwned")], "symlink 'd/up'"),
    "symlink-replaces-dir": ([entry("etc", tarfile.DIRTYPE, mode=0o755), entry("etc", tarfile.SYMTYPE,
                                                                            linkname="{outside}"),
                              entry("etc/escaped", data=b"pwned")], "symlink 'etc'"),
    "hardlink-escape": ([entry("h", tarfile.LNKTYPE, linkname="../outside/secret")], "hardlink target"),
    "hardlink-absolute": ([entry("h", tarfile.LNKTYPE, linkname="{outside}/secret")], "absolute path"),
    "hardlink-through-symlink": ([entry("l", tarfile.SYMTYPE, linkname="{outside}"),
                                  entry("h", tarfile.LNKTYPE, linkname="l/secret")], "symlink 'l'"),
    "whiteout-dotdot": ([entry("a/.wh..."), entry("x", data=b"1")], "names no file"),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_layer_is_refused_and_nothing_is_applied(tmp: Path, case: str) -> None:
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    dest = tmp / "root" / "layer"
    dest.mkdir(parents=True)
    entries, expected_message = MALICIOUS[case]
    fixed = []
    for ti, data in entries:
        ti.linkname = ti.linkname.replace("{outside}", str(outside))
        fixed.append((ti, data))
    with pytest.raises(InvalidArgument) as err:
        apply_layer(io.BytesIO(make_tar(*fixed)), dest)
    assert expected_message in str(err.value)
    assert os.listdir(dest) == []
    assert sorted(os.listdir(outside)) == ["secret"] and (outside / "secret").read_text() == "secret"
    assert sorted(os.listdir(tmp)) == ["outside", "root"] and os.listdir(tmp / "root") == ["layer"]
    assert not os.path.lexists("/tmp/adk-abs-escape")


def test_pre_existing_symlink_in_destination_is_not_followed(tmp: Path) -> None:
    outside = tmp / "outside"
    outside.mkdir()
    dest = tmp / "layer"
    dest.mkdir()
    os.symlink(outside, dest / "pre")
    with pytest.raises(InvalidArgument, match="symlink 'pre'"):
        apply_layer(io.BytesIO(make_tar(entry("pre/escaped", data=b"pwned"))), dest)
    assert os.listdir(outside) == []


def test_garbage_is_not_a_layer(tmp: Path) -> None:
    (tmp / "d").mkdir()
    with pytest.raises(InvalidArgument, match="invalid layer"):
        apply_layer(io.BytesIO(b"\x1f\x8bnot really gzip" * 10), tmp / "d")
    assert os.listdir(tmp / "d") == []
