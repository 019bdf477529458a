"""GET /info and GET /version with real figures from this host."""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from aiodock import API_VERSION, MIN_API_VERSION, __version__
from aiodock.config import DaemonConfig
from aiodock.engine.containers import ContainerService
from aiodock.engine.images import ImageService
from aiodock.engine.volumes import VolumeService

ENGINE_VERSION = f"25.0.0+aiodock.{__version__}"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "s390x": "s390x", "ppc64le": "ppc64le"}


def cgroup_version() -> str:
    return "2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "1"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "Linux"


def _mem_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _runtime_version(runtime: str) -> str:
    try:
        out = subprocess.run([runtime, "--version"], capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    for line in out.splitlines():
        if line.startswith("commit:"):
            return line.split(":", 1)[1].strip()
    return out.splitlines()[0] if out else ""


class SystemService:
    def __init__(self, *, config: DaemonConfig, containers: ContainerService, images: ImageService,
                 daemon_id: str, volumes: VolumeService | None = None) -> None:
        self._config = config
        self._containers = containers
        self._images = images
        self._volumes = volumes
        self._daemon_id = daemon_id
        self._runtime_commit: str | None = None

    async def version(self) -> dict[str, Any]:
        uname = platform.uname()
        details = {
            "ApiVersion": API_VERSION, "Arch": _ARCH.get(uname.machine, uname.machine),
            "BuildTime": "", "Experimental": "false", "GitCommit": "aiodock", "GoVersion": "python" + sys.version.split()[0],
            "KernelVersion": uname.release, "MinAPIVersion": MIN_API_VERSION, "Os": "linux",
        }
        return {
            "Platform": {"Name": f"aiodock {__version__}"},
            "Components": [{"Name": "Engine", "Version": ENGINE_VERSION, "Details": details}],
            "Version": ENGINE_VERSION,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "aiodock",
            "GoVersion": details["GoVersion"],
            "Os": "linux",
            "Arch": details["Arch"],
            "KernelVersion": uname.release,
            "BuildTime": "",
        }

    async def df(self) -> dict[str, Any]:
        """GET /system/df: images (with how many containers use each), containers with their writable-layer size,
        volumes with their usage, the unpacked layers' size on disk, and an empty build cache (aiodock has no
        builder yet)."""
        containers = await self._containers.list(all=True, size=True)
        users: dict[str, int] = {}
        for item in containers:
            users[item["ImageID"]] = users.get(item["ImageID"], 0) + 1
        images = [{**image, "Containers": users.get(image["Id"], 0), "SharedSize": 0}
                  for image in await self._images.list_images(all=True)]
        volumes = await self._volumes.disk_usage() if self._volumes is not None else []
        return {"LayersSize": await self._images.layers_size(), "Images": images, "Containers": containers,
                "Volumes": volumes, "BuildCache": []}

    async def build_prune(self) -> dict[str, Any]:
        """POST /build/prune (called by `docker system prune`): there is no build cache to reclaim."""
        return {"CachesDeleted": None, "SpaceReclaimed": 0}

    async def info(self) -> dict[str, Any]:
        if self._runtime_commit is None:
            self._runtime_commit = await asyncio.to_thread(_runtime_version, self._config.runtime)
        running, paused, stopped = self._containers.running_count()
        images = await self._images.list_images(all=True)
        uname = platform.uname()
        runtime_path = shutil.which(self._config.runtime) or self._config.runtime
        return {
            "ID": self._daemon_id,
            "Containers": self._containers.count(),
            "ContainersRunning": running,
            "ContainersPaused": paused,
            "ContainersStopped": stopped,
            "Images": len(images),
            "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"],
                             ["Using metacopy", "false"], ["Native Overlay Diff", "true"], ["userxattr", "false"]],
            "Plugins": {"Volume": ["local"], "Network": ["host", "null"], "Authorization": None,
                        "Log": ["json-file"]},
            "MemoryLimit": True, "SwapLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True, "CPUShares": True,
            "CPUSet": True, "PidsLimit": True, "IPv4Forwarding": True, "BridgeNfIptables": False,
            "BridgeNfIp6tables": False, "Debug": self._config.log_level == "debug", "NFd": _count_fds(),
            "OomKillDisable": cgroup_version() == "1", "NGoroutines": len(asyncio.all_tasks()),
            "SystemTime": _now(), "LoggingDriver": "json-file", "CgroupDriver": "cgroupfs",
            "CgroupVersion": cgroup_version(), "NEventsListener": 0, "KernelVersion": uname.release,
            "OperatingSystem": _os_name(), "OSVersion": "", "OSType": "linux",
            "Architecture": uname.machine, "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": self._images.registry.info(),
            "NCPU": os.cpu_count() or 1, "MemTotal": _mem_total(), "GenericResources": None,
            "DockerRootDir": str(self._config.data_root), "HttpProxy": os.environ.get("HTTP_PROXY", ""),
            "HttpsProxy": os.environ.get("HTTPS_PROXY", ""), "NoProxy": os.environ.get("NO_PROXY", ""),
            "Name": socket.gethostname(), "Labels": [], "ExperimentalBuild": False,
            "ServerVersion": ENGINE_VERSION,
            "Runtimes": {self._config.runtime: {"path": runtime_path}}, "DefaultRuntime": self._config.runtime,
            "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                      "Error": "", "RemoteManagers": None},
            "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "docker-init",
            "ContainerdCommit": {"ID": "aiodock-" + __version__},
            "RuncCommit": {"ID": self._runtime_commit}, "InitCommit": {"ID": ""},
            "SecurityOptions": ["name=seccomp,profile=builtin"], "Warnings": [],
            "DefaultAddressPools": None, "CDISpecDirs": [],
        }


def _count_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def _now() -> str:
    from aiodock.engine.state import rfc3339nano
    return rfc3339nano()
