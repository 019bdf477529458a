"""Docker volumes, local driver: <data-root>/volumes/<name>/_data, one record (opts.json) per volume.

A container's volume mounts are derived from its Config.Volumes and HostConfig (Binds, Mounts); an anonymous
volume's name is derived from the container id and destination, so nothing else needs persisting. Typed local
volumes (DriverOpts type/device/o) become the container's own OCI mount of that type.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiodock.engine.events import DockerEvents
from aiodock.engine.filters import labels_match
from aiodock.errors import Conflict, InvalidArgument, NotFound
from aiodock.util import atomicfile
from aiodock.util.ids import new_id

ANONYMOUS_LABEL = "com.docker.volume.anonymous"
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
LOCAL_OPTS = ("type", "device", "o", "size")
RECORD = "opts.json"
Users = Callable[[str], list[str]]


@dataclass(frozen=True, slots=True)
class MountPoint:
    """One volume mount of a container, as Docker's inspect Mounts shows it."""

    name: str
    destination: str
    rw: bool = True
    mode: str = ""
    anonymous: bool = False
    copy: bool = True  # copy-up the image's content on first use (nocopy turns it off)
    subpath: str = ""  # --mount type=volume,volume-subpath=...: mount only that directory of the volume

    def to_docker(self, mountpoint: str) -> dict[str, Any]:
        return {"Type": "volume", "Name": self.name, "Source": mountpoint, "Destination": self.destination,
                "Driver": "local", "Mode": self.mode, "RW": self.rw, "Propagation": ""}


def anonymous_name(container_id: str, destination: str) -> str:
    return hashlib.sha256(f"{container_id}:{destination}".encode()).hexdigest()


def container_volumes(container_id: str, config: dict[str, Any], host_config: dict[str, Any]) -> list[MountPoint]:
    """The volume mounts of a container: -v name:/dst and -v /dst, --mount type=volume, image VOLUMEs."""
    found: dict[str, MountPoint] = {}
    taken: set[str] = set()
    for bind in host_config.get("Binds") or []:
        parts = bind.split(":")
        if len(parts) == 1 and not parts[0].startswith("/"):
            raise InvalidArgument(f"invalid volume specification: '{bind}'")
        if len(parts) in (2, 3) and not parts[0].startswith("/") and not parts[1].startswith("/"):
            raise InvalidArgument(f"invalid volume specification: '{bind}': invalid mount config for type "
                                  f"\"volume\": invalid mount path: '{parts[1]}' mount path must be absolute")
        if len(parts) == 1:
            dst = os.path.normpath(parts[0])
            found[dst] = MountPoint(anonymous_name(container_id, dst), dst, anonymous=True)
        elif not parts[0].startswith("/") and len(parts) in (2, 3):
            dst = os.path.normpath(parts[1])
            modes = parts[2].split(",") if len(parts) == 3 else []
            found[dst] = MountPoint(parts[0], dst, rw="ro" not in modes,
                                    mode=parts[2] if len(parts) == 3 else "z", copy="nocopy" not in modes)
        elif len(parts) >= 2:
            taken.add(os.path.normpath(parts[1]))
    for m in host_config.get("Mounts") or []:
        target = os.path.normpath(m.get("Target") or "/")
        if m.get("Type") != "volume":
            taken.add(target)
            continue
        options = m.get("VolumeOptions") or {}
        source = m.get("Source") or ""
        subpath = str(options.get("Subpath") or "")
        if subpath and (subpath.startswith("/") or ".." in subpath.split("/")):
            raise InvalidArgument(f"invalid volume subpath {subpath!r}: it must be a relative path inside the volume")
        found[target] = MountPoint(source or anonymous_name(container_id, target), target,
                                   rw=not m.get("ReadOnly"), anonymous=not source, copy=not options.get("NoCopy"),
                                   subpath=subpath)
    for dst in (config.get("Volumes") or {}):
        dst = os.path.normpath(dst)
        if dst in found or dst in taken:
            continue
        found[dst] = MountPoint(anonymous_name(container_id, dst), dst, anonymous=True)
    return list(found.values())


