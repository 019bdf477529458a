"""docker diff (GET /containers/{id}/changes), export, and commit (POST /commit) from a container's writable layer.

The writable layer is the overlay upper dir of the container's snapshot: a char 0/0 device there is a whiteout
(a deletion), everything else was added or changed. Paths the runtime itself creates as mount points (Docker keeps
them in its init layer) are left out of diff and commit alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from aiodock.core.images import manifest as mf
from aiodock.core.layers import OPAQUE_XATTR, write_layer_tar
from aiodock.core.mount import Mount
from aiodock.engine.archive import ClosingStream, Root, add_children, piped
from aiodock.engine.dockerfile import apply_changes
from aiodock.engine.images import ImageService
from aiodock.errors import Conflict, InvalidArgument

if TYPE_CHECKING:
    from aiodock.engine.containers import ContainerService

# Docker's init layer: mount points the runtime makes, never part of a container's changes.
INIT_PATHS = frozenset({"/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/.dockerenv", "/dev", "/proc", "/sys",
                        "/dev/shm", "/dev/pts", "/dev/console", "/dev/mqueue"})
KIND = {"C": 0, "A": 1, "D": 2}


def _layers(mounts: list[Mount]) -> tuple[Path, list[Path]]:
    upper: Path | None = None
    lowers: list[Path] = []
    for m in mounts:
        for opt in m.options:
            key, _, value = opt.partition("=")
            if key == "upperdir":
                upper = Path(value)
            elif key == "lowerdir":
                lowers += [Path(p) for p in value.split(":")]
        if m.type == "bind":
            upper = Path(m.source)
    if upper is None:
        raise Conflict("the container has no writable layer")
    return upper, lowers


def _in_lower(lowers: list[Path], rel: str) -> bool:
    """Whether /rel exists in the image below the writable layer (whiteouts and opaque dirs honoured)."""
    parent = rel.rpartition("/")[0]
    for layer in lowers:
        try:
            st = os.lstat(layer / rel)
            return not (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0)
        except (FileNotFoundError, NotADirectoryError):
            pass
        if parent:
            try:
                if os.getxattr(layer / parent, OPAQUE_XATTR, follow_symlinks=False) == b"y":
                    return False
            except OSError:
                pass
    return False


def layer_changes(upper: Path, lowers: list[Path], excluded: frozenset[str]) -> list[dict[str, Any]]:
    """Docker's changes list (Path, Kind 0 modified / 1 added / 2 deleted), sorted by path. Blocking."""
    found: dict[str, int] = {}
    for dirpath, dirnames, filenames, dirfd in os.fwalk(upper, follow_symlinks=False):
        rel_dir = os.path.relpath(dirpath, upper)
        rel_dir = "" if rel_dir == "." else rel_dir
        for name in sorted(dirnames + filenames):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            path = "/" + rel
            if path in excluded or any(path.startswith(e + "/") for e in excluded):
                continue
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                found[path] = KIND["D"]
            elif stat.S_ISDIR(st.st_mode):
                found[path] = KIND["C"] if _in_lower(lowers, rel) else KIND["A"]
            else:
                found[path] = KIND["C"] if _in_lower(lowers, rel) else KIND["A"]
    # a directory only copied up to hold changes below it shows as C once something below it changed
    result = []
    for path, kind in sorted(found.items()):
        if kind == KIND["C"] and os.path.isdir(str(upper) + path) and not os.path.islink(str(upper) + path) \
                and not any(p.startswith(path + "/") for p in found):
            continue
        result.append({"Path": path, "Kind": kind})
    return result


def _excluded(container_config: dict[str, Any], volume_destinations: list[str]) -> frozenset[str]:
    return INIT_PATHS | frozenset(volume_destinations)