def _created_at() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class VolumeService:
    """The engine's volume backend. Records live in memory and on disk; blocking work runs in threads."""

    def __init__(self, data_root: Path) -> None:
        self.root = Path(data_root) / "volumes"
        self.root.mkdir(parents=True, exist_ok=True, mode=0o701)
        self._volumes: dict[str, dict[str, Any]] = {}
        self._users: Users = lambda name: []
        self._events: DockerEvents | None = None
        self._lock = asyncio.Lock()
        for entry in sorted(self.root.iterdir()):
            try:
                record = atomicfile.read_json(entry / RECORD)
            except (OSError, ValueError):
                continue
            self._volumes[record["Name"]] = record

    def set_docker_events(self, events: DockerEvents) -> None:
        """Where volume create/destroy events (GET /events, type volume) are recorded."""
        self._events = events

    def set_usage_check(self, users: Users) -> None:
        """users(volume name) -> ids of the containers that mount it."""
        self._users = users

    def exists(self, name: str) -> bool:
        return name in self._volumes

    def mountpoint(self, name: str) -> str:
        return str(self.root / name / "_data")

    def _doc(self, record: dict[str, Any]) -> dict[str, Any]:
        return {"CreatedAt": record["CreatedAt"], "Driver": "local", "Labels": record.get("Labels"),
                "Mountpoint": self.mountpoint(record["Name"]), "Name": record["Name"],
                "Options": record.get("Options"), "Scope": "local"}

    def _find(self, name: str) -> dict[str, Any]:
        record = self._volumes.get(name)
        if record is None:
            raise NotFound(f"get {name}: no such volume")
        return record

    # ---- API ----------------------------------------------------------------------------------------------

    async def create_volume(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("Name") or ""
        driver = body.get("Driver") or "local"
        if driver != "local":
            raise NotFound(f"error looking up volume plugin {driver}: plugin \"{driver}\" not found")
        labels = body.get("Labels")
        opts = body.get("DriverOpts")
        if labels is not None and not isinstance(labels, dict) or opts is not None and not isinstance(opts, dict):
            raise InvalidArgument("Labels and DriverOpts must be JSON objects")
        return self._doc(await self.ensure(name or new_id(), labels, opts))

    async def ensure(self, name: str, labels: dict[str, str] | None = None, opts: dict[str, str] | None = None,
                     anonymous: bool = False) -> dict[str, Any]:
        """The volume ``name``, created when missing (as `docker run -v name:/path` does)."""
        if not NAME_RE.match(name):
            raise InvalidArgument(
                f"create {name}: \"{name}\" includes invalid characters for a local volume name, only "
                "\"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use "
                "absolute path")
        for key in opts or {}:
            if key not in LOCAL_OPTS:
                raise InvalidArgument(f"create {name}: invalid option key: \"{key}\"")
        if opts and ("type" in opts) != ("device" in opts) and opts.get("type") != "tmpfs":
            raise InvalidArgument(f"create {name}: missing required option: \"device\"")
        async with self._lock:
            existing = self._volumes.get(name)
            if existing is not None:
                return existing
            if anonymous:
                labels = {**(labels or {}), ANONYMOUS_LABEL: ""}
            record: dict[str, Any] = {"Name": name, "CreatedAt": _created_at(), "Labels": labels,
                                      "Options": opts}
            vdir = self.root / name

            def write() -> None:
                (vdir / "_data").mkdir(parents=True, exist_ok=True, mode=0o755)
                atomicfile.write_json(vdir / RECORD, record, mode=0o600)
            try:
                await asyncio.to_thread(write)
            except BaseException:
                await asyncio.to_thread(shutil.rmtree, vdir, True)
                raise
            self._volumes[name] = record
            if self._events is not None:
                self._events.record("volume", "create", name, {"driver": "local"})
            return record

    async def inspect_volume(self, name: str) -> dict[str, Any]:
        return self._doc(self._find(name))

    async def list_volumes(self, filters: dict[str, builtins.list[str]] | None = None) -> dict[str, Any]:
        filters = filters or {}
        for key in filters:
            if key not in ("dangling", "name", "label", "driver", "label!"):
                raise InvalidArgument(f"invalid filter '{key}'")
        dangling = _bool_filter(filters, "dangling")
        result = []
        for name, record in sorted(self._volumes.items()):
            if dangling is not None and (not self._users(name)) != dangling:
                continue
            if filters.get("name") and not any(re.search(v, name) for v in filters["name"]):
                continue
            if filters.get("driver") and "local" not in filters["driver"]:
                continue
            if not labels_match(record.get("Labels") or {}, filters):
                continue
            result.append(self._doc(record))
        return {"Volumes": result, "Warnings": None}

    async def disk_usage(self) -> builtins.list[dict[str, Any]]:
        """Every volume with UsageData {Size, RefCount} (GET /system/df): the bytes under its _data and how many
        containers mount it."""
        records = sorted(self._volumes.items())
        sizes = await asyncio.to_thread(lambda: [_du(Path(self.mountpoint(name))) for name, _ in records])
        return [{**self._doc(record), "UsageData": {"Size": size, "RefCount": len(self._users(name))}}
                for (name, record), size in zip(records, sizes, strict=True)]

    async def remove_volume(self, name: str, force: bool = False) -> None:
        async with self._lock:
            record = self._volumes.get(name)
            if record is None:
                if force:
                    return
                raise NotFound(f"get {name}: no such volume")
            users = self._users(name)
            if users:
                raise Conflict(f"remove {name}: volume is in use - [{' '.join(users)}]")
            await self._delete(name)

    async def remove_if_unused(self, name: str) -> bool:
        async with self._lock:
            if name not in self._volumes or self._users(name):
                return False
            await self._delete(name)
            return True

    async def _delete(self, name: str) -> None:
        vdir = self.root / name

        def remove() -> None:
            (vdir / RECORD).unlink(missing_ok=True)  # the record first: a half-removed volume is gone
            shutil.rmtree(vdir, ignore_errors=True)
        await asyncio.to_thread(remove)
        self._volumes.pop(name, None)
        if self._events is not None:
            self._events.record("volume", "destroy", name, {"driver": "local"})

    async def prune_volumes(self, filters: dict[str, builtins.list[str]] | None = None) -> dict[str, Any]:
        filters = filters or {}
        for key in filters:
            if key not in ("label", "label!", "all"):
                raise InvalidArgument(f"invalid filter '{key}'")
        everything = bool(_bool_filter(filters, "all"))
        deleted: builtins.list[str] = []
        reclaimed = 0
        for name, record in list(self._volumes.items()):
            labels = record.get("Labels") or {}
            if not everything and ANONYMOUS_LABEL not in labels:
                continue
            if not labels_match(labels, filters):
                continue
            size = await asyncio.to_thread(_du, self.root / name / "_data")
            if await self.remove_if_unused(name):
                deleted.append(name)
                reclaimed += size
        return {"VolumesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    # ---- containers ---------------------------------------------------------------------------------------

    def oci_mount(self, name: str, destination: str, options: builtins.list[str],
                  subpath: str = "") -> dict[str, Any]:
        """The OCI mount of volume ``name`` (or of its ``subpath``) at ``destination`` (from build_spec's thread)."""
        record = self._volumes.get(name)
        vopts = (record or {}).get("Options") or {}
        kind = vopts.get("type")
        if kind and subpath:
            raise InvalidArgument(f"volume {name}: a subpath needs a volume without type/device options")
        if subpath:
            base = os.path.realpath(self.mountpoint(name))
            path = os.path.realpath(os.path.join(base, subpath))  # symlinks in the volume resolved...
            if not path.startswith(base + os.sep):  # ...and not allowed to lead out of it
                raise InvalidArgument(f"volume {name}: subpath {subpath!r} leads outside the volume")
            if not os.path.isdir(path):
                raise InvalidArgument(f"cannot access path {path}: no such directory in volume {name}")
            return {"destination": destination, "type": "bind", "source": path, "options": ["rbind"] + options}
        if kind:
            extra = [o for o in (vopts.get("o") or "").split(",") if o]
            if kind == "tmpfs":
                return {"destination": destination, "type": "tmpfs", "source": vopts.get("device") or "tmpfs",
                        "options": ["nosuid", "nodev"] + extra + [o for o in options if o in ("ro",)]}
            if kind == "none" and ("bind" in extra or "rbind" in extra):
                return {"destination": destination, "type": "bind", "source": vopts["device"],
                        "options": ["rbind"] + [o for o in extra if o not in ("bind", "rbind")] + options}
            return {"destination": destination, "type": kind, "source": vopts["device"], "options": extra + options}
        path = self.mountpoint(name)
        os.makedirs(path, exist_ok=True)
        return {"destination": destination, "type": "bind", "source": path, "options": ["rbind"] + options}

    def is_typed(self, name: str) -> bool:
        return bool(((self._volumes.get(name) or {}).get("Options") or {}).get("type"))


def is_empty(path: str) -> bool:
    try:
        return not os.listdir(path)
    except FileNotFoundError:
        return True


def _du(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                continue
    return total


def _bool_filter(filters: dict[str, builtins.list[str]], key: str) -> bool | None:
    values = filters.get(key)
    if not values:
        return None
    value = values[-1].lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise InvalidArgument(f"invalid filter '{key}={values[-1]}'")