class CommitService:
    """GET /containers/{id}/changes, GET /containers/{id}/export, POST /commit."""

    def __init__(self, containers: ContainerService, images: ImageService) -> None:
        self._containers = containers
        self._images = images

    async def changes(self, ref: str) -> list[dict[str, Any]]:
        container, mounts = await self._containers.rootfs_layer(ref)
        upper, lowers = _layers(mounts)
        excluded = _excluded(container.config, self._containers.volume_destinations(container.id))
        return await asyncio.to_thread(layer_changes, upper, lowers, excluded)

    async def export(self, ref: str) -> AsyncIterator[bytes]:
        ctx = self._containers.layer_root(ref)
        container, root_path = await ctx.__aenter__()

        def produce(out: IO[bytes]) -> None:
            with Root(str(root_path)) as root, \
                    tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
                add_children(tf, root)

        self._containers.emit("export", container.id)
        return ClosingStream(piped(produce), lambda: ctx.__aexit__(None, None, None))

    async def commit(self, ref: str, repo: str | None, tag: str | None, comment: str, author: str,
                     changes: list[str], pause: bool, body: dict[str, Any], *,
                     image_config: dict[str, Any] | None = None) -> str:
        """docker commit. ``image_config``: the builder's config for the new image, used as it is (a RUN step's
        container runs the step's command, which must not become the image's)."""
        container = self._containers.get(ref)
        if repo and tag is None and ":" in repo.rsplit("/", 1)[-1]:
            repo, tag = repo.rsplit(":", 1)
        if tag and not repo:
            raise InvalidArgument("invalid reference format: repository name must be given with a tag")
        image = await self._images.resolve(container.image_id)
        paused_here = False
        if container.state.status == "running":  # frozen while the layer is read: no file can be swapped
            await self._containers.pause(container.id)
            paused_here = True
        _, mounts = await self._containers.rootfs_layer(container.id)
        upper, _ = _layers(mounts)
        # beside the upper dir: the staging tree hard-links into it (same filesystem)
        work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="commit-", dir=upper.parent))
        try:
            excluded = _excluded(container.config, self._containers.volume_destinations(container.id))
            layer = work / "layer.tar"
            await asyncio.to_thread(_filtered_layer_tar, upper, layer, work / "stage", excluded)
        finally:
            if paused_here:
                with contextlib.suppress(Conflict):
                    await self._containers.unpause(container.id)
        try:
            cfg = {k: v for k, v in container.config.items() if k not in ("Hostname", "Domainname")}
            cfg.update({k: v for k, v in body.items() if v is not None})
            cfg = apply_changes(cfg, changes)
            if image_config is not None:
                cfg = dict(image_config)
            cfg.setdefault("Hostname", "")
            now = mf.rfc3339_nano(datetime.now(UTC))
            plat = mf.host_platform()
            config: dict[str, Any] = {
                "architecture": image.config.get("architecture") or plat["architecture"],
                "author": author, "comment": comment, "config": cfg, "container": container.id,
                "container_config": container.config, "created": now, "docker_version": "", "os": "linux",
            }
            history = {"created": now, "created_by": " ".join([container.path, *container.args]),
                       "author": author, "comment": comment}
            history = {k: v for k, v in history.items() if v}
            history["created"] = now
            image_id = await self._images.commit_layer(image, layer, config, history, repo, tag)
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)
        self._containers.emit("commit", container.id, comment=comment, imageID=image_id,
                              imageRef=f"{repo}:{tag or 'latest'}" if repo else "")
        return image_id


def _filtered_layer_tar(upper: Path, out: Path, stage: Path, excluded: frozenset[str]) -> None:
    """The writable layer as a layer tar without the runtime's mount points (the container is frozen or stopped):
    written from a staging tree of hard links into the upper dir, so nothing is copied and nothing followed."""
    stage.mkdir()
    _link_tree(upper, stage, "", excluded)
    write_layer_tar(stage, out, overlay=True)


def _link_tree(src: Path, dst: Path, rel_dir: str, excluded: frozenset[str]) -> None:
    src_fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for name in sorted(os.listdir(src_fd)):
            rel = f"{rel_dir}/{name}"
            if rel in excluded:
                continue
            st = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
            target = dst / name
            if stat.S_ISDIR(st.st_mode):
                target.mkdir()
                os.chown(target, st.st_uid, st.st_gid)
                os.chmod(target, stat.S_IMODE(st.st_mode))
                try:
                    opaque = os.getxattr(f"/proc/self/fd/{src_fd}/{name}", OPAQUE_XATTR, follow_symlinks=False)
                except OSError:
                    opaque = b""
                if opaque == b"y":
                    os.setxattr(target, OPAQUE_XATTR, b"y")
                _link_tree(src / name, target, rel, excluded)
                os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
            else:
                os.link(name, target, src_dir_fd=src_fd, follow_symlinks=False)
    finally:
        os.close(src_fd)


