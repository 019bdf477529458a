"""Docker containers on top of the core: create, start, stop, kill, wait, remove, list, inspect, logs, attach.

The container's lifecycle runs through core.runtime's TaskManager (shims over runc); its root filesystem comes from
the ImageService's snapshotter; its record lives in <data-root>/containers/<id>/ (Docker's layout) and, for `ctr`,
as a containerd container record in namespace "moby".
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import re
import secrets
import signal as _signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from aiodock.config import DaemonConfig
from aiodock.core import events as ev
from aiodock.core.images.reference import parse_normalized
from aiodock.core.metadata import ContainerRecord, ContainerStore
from aiodock.core.mount import Mount, mount_all, unmount
from aiodock.core.oci.capabilities import normalize_capability
from aiodock.core.runtime.tasks import TaskManager, TaskSpec, TaskStdin
from aiodock.engine.archive import bind_in_root, copy_up
from aiodock.engine.backend import AttachOptions, LogOptions, OutputChunk, StdinSink, WaitResult
from aiodock.engine.events import DockerEvents
from aiodock.engine.filters import labels_match, network_match, port_filter, ports_match, until_timestamp
from aiodock.engine.images import Image, ImageService
from aiodock.engine.names import NameRegistry
from aiodock.engine.networking import NetworkService
from aiodock.engine.signals import parse_signal
from aiodock.engine.spec import (
    DEFAULT_SHM_SIZE,
    build_spec,
    device_cgroup_rule,
    memory_swappiness,
    network_mode,
)
from aiodock.engine.state import Container, ContainerFiles, parse_rfc3339, rfc3339nano
from aiodock.engine.volumes import VolumeService, container_volumes, is_empty
from aiodock.errors import (
    AiodockError,
    Conflict,
    InternalError,
    InvalidArgument,
    NotFound,
    NotImplementedYet,
    NotModified,
    RuntimeFailure,
)
from aiodock.log import get_logger
from aiodock.logs import jsonfile
from aiodock.logs.drivers import DEFAULT_DRIVER as DEFAULT_LOG_DRIVER
from aiodock.logs.drivers import LogSettings, log_settings
from aiodock.network.files import write_container_files
from aiodock.util import atomicfile
from aiodock.util.humanize import human_duration
from aiodock.util.ids import new_id

log = get_logger("aiodock.engine.containers")

NAMESPACE = "moby"
RUNTIME_NAME = "io.containerd.runc.v2"
WAIT_CONDITIONS = ("not-running", "next-exit", "removed")
ID_PREFIX_RE = re.compile(r"^(sha256:)?[0-9a-f]{1,64}$")
MIN_MEMORY = 6 * 1024 * 1024


def _default_host_config(host_config: dict[str, Any]) -> dict[str, Any]:
    base: dict[str, Any] = {
        "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
        "NetworkMode": "default", "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": False, "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0], "CapAdd": None,
        "CapDrop": None, "CgroupnsMode": "host", "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None,
        "GroupAdd": None, "IpcMode": "private", "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PidMode": "",
        "Privileged": False, "PublishAllPorts": False, "ReadonlyRootfs": False, "SecurityOpt": None,
        "UTSMode": "", "UsernsMode": "", "ShmSize": DEFAULT_SHM_SIZE, "Runtime": "runc", "Isolation": "",
        "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0,
        "BlkioWeightDevice": [], "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [],
        "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": [], "DeviceCgroupRules": None,
        "DeviceRequests": None, "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": None,
        "OomKillDisable": None, "PidsLimit": None, "Ulimits": None, "CpuCount": 0, "CpuPercent": 0,
        "IOMaximumIOps": 0, "IOMaximumBandwidth": 0, "Mounts": None, "Tmpfs": None,
        "MaskedPaths": [
            "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
            "/sys/devices/virtual/powercap",
        ],
        "ReadonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    }
    for key, value in host_config.items():
        if value is not None or key not in base:
            base[key] = value
    if base.get("Privileged"):
        base["MaskedPaths"] = None
        base["ReadonlyPaths"] = None
    if not base.get("RestartPolicy") or not base["RestartPolicy"].get("Name"):
        base["RestartPolicy"] = {"Name": "no", "MaximumRetryCount": 0}
    return base


def _merge_image_config(body: dict[str, Any], image: Image) -> dict[str, Any]:
    """Docker merges the image's config under the container's (daemon/create.go + merge.go)."""
    img = image.config.get("config") or {}
    cfg: dict[str, Any] = {
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
        "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None, "Cmd": None,
        "Image": body.get("Image", ""), "Volumes": None, "WorkingDir": "", "Entrypoint": None, "OnBuild": None,
        "Labels": {},
    }
    for key in ("Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "Tty",
                "OpenStdin", "StdinOnce", "Env", "Cmd", "Volumes", "WorkingDir", "Entrypoint", "OnBuild",
                "Labels", "StopSignal", "StopTimeout", "ExposedPorts", "Healthcheck", "ArgsEscaped",
                "NetworkDisabled", "MacAddress", "Shell"):
        if key in body and body[key] is not None:
            cfg[key] = body[key]
    env = list(img.get("Env") or [])
    for item in cfg.get("Env") or []:
        name = item.split("=", 1)[0]
        env = [e for e in env if e.split("=", 1)[0] != name]
        env.append(item)
    cfg["Env"] = env
    if not cfg.get("User") and img.get("User"):
        cfg["User"] = img["User"]
    if not cfg.get("WorkingDir") and img.get("WorkingDir"):
        cfg["WorkingDir"] = img["WorkingDir"]
    labels = dict(img.get("Labels") or {})
    labels.update(cfg.get("Labels") or {})
    cfg["Labels"] = labels
    if not cfg.get("Entrypoint") and body.get("Entrypoint") != [""]:
        if img.get("Entrypoint"):
            cfg["Entrypoint"] = img["Entrypoint"]
            if not cfg.get("Cmd"):
                cfg["Cmd"] = img.get("Cmd")
        elif not cfg.get("Cmd"):
            cfg["Cmd"] = img.get("Cmd")
    if body.get("Entrypoint") == [""]:
        cfg["Entrypoint"] = None
    if "StopSignal" not in cfg and img.get("StopSignal"):
        cfg["StopSignal"] = img["StopSignal"]
    if img.get("ExposedPorts") and not cfg.get("ExposedPorts"):
        cfg["ExposedPorts"] = img["ExposedPorts"]
    if img.get("Volumes") and not cfg.get("Volumes"):
        cfg["Volumes"] = img["Volumes"]
    if img.get("Healthcheck"):  # the container's health-* fields win, the image's fill the rest
        cfg["Healthcheck"] = {**img["Healthcheck"], **{k: v for k, v in (cfg.get("Healthcheck") or {}).items() if v}}
    return cfg


class HealthMonitorLike(Protocol):
    def start(self, container_id: str) -> None: ...

    def stop(self, container_id: str) -> None: ...


class ContainerService:
    """The engine's ContainerBackend (aiodock.engine.backend)."""

    def __init__(self, *, config: DaemonConfig, files: ContainerFiles, images: ImageService, tasks: TaskManager,
                 records: ContainerStore, events: ev.EventExchange, namespace: str = NAMESPACE,
                 networks: NetworkService | None = None) -> None:
        self._config = config
        self._files = files
        self._images = images
        self._tasks = tasks
        self._records = records
        self._events = events
        self._ns = namespace
        self._containers: dict[str, Container] = {}
        self._names = NameRegistry()
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiters: dict[str, list[tuple[str, asyncio.Future[WaitResult]]]] = {}
        self._exit_listeners: dict[str, list[asyncio.Future[None]]] = {}
        self._monitors: dict[str, asyncio.Task[None]] = {}
        self._restarts: dict[str, asyncio.Task[None]] = {}
        self._loading = False
        self._being_removed: set[str] = set()  # rm -f and restart: no restart policy applies to those exits
        self._deferred_restarts: builtins.list[tuple[str, float]] = []
        self._backoff: dict[str, float] = {}
        self._removing: set[str] = set()
        self._docker_events: DockerEvents | None = None  # set_docker_events
        self._networks = networks
        self._exec_ids: Callable[[str], builtins.list[str]] = lambda container_id: []
        self._health: HealthMonitorLike | None = None
        self._volumes: VolumeService | None = None  # set_volumes
        self._freezer_follower: asyncio.Task[None] | None = None  # _follow_freezer, from load() on
        images.set_usage_check(self._image_users)

    def _volume_mountpoint(self, name: str) -> str:
        """Where a volume lives on the host (inspect's Mounts Source)."""
        return self._volumes.mountpoint(name) if self._volumes is not None else ""

    def set_health_monitor(self, monitor: HealthMonitorLike) -> None:
        """The health checker: started with each run of a container that has a health check, stopped at exit."""
        self._health = monitor

    async def set_health(self, container_id: str, health: dict[str, Any]) -> None:
        """State.Health, as the health checker finds it."""
        async with self._lock(container_id):
            container = self._containers.get(container_id)
            if container is not None and container.state.running:
                await self._save(container.with_state(health=health))

    def set_exec_lookup(self, exec_ids: Callable[[str], builtins.list[str]]) -> None:
        """The exec service tells inspect which exec instances a container has (ExecIDs)."""
        self._exec_ids = exec_ids

    # ---- look-ups ---------------------------------------------------------------------------------------------

    def _image_users(self, image_id: str) -> list[tuple[str, bool]]:
        return [(c.id, c.state.running) for c in list(self._containers.values()) if c.image_id == image_id]

    def _get(self, ref: str) -> Container:
        if not ref:
            raise NotFound("No such container: ")
        found = self._containers.get(ref)
        if found is not None:
            return found
        by_name = self._names.get(ref)
        if by_name is not None and by_name in self._containers:
            return self._containers[by_name]
        matches = [c for cid, c in self._containers.items() if cid.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def get(self, ref: str) -> Container:
        """A container by id, name or unique id prefix (exec and top look containers up here)."""
        return self._get(ref)

    def set_docker_events(self, events: DockerEvents) -> None:
        """Where Docker's events (GET /events) are recorded; the daemon wires it."""
        self._docker_events = events

    def _volume_events(self, action: str, container: Container) -> None:
        """Docker's volume mount (before the container's start event) and unmount (after its die) events."""
        if self._docker_events is None:
            return
        for vol in container_volumes(container.id, container.config, container.host_config):
            attributes = {"container": container.id, "driver": "local"}
            if action == "mount":
                attributes.update({"destination": vol.destination, "propagation": "",
                                   "read/write": "true" if vol.rw else "false"})
            self._docker_events.record("volume", action, vol.name, attributes)

    def _emit(self, action: str, container: Container | str, **extra: Any) -> None:
        """Record a Docker container event (no-op until set_docker_events)."""
        events = self._docker_events
        if events is None:
            return
        if isinstance(container, str):
            found = self._containers.get(container)
            if found is None:
                return
            container = found
        events.container(action, container.id, container.name, str(container.config.get("Image", "")),
                         container.config.get("Labels") or {}, **extra)

    def _lock(self, container_id: str) -> asyncio.Lock:
        return self._locks.setdefault(container_id, asyncio.Lock())

    def running_count(self) -> tuple[int, int, int]:
        states = [c.state.status for c in self._containers.values()]
        return states.count("running"), states.count("paused"), len(states) - states.count("running") - states.count("paused")

    def count(self) -> int:
        return len(self._containers)

    async def _save(self, container: Container) -> None:
        self._containers[container.id] = container
        await asyncio.to_thread(self._files.save, container)

    # ---- recovery ---------------------------------------------------------------------------------------------

    async def load(self) -> None:
        """Reload containers from disk and reconcile them with the tasks the TaskManager found; then restart what
        the restart policies ask for (after the networks are restored)."""
        self._loading = True
        try:
            await self._load()
        finally:
            self._loading = False
        for cid, delay in self._deferred_restarts:
            self._restarts[cid] = asyncio.create_task(self._restart_later(cid, delay))
        self._deferred_restarts.clear()
        if self._freezer_follower is None:
            self._freezer_follower = asyncio.create_task(self._follow_freezer())

    async def _follow_freezer(self) -> None:
        """A pause or resume made beside the Engine API (`ctr tasks pause/resume` over the gRPC socket) shows in
        State.Paused and as Docker's pause/unpause events. The task's own status decides, so an event that arrives
        after the engine already acted (its own pause, or a quick unpause) changes nothing."""
        async for envelope in self._events.subscribe(ev.TASK_PAUSED, ev.TASK_RESUMED, namespace=self._ns):
            cid = getattr(envelope.event, "container_id", "")
            if cid not in self._containers:
                continue
            async with self._lock(cid):
                container = self._containers.get(cid)
                try:
                    task_status = self._tasks.get(self._ns, cid).status
                except NotFound:
                    continue
                if container is None:
                    continue
                if task_status == "paused" and container.state.status == "running":
                    await self._save(container.with_state(status="paused"))
                    action = "pause"
                elif task_status == "running" and container.state.status == "paused":
                    await self._save(container.with_state(status="running"))
                    action = "unpause"
                else:
                    continue
            self._emit(action, container)

    async def _load(self) -> None:
        for container in await asyncio.to_thread(self._files.load_all):
            self._names.reserve(container.name, container.id)
            self._containers[container.id] = container
        for task in self._tasks.list(self._ns):
            known = self._containers.get(task.container_id)
            if known is None or not known.state.running:  # the daemon died between recording an exit and clean-up
                await self._delete_task(task.container_id)
        orphans = await self._images.remove_orphan_snapshots(set(self._containers))
        if orphans:
            log.info("removed snapshots that belonged to no container", keys=orphans)
        for container in list(self._containers.values()):
            if container.state.status == "restarting":  # the daemon went down during a policy's delay or start
                await self._delete_task(container.id)  # a start it left half-done
                self._deferred_restarts.append((container.id, 0.1))
                continue
            if not container.state.running:
                continue
            try:
                info = self._tasks.get(self._ns, container.id)
            except NotFound:
                log.warning("container task lost while the daemon was down", container=container.id)
                await self._record_exit(container.id, 255, datetime.now(UTC), error="task lost")
                continue
            if info.status == "stopped":
                await self._record_exit(container.id, info.exit_status if info.exit_status is not None else 255,
                                        info.exited_at or datetime.now(UTC), oom_killed=info.oom_killed)
            else:
                if info.pid != container.state.pid:
                    await self._save(container.with_state(pid=info.pid))
                self._monitors[container.id] = asyncio.create_task(self._monitor(container.id))
                if self._health is not None:
                    self._health.start(container.id)
                log.info("reattached running container", container=container.id, pid=info.pid)
        if self._networks is not None:
            await self._networks.restore({c.id for c in self._containers.values() if c.state.running})

    async def close(self) -> None:
        pending = [*self._monitors.values(), *self._restarts.values()]
        if self._freezer_follower is not None:
            pending.append(self._freezer_follower)
            self._freezer_follower = None
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._monitors.clear()
        self._restarts.clear()

    # ---- create -----------------------------------------------------------------------------------------------

    async def create(self, name: str | None, body: dict[str, Any]) -> tuple[str, list[str]]:
        if not isinstance(body, dict):
            raise InvalidArgument("config cannot be empty in order to create a container")
        image_ref = body.get("Image")
        if not image_ref or not isinstance(image_ref, str):
            raise InvalidArgument("config cannot be empty in order to create a container")
        host_config = body.get("HostConfig") or {}
        if not isinstance(host_config, dict):
            raise InvalidArgument("HostConfig must be a JSON object")
        warnings: list[str] = []
        mode = network_mode(host_config)
        if mode.startswith("container:"):
            host_config = self._container_network_mode(body, host_config)
        elif mode not in ("bridge", "host", "none") and not (self._networks and self._networks.exists(mode)):
            raise NotFound(f"network {mode} not found")
        for key in ("PidsLimit", "CpuShares", "NanoCpus", "Memory", "MemorySwap", "ShmSize"):
            value = host_config.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise InvalidArgument(f"json: cannot unmarshal {type(value).__name__} into Go struct field "
                                      f"HostConfig.{key} of type int64")
        memory = host_config.get("Memory") or 0
        if memory and memory < MIN_MEMORY:
            raise InvalidArgument("Minimum memory limit allowed is 6MB")
        for key in ("CapAdd", "CapDrop"):
            caps = host_config.get(key) or []
            if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
                raise InvalidArgument(f"{key} must be a list of capability names")
            for cap in caps:
                normalize_capability(cap)  # 'unknown capability: "CAP_X"' now, not at start
        policy = (host_config.get("RestartPolicy") or {}).get("Name") or "no"
        if policy not in ("", "no", "always", "on-failure", "unless-stopped"):
            raise InvalidArgument(f"invalid restart policy '{policy}'")
        if host_config.get("AutoRemove") and policy not in ("", "no"):
            raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
        self._log_settings(host_config)  # Docker refuses an unknown driver or option at create
        host_config = {**host_config, "LogConfig": self._log_config(host_config)}
        _check_namespace_modes(body, host_config)
        memory_swappiness(host_config)
        for rule in host_config.get("DeviceCgroupRules") or []:
            device_cgroup_rule(str(rule))
        if host_config.get("StorageOpt"):
            raise InvalidArgument("--storage-opt is supported only for overlay over xfs with 'pquota' mount option")
        if host_config.get("BlkioWeight") and not _BLKIO_WEIGHT_SUPPORTED:
            warnings.append("Your kernel does not support Block I/O weight or the cgroup is not mounted. "
                            "Weight discarded.")
            host_config = {**host_config, "BlkioWeight": 0}
        runtime = host_config.get("Runtime")
        if runtime and runtime != self._config.runtime:  # one runtime per daemon (--default-runtime)
            raise InvalidArgument(f"unknown or invalid runtime name: {runtime}")
        if not ID_PREFIX_RE.match(image_ref):
            parse_normalized(image_ref)  # "invalid reference format" (400) rather than "No such image" (404)
        if host_config.get("VolumesFrom"):
            host_config = {**host_config, "Binds": self._binds_from(host_config)}
        image = await self._images.resolve(image_ref)
        cfg = _merge_image_config(body, image)
        command = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
        if not command:
            raise InvalidArgument("No command specified")
        container_id = new_id()
        if name:
            cname = self._names.reserve(name, container_id)
        else:
            cname = self._names.generate(container_id)
        if not cfg.get("Hostname"):
            cfg["Hostname"] = container_id[:12] if mode != "host" else _host_name()
        mac = _mac_address(body, mode)
        if mac:
            cfg["MacAddress"] = mac
        container = Container(
            id=container_id, name=cname, created=rfc3339nano(), path=command[0], args=tuple(command[1:]),
            config=cfg, host_config=_default_host_config(host_config), image_id=image.id,
        )
        made_volumes: list[str] = []
        try:
            await self._images.prepare_rootfs(image, container_id)
            await self._create_volumes(container, made_volumes)
            await self._save(container)
            if self._networks is not None and not mode.startswith("container:"):  # --network-alias, --ip
                await self._networks.configure(container_id, mode, body.get("NetworkingConfig"))
            now = datetime.now(UTC)
            await asyncio.to_thread(self._records.create, self._ns, ContainerRecord(
                id=container_id, image=image.repo_tags[0] if image.repo_tags else image.id,
                runtime_name=RUNTIME_NAME, spec=None, snapshotter="overlayfs", snapshot_key=container_id,
                labels=dict(cfg.get("Labels") or {}), created_at=now, updated_at=now,
            ))
        except BaseException:
            self._names.release(cname)
            self._containers.pop(container_id, None)
            if self._volumes is not None:
                for vname in made_volumes:
                    await self._volumes.remove_if_unused(vname)
            await self._images.remove_rootfs(container_id)
            await asyncio.to_thread(self._files.remove, container_id)
            if self._networks is not None:
                await self._networks.detach(container_id, forget=True)
            raise
        self._events.publish(self._ns, ev.CONTAINER_CREATE, ev.ContainerCreate(container_id, image_ref, RUNTIME_NAME))
        self._emit("create", container_id)  # docker event
        return container_id, warnings

    def _container_network_mode(self, body: dict[str, Any], host_config: dict[str, Any]) -> dict[str, Any]:
        """`--network container:<name|id>`: Docker's conflicting options (400), and the target resolved to its full
        id when it exists (else it must by start)."""
        target = str(host_config["NetworkMode"]).partition(":")[2]
        if not target:
            raise InvalidArgument("Invalid network mode: invalid container format container:<name|id>")
        conflicts = (
            (body.get("Hostname"), "conflicting options: hostname and the network mode"),
            (host_config.get("Links"), "conflicting options: container type network can't be used with links. "
                                       "This would result in undefined behavior"),
            (host_config.get("Dns"), "conflicting options: dns and the network mode"),
            (host_config.get("ExtraHosts"), "conflicting options: custom host-to-IP mapping and the network mode"),
            (body.get("MacAddress") or any(isinstance(ep, dict) and ep.get("MacAddress") for ep in (
                (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}).values()),
             "conflicting options: mac-address and the network mode"),  # API >= 1.44: per endpoint
            (host_config.get("PortBindings") or host_config.get("PublishAllPorts"),
             "conflicting options: port publishing and the container type network mode"),
            (body.get("ExposedPorts"), "conflicting options: port exposing and the container type network mode"),
        )
        for value, message in conflicts:
            if value:
                raise InvalidArgument(message)
        try:
            return {**host_config, "NetworkMode": f"container:{self._get(target).id}"}
        except (NotFound, InvalidArgument):
            return host_config

    def _network_container(self, container: Container) -> tuple[Container, str]:
        """At start, for container:<id> mode: the running container whose network namespace to join, and the
        path of that namespace."""
        target = network_mode(container.host_config).partition(":")[2]
        other = self._join_target(container, target, "network", "network")
        att = self._networks.attachment(other.id) if self._networks is not None else None
        return other, att.netns_path if att is not None else f"/proc/{other.state.pid}/ns/net"

    def _join_target(self, container: Container, target: str, own: str, what: str) -> Container:
        """The running container whose namespace a ``container:<target>`` mode joins at start, with Docker's errors
        ("cannot join own network", "cannot join IPC of a non running container: x", ...)."""
        try:
            other = self._get(target)
        except NotFound as exc:
            raise _JoinNotFound(exc.message) from None
        if other.id == container.id:
            raise _JoinFailed(f"cannot join own {own}")
        if other.state.status == "restarting" or (other.state.running and not other.state.pid):
            raise _JoinFailed(f"Container {target} is restarting, wait until the container is running")
        if not other.state.running:
            raise _JoinFailed(f"cannot join {what} of a non running container: {target}")
        return other

    def _namespace_container(self, container: Container, kind: str) -> Container | None:
        """At start, for ``--pid``/``--ipc container:<id>``: the running container whose namespace to join (its
        /proc/<pid>/ns/<kind>); None for the other modes. An IPC donor must be shareable, as Docker's."""
        value = str(container.host_config.get("PidMode" if kind == "pid" else "IpcMode") or "")
        if not value.startswith("container:"):
            return None
        other = self._join_target(container, value.partition(":")[2], f"{kind.upper()} namespace", kind.upper())
        if kind == "ipc" and other.host_config.get("IpcMode") != "shareable":
            raise _JoinFailed("non-shareable IPC (hint: use IpcMode:shareable for the donor container)")
        return other

    def _shm_dir(self, cid: str) -> Path:
        """The host-side /dev/shm of a shareable-IPC container (Docker's containers/<id>/mounts/shm)."""
        return self._files.dir(cid) / "mounts" / "shm"

    async def _release_shm(self, container: Container | None) -> None:
        if container is not None and container.host_config.get("IpcMode") == "shareable":
            await asyncio.to_thread(unmount, self._shm_dir(container.id))

    # ---- volumes and the root filesystem (archive, commit) ----------------------------------------------------

    def set_volumes(self, volumes: VolumeService) -> None:
        """The daemon wires the volume service: create makes and fills a container's volumes, rm -v drops them."""
        self._volumes = volumes
        volumes.set_usage_check(self._volume_users)

    def _volume_users(self, name: str) -> builtins.list[str]:
        return [c.id for c in list(self._containers.values())
                if any(v.name == name for v in container_volumes(c.id, c.config, c.host_config))]

    async def _create_volumes(self, container: Container, made: builtins.list[str]) -> None:
        """Docker's create: every volume mount gets its volume (made when missing); an empty volume is filled
        from the image's content at its destination (copy-up)."""
        mounts = container_volumes(container.id, container.config, container.host_config)
        if not mounts:
            return
        if self._volumes is None:
            raise NotImplementedYet("volumes are not served by this daemon")
        fill: builtins.list[tuple[str, str]] = []
        for mp in mounts:
            existed = self._volumes.exists(mp.name)
            await self._volumes.ensure(mp.name, anonymous=mp.anonymous)
            if not existed:
                made.append(mp.name)
            path = self._volumes.mountpoint(mp.name)
            if mp.copy and not self._volumes.is_typed(mp.name) and await asyncio.to_thread(is_empty, path):
                fill.append((mp.destination, path))
        if fill:
            async with self._mounted_rootfs(container.id) as rootfs:
                for destination, path in fill:
                    await asyncio.to_thread(copy_up, str(rootfs), destination, path)

    @contextlib.asynccontextmanager
    async def _mounted_rootfs(self, container_id: str, with_mounts: bool = False) -> AsyncIterator[Path]:
        """The container's (stopped) rootfs snapshot mounted read-write in a temp dir, unmounted after; with
        ``with_mounts`` its binds and local volumes are mounted in it too, as the container would see them."""
        mounts = await self._images.rootfs_mounts(container_id)
        target = self._config.exec_root / "rootfs-mnt" / f"{container_id[:12]}-{secrets.token_hex(4)}"
        await asyncio.to_thread(mount_all, mounts, target)
        try:
            if with_mounts:
                container = self._get(container_id)
                extra = sorted(_mounts(container, self._volume_mountpoint),
                               key=lambda m: len([p for p in m["Destination"].split("/") if p]))
                for m in extra:
                    if m["Type"] == "volume" and self._volumes is not None and self._volumes.is_typed(m["Name"]):
                        continue  # tmpfs and device volumes exist only while a container runs
                    if m["Type"] in ("bind", "volume") and m["Source"]:
                        await asyncio.to_thread(bind_in_root, str(target), m["Source"], m["Destination"],
                                                not m["RW"])
            yield target
        finally:
            await asyncio.to_thread(unmount, target)
            await asyncio.to_thread(_rmdir_quietly, target)

    async def cleanup_rootfs_mounts(self) -> None:
        """At start-up: unmount and remove the temp rootfs mounts of a cp/export the daemon died during."""
        base = self._config.exec_root / "rootfs-mnt"

        def sweep() -> None:
            if not base.is_dir():
                return
            for entry in base.iterdir():
                unmount(entry)
                _rmdir_quietly(entry)
        await asyncio.to_thread(sweep)

    @contextlib.asynccontextmanager
    async def container_root(self, ref: str) -> AsyncIterator[tuple[Container, Path]]:
        """The container's root as its processes see it (volumes included) when running, else its rootfs
        snapshot mounted for the duration; the container cannot start meanwhile."""
        container = self._get(ref)
        if container.id in self._removing:
            raise Conflict(f"removal of container {container.id[:12]} is already in progress")
        if container.state.running and container.state.pid:
            yield container, Path(f"/proc/{container.state.pid}/root")
            return
        async with self._lock(container.id):
            container = self._get(container.id)
            if container.state.running and container.state.pid:
                yield container, Path(f"/proc/{container.state.pid}/root")
                return
            async with self._mounted_rootfs(container.id, with_mounts=True) as rootfs:
                yield container, rootfs

    @contextlib.asynccontextmanager
    async def layer_root(self, ref: str) -> AsyncIterator[tuple[Container, Path]]:
        """The container's root filesystem alone (no volumes, /proc or /sys): the task's mounted bundle rootfs
        when running, else the snapshot mounted for the duration (export)."""
        container = self._get(ref)
        async with self._lock(container.id):
            container = self._get(container.id)
            if container.state.running:
                yield container, self._tasks.bundle_path(self._ns, container.id) / "rootfs"
                return
            async with self._mounted_rootfs(container.id) as rootfs:
                yield container, rootfs

    async def rootfs_layer(self, ref: str) -> tuple[Container, builtins.list[Mount]]:
        """The container and its snapshot mounts (upperdir = its writable layer) for diff and commit."""
        container = self._get(ref)
        return container, await self._images.rootfs_mounts(container.id)

    def volume_destinations(self, ref: str) -> builtins.list[str]:
        """Where the container's binds, volumes and tmpfs mounts are (left out of diff and commit)."""
        container = self._get(ref)
        mounted = [m["Destination"] for m in _mounts(container, self._volume_mountpoint)]
        tmpfs = [m.get("Target", "") for m in container.host_config.get("Mounts") or [] if m.get("Type") == "tmpfs"]
        return mounted + list(container.host_config.get("Tmpfs") or {}) + tmpfs

    def writable_mounts(self, ref: str) -> builtins.list[str]:
        """Destinations of the container's read-write binds and volumes (cp into a read-only rootfs)."""
        return [m["Destination"] for m in _mounts(self._get(ref), self._volume_mountpoint) if m.get("RW")]

    def emit(self, action: str, ref: str, **extra: Any) -> None:
        """Record a Docker container event for archive/commit operations (extract-to-dir, commit, ...)."""
        self._emit(action, self._get(ref), **extra)

    def _binds_from(self, host_config: dict[str, Any]) -> builtins.list[str]:
        """--volumes-from CONTAINER[:ro|rw]: the source's volumes and binds, at the same destinations, as binds of
        the new container (resolved at create, as Docker does). The container's own binds win on a clash."""
        binds = list(host_config.get("Binds") or [])
        taken = {b.split(":")[1] for b in binds if ":" in b}
        taken |= {m.get("Target", "") for m in host_config.get("Mounts") or []}
        for spec in host_config["VolumesFrom"]:
            ref, _, mode = str(spec).partition(":")
            if mode not in ("", "ro", "rw"):
                raise InvalidArgument(f"invalid mode for volumes-from: {mode}")
            source = self._get(ref)
            for mount in _mounts(source, self._volume_mountpoint):
                if mount["Type"] not in ("volume", "bind") or mount["Destination"] in taken:
                    continue
                origin = mount["Name"] if mount["Type"] == "volume" else mount["Source"]
                access = mode or ("rw" if mount["RW"] else "ro")
                binds.append(f"{origin}:{mount['Destination']}:{access}")
                taken.add(mount["Destination"])
        return binds

    # ---- start ------------------------------------------------------------------------------------------------

    async def start(self, ref: str) -> None:
        container = self._get(ref)
        starting = False
        try:
            async with self._lock(container.id):
                container = self._get(container.id)
                if container.state.status == "paused":
                    raise Conflict("cannot start a paused container, try unpause instead")
                if container.state.running:
                    raise NotModified("container already started")
                if container.id in self._removing:
                    raise Conflict("container is marked for removal and cannot be started")
                starting = True
                await self._start_locked(container)
        except AiodockError:
            # As Docker: a --rm container that cannot start is removed (its waiters for "removed" then answer).
            if starting and container.host_config.get("AutoRemove"):
                try:
                    await self.remove(container.id, force=True)
                except NotFound:
                    pass
            raise

    async def _start_locked(self, container: Container) -> None:
        cid = container.id
        cdir = self._files.dir(cid)
        hc = container.host_config
        mode = network_mode(hc)
        began = time.perf_counter()
        rootfs = await self._images.rootfs_mounts(cid)
        attachment = None
        shared: tuple[Container, str] | None = None  # container:<id> mode: whose network namespace (path) to join
        if mode.startswith("container:"):
            shared = self._network_container(container)
            container = replace(container, config={**container.config, "Hostname": shared[0].config.get("Hostname"),
                                                   "Domainname": shared[0].config.get("Domainname", "")})
        if self._networks is not None:
            attachment = await self._networks.attach(
                cid, mode, port_bindings=hc.get("PortBindings"), publish_all=bool(hc.get("PublishAllPorts")),
                exposed_ports=container.config.get("ExposedPorts"), dns_servers=hc.get("Dns"),
                mac_address=container.config.get("MacAddress") or None)
        try:
            joined = {kind: self._namespace_container(container, kind) for kind in ("pid", "ipc")}
            shm_source: Path | None = None  # a host tmpfs as /dev/shm: shareable, or the donor's
            if hc.get("IpcMode") == "shareable":
                shm_source = self._shm_dir(cid)
                size = int(hc.get("ShmSize") or DEFAULT_SHM_SIZE)
                await asyncio.to_thread(_mount_shm, shm_source, size)
            elif joined["ipc"] is not None:
                shm_source = self._shm_dir(joined["ipc"].id)
            await asyncio.to_thread(
                write_container_files, cdir,
                socket.gethostname() if hc.get("UTSMode") == "host" else container.config.get("Hostname") or cid[:12],
                mode == "host",
                hc.get("ExtraHosts"), hc.get("Dns"), hc.get("DnsSearch"), hc.get("DnsOptions"),
                attachment.ip if attachment else None,
                embedded_dns=self._networks is not None and self._networks.embedded_dns(cid),
            )
            if shared is not None:  # as Docker: the other container's hostname, hosts and resolv.conf
                await asyncio.to_thread(_copy_network_files, self._files.dir(shared[0].id), cdir)
            spec = await asyncio.to_thread(
                build_spec, container_id=cid, config=container.config, host_config=hc,
                args=[container.path, *container.args], rootfs=rootfs, container_dir=cdir,
                cgroup_parent=hc.get("CgroupParent") or self._config.cgroup_parent,
                netns_path=attachment.netns_path if attachment else shared[1] if shared else None,
                volume_mount=self._volumes.oci_mount if self._volumes is not None else None,
                pid_target=joined["pid"].state.pid if joined["pid"] else None,
                ipc_target=joined["ipc"].state.pid if joined["ipc"] else None, shm_source=shm_source,
            )
        except BaseException:
            await self._detach_network(cid)
            await self._release_shm(container)
            raise
        logging = self._log_settings(hc)
        task = TaskSpec(
            namespace=self._ns, container_id=cid, spec=spec, rootfs=tuple(rootfs),
            log_path=self._files.log_path(cid), log_max_size=logging.max_size, log_max_files=logging.max_files,
            stdin=bool(container.config.get("OpenStdin")), terminal=bool(container.config.get("Tty")),  # issue #3
        )
        prepared = time.perf_counter()
        try:
            await self._tasks.create(task)
            created = time.perf_counter()
            info = await self._tasks.start_task(self._ns, cid)
        except RuntimeFailure as exc:
            await self._cleanup_failed_task(cid)
            message = f"failed to create task for container: {exc.message}"
            code = 127 if ("not found" in exc.message or "no such file" in exc.message) else \
                126 if "permission denied" in exc.message else 128
            status = "exited" if container.has_been_started else "created"
            await self._save(container.with_state(status=status, error=message, exit_code=code))
            raise RuntimeFailure(message) from exc
        except BaseException:
            await self._cleanup_failed_task(cid)
            raise
        container = replace(container, has_been_started=True, manually_stopped=False)
        await self._save(container.with_state(
            status="running", pid=info.pid, exit_code=0, error="", started_at=rfc3339nano(),
            finished_at="0001-01-01T00:00:00Z", oom_killed=False,
        ))
        self._volume_events("mount", container)
        self._emit("start", cid)  # docker event
        self._monitors[cid] = asyncio.create_task(self._monitor(cid))
        if self._health is not None:
            self._health.start(cid)
        log.debug("container started", container=cid, pid=info.pid,
                  prepare_ms=round((prepared - began) * 1000, 1), create_ms=round((created - prepared) * 1000, 1),
                  start_ms=round((time.perf_counter() - created) * 1000, 1))

    async def _cleanup_failed_task(self, cid: str) -> None:
        try:
            await self._tasks.delete(self._ns, cid, force=True)
        except AiodockError:
            pass
        await self._detach_network(cid)
        await self._release_shm(self._containers.get(cid))

    async def _detach_network(self, cid: str, forget: bool = False) -> None:
        if self._networks is not None:
            try:
                await self._networks.detach(cid, forget=forget)
            except (AiodockError, OSError) as exc:
                log.warning("network detach failed", container=cid, error=str(exc))

    async def _monitor(self, cid: str) -> None:
        try:
            exit_event = await self._tasks.wait(self._ns, cid)
        except asyncio.CancelledError:
            raise
        except NotFound:
            await self._record_exit(cid, 255, datetime.now(UTC), error="task lost")
            return
        except Exception as exc:  # noqa: BLE001 - the shim vanished: containerd reports 255 too
            log.error("waiting for task failed", container=cid, error=str(exc))
            await self._record_exit(cid, 255, datetime.now(UTC), error=str(exc))
            return
        finally:
            self._monitors.pop(cid, None)
        await self._record_exit(cid, exit_event.exit_status, exit_event.exited_at, oom_killed=exit_event.oom_killed)

    async def _record_exit(self, cid: str, exit_code: int, exited_at: datetime, error: str = "",
                           oom_killed: bool = False) -> None:
        auto_remove = False
        async with self._lock(cid):
            container = self._containers.get(cid)
            if container is None or not container.state.running:
                return
            if self._health is not None:
                self._health.stop(cid)
            container = container.with_state(status="exited", exit_code=exit_code, pid=0, error=error,
                                             finished_at=rfc3339nano(exited_at), oom_killed=oom_killed)
            await self._save(container)
            if oom_killed:
                self._emit("oom", container)  # docker event, before "die" as Docker sends them
            self._emit("die", container, exitCode=str(exit_code))  # docker event
            self._volume_events("unmount", container)
            auto_remove = bool(container.host_config.get("AutoRemove"))
            delay = self._restart_delay(container)  # decided before stop/restart/rm callers wake up
            self._notify_exit(cid, exit_code)  # stop/wait answer now; the clean-up below still holds the lock
            await self._delete_task(cid)
            await self._detach_network(cid)
            await self._release_shm(container)
            if delay is not None:
                await self._save(container.with_state(status="restarting"))
                if self._loading:  # start-up: networks are restored first, then the restarts run
                    self._deferred_restarts.append((cid, delay))
                else:
                    self._restarts[cid] = asyncio.create_task(self._restart_later(cid, delay))
        if auto_remove:
            try:
                await self.remove(cid, force=True)
            except NotFound:
                pass

    # ---- restart policies -------------------------------------------------------------------------------------

    def _restart_delay(self, container: Container) -> float | None:
        """Seconds before the restart policy starts the container again, or None. Docker's growing delay: 100 ms,
        doubled at each restart up to a minute, back to 100 ms once a run lasted 10 s."""
        policy = container.host_config.get("RestartPolicy") or {}
        name = policy.get("Name") or "no"
        if name == "no" or container.manually_stopped or container.host_config.get("AutoRemove") \
                or container.id in self._being_removed:
            return None
        if name == "on-failure":
            retries = int(policy.get("MaximumRetryCount") or 0)
            if container.state.exit_code == 0 or (retries and container.restart_count >= retries):
                return None
        ran = (parse_rfc3339(container.state.finished_at) - parse_rfc3339(container.state.started_at)).total_seconds()
        previous = self._backoff.get(container.id, 0.0)
        delay = 0.1 if ran >= 10 or previous == 0 else min(previous * 2, 60.0)
        self._backoff[container.id] = delay
        return delay

    async def _restart_later(self, cid: str, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            async with self._lock(cid):
                container = self._containers.get(cid)
                if container is None or container.state.status != "restarting":
                    return  # stopped or removed meanwhile
                container = replace(container, restart_count=container.restart_count + 1)
                try:
                    await self._start_locked(container)
                except AiodockError as exc:
                    log.warning("restart policy could not start the container", container=cid, error=str(exc))
                    await self._save(self._containers[cid].with_state(status="exited", error=str(exc)))
        finally:
            self._restarts.pop(cid, None)

    async def _cancel_restart(self, container: Container, manually: bool) -> Container:
        """A restarting container (waiting for its policy's delay) becomes plainly exited."""
        pending = self._restarts.pop(container.id, None)
        if pending is not None:
            pending.cancel()
        container = replace(container, manually_stopped=manually or container.manually_stopped)
        container = container.with_state(status="exited")
        await self._save(container)
        return container

    async def _delete_task(self, cid: str) -> None:
        try:
            await self._tasks.delete(self._ns, cid, force=True)
        except NotFound:
            pass
        except AiodockError as exc:
            log.warning("deleting task failed", container=cid, error=str(exc))

    def _notify_exit(self, cid: str, exit_code: int) -> None:
        self._release_exit_listeners(cid)
        keep = []
        for condition, waiter in self._waiters.get(cid, []):
            if condition in ("not-running", "next-exit"):
                if not waiter.done():
                    waiter.set_result(WaitResult(exit_code))
            else:
                keep.append((condition, waiter))
        self._waiters[cid] = keep

    def _release_exit_listeners(self, cid: str) -> None:
        for listener in self._exit_listeners.pop(cid, []):
            if not listener.done():
                listener.set_result(None)

    # ---- stop / kill / restart --------------------------------------------------------------------------------

    def _exit_future(self, cid: str) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._exit_listeners.setdefault(cid, []).append(fut)
        return fut

    async def _signal(self, container: Container, signum: int) -> None:
        self._emit("kill", container, signal=str(signum))  # before the signal: the die event cannot precede it
        await self._tasks.kill(self._ns, container.id, signum)
        current = self._containers.get(container.id)
        if current is not None and current.state.status == "paused":
            # As Docker: a frozen container gets the signal once thawed, so unpause after signalling.
            try:
                await self._tasks.resume(self._ns, container.id)
            except AiodockError as exc:
                log.warning("cannot unpause container", container=container.id, error=str(exc))
                return
            current = self._containers.get(container.id)
            if current is not None and current.state.status == "paused":
                await self._save(current.with_state(status="running"))
            self._emit("unpause", container)

    # ---- pause / unpause / top --------------------------------------------------------------------------------

    async def pause(self, ref: str) -> None:
        container = self._get(ref)
        async with self._lock(container.id):
            container = self._get(container.id)
            if container.state.status == "paused":
                raise Conflict(f"Container {container.id} is already paused")
            if container.state.status == "restarting":
                raise Conflict(f"Container {container.id} is restarting, wait until the container is running")
            if not container.state.running:
                raise Conflict(f"Container {container.id} is not running")
            await self._tasks.pause(self._ns, container.id)
            await self._save(container.with_state(status="paused"))
        self._emit("pause", container)

    async def unpause(self, ref: str) -> None:
        container = self._get(ref)
        async with self._lock(container.id):
            container = self._get(container.id)
            if container.state.status != "paused":
                raise Conflict(f"Container {container.id} is not paused")
            await self._tasks.resume(self._ns, container.id)
            await self._save(container.with_state(status="running"))
        self._emit("unpause", container)

    # ---- update -----------------------------------------------------------------------------------------------

    async def update(self, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /containers/{id}/update (Docker's UpdateConfig: resources and RestartPolicy). Validated as Docker
        does, merged into the HostConfig and persisted (a later start uses it); a running or paused container
        also gets the changed resources at once (`runc update` in its shim). Returns {"Warnings": [...]}."""
        if not isinstance(body, dict):
            raise InvalidArgument("invalid JSON: json: cannot unmarshal into Go value of type container.UpdateConfig")

        def go_kind(value: Any) -> str:
            return {bool: "bool", str: "string", int: "number", float: "number", list: "array",
                    dict: "object"}.get(type(value), type(value).__name__)

        def integer(key: str) -> int:
            value = body.get(key)
            if value is None:
                return 0
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidArgument(f"json: cannot unmarshal {go_kind(value)} into Go struct field "
                                      f"UpdateConfig.{key} of type int64")
            return value

        memory, swap, reservation = integer("Memory"), integer("MemorySwap"), integer("MemoryReservation")
        nano_cpus, shares = integer("NanoCpus"), integer("CpuShares")
        period, quota = integer("CpuPeriod"), integer("CpuQuota")
        pids_limit: int | None = integer("PidsLimit") if body.get("PidsLimit") is not None else None
        cpuset = body.get("CpusetCpus") or ""
        if not isinstance(cpuset, str):
            raise InvalidArgument(f"json: cannot unmarshal {go_kind(cpuset)} into Go struct field "
                                  "UpdateConfig.CpusetCpus of type string")
        policy = body.get("RestartPolicy") or {}
        if not isinstance(policy, dict):
            raise InvalidArgument(f"json: cannot unmarshal {go_kind(policy)} into Go struct field "
                                  "UpdateConfig.RestartPolicy of type container.RestartPolicy")
        policy_name = policy.get("Name") or ""
        retries = policy.get("MaximumRetryCount") or 0
        if not isinstance(policy_name, str) or not isinstance(retries, int) or isinstance(retries, bool):
            raise InvalidArgument("invalid restart policy")
        # daemon/daemon_unix.go verifyPlatformContainerResources (update=true) and validateRestartPolicy
        if memory and memory < MIN_MEMORY:
            raise InvalidArgument("Minimum memory limit allowed is 6MB")
        if memory > 0 and swap > 0 and swap < memory:
            raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
        if reservation and reservation < MIN_MEMORY:
            raise InvalidArgument("Minimum memory reservation allowed is 6MB")
        if memory > 0 and reservation > 0 and memory < reservation:
            raise InvalidArgument("Minimum memory limit can not be less than memory reservation limit, see usage")
        if nano_cpus > 0 and period > 0:
            raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
        if nano_cpus > 0 and quota > 0:
            raise InvalidArgument("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
        ncpu = os.cpu_count() or 1
        if nano_cpus < 0 or nano_cpus > ncpu * 1_000_000_000:
            raise InvalidArgument(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available")
        if shares < 0:
            raise InvalidArgument("invalid CPU shares: must be positive")
        if period and not 1000 <= period <= 1_000_000:
            raise InvalidArgument("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
        if quota > 0 and quota < 1000:
            raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
        if cpuset:
            wanted: set[int] = set()
            for part in cpuset.split(","):
                low, dash, high = part.strip().partition("-")
                if not low.isdigit() or (dash and not high.isdigit()) or (dash and int(high) < int(low)):
                    raise InvalidArgument(f"Invalid value {cpuset} for cpuset cpus")
                wanted.update(range(int(low), int(high if dash else low) + 1))
            if max(wanted) >= ncpu:
                available = "0" if ncpu == 1 else f"0-{ncpu - 1}"
                raise InvalidArgument(f"Requested CPUs are not available - requested {cpuset}, available: {available}")
        if policy_name not in ("", "no", "always", "on-failure", "unless-stopped"):
            raise InvalidArgument(f"invalid restart policy: unknown policy '{policy_name}'; use one of 'no', "
                                  "'always', 'on-failure', or 'unless-stopped'")
        if retries < 0:
            raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
        if retries and policy_name and policy_name != "on-failure":
            raise InvalidArgument("invalid restart policy: maximum retry count can only be used with 'on-failure'")

        container = self._get(ref)
        async with self._lock(container.id):
            container = self._get(container.id)
            cid = container.id
            if cid in self._removing or cid in self._being_removed:
                raise Conflict(f"Cannot update container {cid}: container is marked for removal and cannot be "
                               '"update"')
            hc = dict(container.host_config)
            # container/container_unix.go UpdateContainer: NanoCpus and CpuPeriod/CpuQuota exclude each other
            if nano_cpus > 0 and (hc.get("CpuPeriod") or 0) > 0 or period > 0 and (hc.get("NanoCpus") or 0) > 0:
                raise Conflict(f"Cannot update container {cid}: Conflicting options: CPU Period cannot be updated "
                               "as NanoCPUs has already been set")
            if nano_cpus > 0 and (hc.get("CpuQuota") or 0) > 0 or quota > 0 and (hc.get("NanoCpus") or 0) > 0:
                raise Conflict(f"Cannot update container {cid}: Conflicting options: CPU Quota cannot be updated "
                               "as NanoCPUs has already been set")
            old_swap = hc.get("MemorySwap") or 0
            if memory and not swap and old_swap > 0 and memory > old_swap:
                raise Conflict(f"Cannot update container {cid}: Memory limit should be smaller than already set "
                               "memoryswap limit, update the memoryswap at the same time")
            if policy_name and policy_name != "no" and hc.get("AutoRemove"):
                raise Conflict(f"Cannot update container {cid}: Restart policy cannot be updated because "
                               "AutoRemove is enabled for the container")
            for key, value in (("Memory", memory), ("MemorySwap", swap), ("MemoryReservation", reservation),
                               ("NanoCpus", nano_cpus), ("CpuShares", shares), ("CpuPeriod", period),
                               ("CpuQuota", quota), ("CpusetCpus", cpuset)):
                if value:
                    hc[key] = value
            if pids_limit is not None:
                hc["PidsLimit"] = pids_limit if pids_limit > 0 else None
            if policy_name:
                hc["RestartPolicy"] = {"Name": policy_name, "MaximumRetryCount": retries}
            merged_memory, merged_swap = hc.get("Memory") or 0, hc.get("MemorySwap") or 0
            if merged_swap > 0 and not merged_memory:  # the next start's spec would refuse it
                raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit, see usage")
            if merged_swap > 0 and merged_swap < merged_memory:
                raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
            # daemon/update_linux.go toContainerdResources: the changed values only (zero: left as it is)
            resources: dict[str, Any] = {}
            mem = {k: v for k, v in (("limit", memory), ("reservation", reservation), ("swap", swap)) if v}
            if mem:
                resources["memory"] = mem
            cpu: dict[str, Any] = {}
            if shares:
                cpu["shares"] = shares
            if nano_cpus:
                cpu["period"] = 100_000
                cpu["quota"] = nano_cpus * 100_000 // 1_000_000_000
            if quota:
                cpu["quota"] = quota
            if period:
                cpu["period"] = period
            if cpuset:
                cpu["cpus"] = cpuset
            if cpu:
                resources["cpu"] = cpu
            if pids_limit is not None:
                resources["pids"] = {"limit": pids_limit if pids_limit > 0 else -1}
            if resources and container.state.status in ("running", "paused"):
                try:
                    await self._tasks.update(self._ns, cid, resources)
                except (RuntimeFailure, InternalError) as exc:
                    raise InternalError(f"Cannot update container {cid}: {exc.message}") from exc
            await self._save(replace(container, host_config=hc))
        self._emit("update", container)
        return {"Warnings": []}

    async def top(self, ref: str, ps_args: str = "") -> dict[str, Any]:
        """Docker's top: the host's `ps` (default -ef), rows kept for the container's pids."""
        container = self._get(ref)
        if container.state.status == "restarting":
            raise Conflict(f"Container {container.id} is restarting, wait until the container is running")
        if not container.state.running:
            raise Conflict(f"Container {container.id} is not running")
        pids = set(await self._tasks.pids(self._ns, container.id))
        args = ps_args.split() if ps_args else ["-ef"]
        try:
            proc = await asyncio.create_subprocess_exec(
                "ps", *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise InternalError(f"Error running ps: {exc}") from None
        out, err = await proc.communicate()
        if proc.returncode:
            raise InternalError(f"Error running ps: exit status {proc.returncode}: {err.decode().strip()}")
        return parse_ps(out.decode(errors="replace"), pids)

    async def kill(self, ref: str, signal: str | None = None) -> None:
        container = self._get(ref)
        signum = parse_signal(signal, default=_signal.SIGKILL)
        if not container.state.running:
            raise Conflict(f"Cannot kill container: {ref}: Container {container.id} is not running")
        exited = self._exit_future(container.id)
        await self._signal(container, signum)
        if signum == _signal.SIGKILL:
            await _exited_within(exited, 10)

    async def stop(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        container = self._get(ref)
        if container.state.status == "restarting":
            await self._cancel_restart(container, manually=True)
            self._emit("stop", container)  # docker event
            return
        if not container.state.running:
            raise NotModified("container already stopped")
        await self._save(replace(container, manually_stopped=True))
        await self._stop_running(container, timeout, signal)
        self._emit("stop", container)  # docker event

    async def _stop_running(self, container: Container, timeout: int | None, signal: str | None) -> None:
        stop_signal = parse_signal(signal or container.config.get("StopSignal"), default=_signal.SIGTERM)
        if timeout is None:
            timeout = container.config.get("StopTimeout")
            timeout = 10 if timeout is None else int(timeout)
        exited = self._exit_future(container.id)
        try:
            await self._signal(container, stop_signal)
        except Conflict:
            pass
        if timeout < 0:
            await exited
            return
        if await _exited_within(exited, timeout):
            return
        try:
            await self._signal(container, _signal.SIGKILL)
        except (Conflict, NotFound):
            pass
        if not await _exited_within(exited, 30):
            raise Conflict(f"cannot stop container: {container.id}: tried to kill container, but did not receive an exit event")

    async def restart(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        container = self._get(ref)
        if container.state.status == "restarting":
            container = await self._cancel_restart(container, manually=False)
        if container.state.running:
            self._being_removed.add(container.id)  # this exit is ours: no restart policy applies to it
            try:
                await self._stop_running(container, timeout, signal)
            finally:
                self._being_removed.discard(container.id)
            self._emit("stop", container)  # docker event
        async with self._lock(container.id):
            container = self._get(container.id)
            if not container.state.running:
                await self._start_locked(replace(container, restart_count=container.restart_count))
        self._emit("restart", container.id)  # docker event

    # ---- wait -------------------------------------------------------------------------------------------------

    async def wait(self, ref: str, condition: str = "not-running") -> Awaitable[WaitResult]:
        condition = condition or "not-running"
        if condition not in WAIT_CONDITIONS:
            raise InvalidArgument(f"invalid condition: \"{condition}\"")
        container = self._get(ref)
        fut: asyncio.Future[WaitResult] = asyncio.get_running_loop().create_future()
        if condition == "not-running" and not container.state.running:
            fut.set_result(WaitResult(container.state.exit_code))
        else:
            self._waiters.setdefault(container.id, []).append((condition, fut))
        return fut

    # ---- remove / rename / prune ------------------------------------------------------------------------------

    async def remove(self, ref: str, force: bool = False, volumes: bool = False, link: bool = False) -> None:
        container = self._get(ref)
        if link:
            raise NotImplementedYet("container links are not supported")
        if container.id in self._removing:
            raise Conflict(f"removal of container {container.id[:12]} is already in progress")
        if container.state.status == "restarting":
            if not force:
                raise Conflict(
                    f'cannot remove container "/{container.name}": container is restarting: stop the container '
                    "before removing or force remove")
            container = await self._cancel_restart(container, manually=False)
        if container.state.running:
            if not force:
                raise Conflict(
                    f'cannot remove container "/{container.name}": container is running: stop the container '
                    "before removing or force remove")
            self._being_removed.add(container.id)
            exited = self._exit_future(container.id)
            try:
                await self._signal(container, _signal.SIGKILL)
            except (Conflict, NotFound):
                pass
            await _exited_within(exited, 30)
        try:
            await self._remove_stopped(container, volumes)
        finally:
            self._being_removed.discard(container.id)

    async def _remove_stopped(self, container: Container, volumes: bool) -> None:
        async with self._lock(container.id):
            if container.id not in self._containers or container.id in self._removing:
                return
            container = self._containers[container.id]
            if container.state.running:
                raise Conflict(f"could not kill running container {container.id}, cannot remove")
            self._removing.add(container.id)
            try:
                await self._detach_network(container.id, forget=True)
                await self._release_shm(container)
                await self._images.remove_rootfs(container.id)
                await asyncio.to_thread(self._files.remove, container.id)
                try:
                    await asyncio.to_thread(self._records.delete, self._ns, container.id)
                except NotFound:
                    pass
            finally:
                self._removing.discard(container.id)
            self._containers.pop(container.id, None)
            if self._volumes is not None and (volumes or container.host_config.get("AutoRemove")):
                for mp in container_volumes(container.id, container.config, container.host_config):
                    if mp.anonymous:  # rm -v (and --rm) drop anonymous volumes; named ones stay
                        await self._volumes.remove_if_unused(mp.name)
            self._names.release(container.name)
            self._release_exit_listeners(container.id)
            for _, waiter in self._waiters.pop(container.id, []):
                if not waiter.done():
                    waiter.set_result(WaitResult(container.state.exit_code))
        self._locks.pop(container.id, None)
        self._events.publish(self._ns, ev.CONTAINER_DELETE, ev.ContainerDelete(container.id))
        self._emit("destroy", container)  # docker event

    async def rename(self, ref: str, new_name: str) -> None:
        container = self._get(ref)
        if not new_name:
            raise InvalidArgument("Neither old nor new names may be empty")
        async with self._lock(container.id):
            container = self._get(container.id)
            if new_name.lstrip("/") == container.name:
                raise Conflict("Renaming a container with the same name as its current name")
            name = self._names.reserve(new_name, container.id)
            self._names.release(container.name)
            await self._save(replace(container, name=name))
        self._emit("rename", container.id, oldName="/" + container.name)  # docker event

    async def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        unknown = set(filters) - {"until", "label", "label!"}
        if unknown:
            raise InvalidArgument(f"invalid filter '{min(unknown)}'")
        deleted: list[str] = []
        reclaimed = 0
        until = until_timestamp(filters.get("until"))
        for container in list(self._containers.values()):
            if container.state.running or container.state.status == "removing":
                continue
            if until is not None and parse_rfc3339(container.created).timestamp() >= until:
                continue
            if not labels_match(container.config.get("Labels") or {}, filters):
                continue
            reclaimed += await self._images.rootfs_size(container.id)
            try:
                await self.remove(container.id)
            except (NotFound, Conflict):
                continue
            deleted.append(container.id)
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    # ---- list / inspect ---------------------------------------------------------------------------------------

    async def list(self, all: bool = False, limit: int = -1, size: bool = False,
                   filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        filters = filters or {}
        known = {"status", "name", "id", "label", "ancestor", "exited", "before", "since", "health", "network",
                 "volume", "publish", "expose", "is-task", "isolation", "label!"}
        for key in filters:
            if key not in known:
                raise InvalidArgument(f"invalid filter '{key}'")
        for status in filters.get("status", []):
            if status not in ("created", "restarting", "running", "removing", "paused", "exited", "dead"):
                raise InvalidArgument(f"invalid filter 'status={status}'")
        for health in filters.get("health", []):
            if health not in ("starting", "healthy", "unhealthy", "none"):
                raise InvalidArgument(f"Unrecognised filter value for health: {health}")
        for value in filters.get("is-task", []):
            if value not in ("true", "false"):
                raise InvalidArgument(f"Invalid filter 'is-task={value}'")
        ordered = sorted(self._containers.values(), key=lambda c: c.created, reverse=True)
        before = self._creation_bound(filters.get("before"))
        since = self._creation_bound(filters.get("since"))
        ancestors = await self._ancestor_ids(filters.get("ancestor", []))
        publish = port_filter("publish", filters.get("publish", []))
        expose = port_filter("expose", filters.get("expose", []))
        if limit and limit > 0 or filters.get("status") or filters.get("exited"):
            all = True
        result = []
        for container in ordered:
            st = container.state
            if not all and not st.running:
                continue
            if filters.get("status") and st.status not in filters["status"]:
                continue
            if filters.get("exited") and (st.status != "exited" or str(st.exit_code) not in filters["exited"]):
                continue
            if filters.get("id") and not any(container.id.startswith(v) for v in filters["id"]):
                continue
            if filters.get("name") and not any(re.search(v.lstrip("/"), container.name) for v in filters["name"]):
                continue
            if not labels_match(container.config.get("Labels") or {}, filters):
                continue
            if ancestors is not None and container.image_id not in ancestors:
                continue
            if before is not None and container.created >= before:
                continue
            if since is not None and container.created <= since:
                continue
            if filters.get("network") and not network_match(self._network_entries(container), filters["network"]):
                continue
            if (publish or expose) and not ports_match(self._port_entries(container), publish, expose):
                continue
            if filters.get("health") and (st.health or {}).get("Status", "none") not in filters["health"]:
                continue  # a container without a health check is "none"
            if "true" in filters.get("is-task", []):
                continue  # no container here is a swarm task
            summary = await self._summary(container, size)
            if filters.get("volume") and not _mounts_volume(summary["Mounts"], filters["volume"]):
                continue
            result.append(summary)
            if limit and 0 < limit <= len(result):
                break
        return result

    def _creation_bound(self, refs: builtins.list[str] | None) -> str | None:
        if not refs:
            return None
        try:
            return self._get(refs[0]).created
        except NotFound:
            raise InvalidArgument(f"No such container: {refs[0]}") from None

    async def _ancestor_ids(self, refs: builtins.list[str]) -> set[str] | None:
        if not refs:
            return None
        ids: set[str] = set()
        for ref in refs:
            try:
                ids.add((await self._images.resolve(ref)).id)
            except NotFound:
                continue
        return ids

    async def _summary(self, container: Container, size: bool) -> dict[str, Any]:
        command = container.path + (" " + " ".join(container.args) if container.args else "")
        mode = container.host_config.get("NetworkMode") or "default"
        item: dict[str, Any] = {
            "Id": container.id,
            "Names": ["/" + container.name],
            "Image": container.config.get("Image", ""),
            "ImageID": container.image_id,
            "Command": command,
            "Created": int(parse_rfc3339(container.created).timestamp()),
            "Ports": self._port_entries(container),
            "Labels": container.config.get("Labels") or {},
            "State": container.state.status,
            "Status": _status_text(container),
            "HostConfig": {"NetworkMode": mode},
            "NetworkSettings": {"Networks": self._network_entries(container)},
            "Mounts": _mounts(container, self._volume_mountpoint),
        }
        if size:
            item["SizeRw"] = await self._images.rootfs_size(container.id)
            item["SizeRootFs"] = item["SizeRw"]
        return item

    async def inspect(self, ref: str, size: bool = False) -> dict[str, Any]:
        container = self._get(ref)
        doc = container.to_document(self._files.root)
        mounts = await self._images.rootfs_mounts(container.id) if container.id not in self._removing else []
        graph: dict[str, Any] = {}
        for m in mounts:
            for opt in m.options:
                key, _, value = opt.partition("=")
                if key == "lowerdir":
                    graph["LowerDir"] = value
                elif key == "upperdir":
                    graph["UpperDir"] = value
                elif key == "workdir":
                    graph["WorkDir"] = value
        result: dict[str, Any] = {
            "Id": container.id,
            "Created": container.created,
            "Path": container.path,
            "Args": list(container.args),
            "State": container.state.to_docker(),
            "Image": container.image_id,
            "ResolvConfPath": doc["ResolvConfPath"],
            "HostnamePath": doc["HostnamePath"],
            "HostsPath": doc["HostsPath"],
            "LogPath": doc["LogPath"] if self._log_readable(container) else "",
            "Name": "/" + container.name,
            "RestartCount": container.restart_count,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": self._exec_ids(container.id) or None,
            "HostConfig": container.host_config,
            "GraphDriver": {"Data": graph or None, "Name": "overlay2"},
            "Mounts": _mounts(container, self._volume_mountpoint),
            "Config": container.config,
            "NetworkSettings": {
                "Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": {}, "HairpinMode": False,
                "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "SecondaryIPAddresses": None,
                "SecondaryIPv6Addresses": None, "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
                "Networks": self._network_entries(container),
            },
        }
        if self._networks is not None and network_mode(container.host_config) not in ("host", "none"):
            result["NetworkSettings"].update(self._networks.settings(container.id))
            for number, proto in self._exposed_ports(container):  # exposed, not published: null bindings
                result["NetworkSettings"]["Ports"].setdefault(f"{number}/{proto}", None)
        if size:
            result["SizeRw"] = await self._images.rootfs_size(container.id)
            result["SizeRootFs"] = result["SizeRw"]
        return result

    def _port_entries(self, container: Container) -> builtins.list[dict[str, Any]]:
        """/containers/json "Ports" (what the list filters look at too): the published ports, and a running
        container's exposed ports that are not published, without a public side (the CLI shows "80/tcp")."""
        ports = self._networks.port_list(container.id) if self._networks else []
        published = {(p["PrivatePort"], p["Type"]) for p in ports}
        ports.extend({"PrivatePort": number, "Type": proto} for number, proto in self._exposed_ports(container)
                     if (number, proto) not in published)
        return ports

    def _exposed_ports(self, container: Container) -> builtins.list[tuple[int, str]]:
        """A running container's ExposedPorts as (port, proto), as Docker lists them in NetworkSettings.Ports; none
        for host, none and container:<id> modes."""
        mode = network_mode(container.host_config)
        if not container.state.running or mode in ("host", "none") or mode.startswith("container:"):
            return []
        result = []
        for spec in container.config.get("ExposedPorts") or {}:
            number, _, proto = str(spec).partition("/")
            if number.isdigit():
                result.append((int(number), proto or "tcp"))
        return result

    def _network_entries(self, container: Container) -> dict[str, Any]:
        mode = network_mode(container.host_config)
        if self._networks is not None and mode not in ("host", "none"):
            return self._networks.endpoints(container.id, mode)
        return _networks(container)

    # ---- logs / attach ----------------------------------------------------------------------------------------

    def _log_config(self, host_config: dict[str, Any]) -> dict[str, Any]:
        """HostConfig.LogConfig as Docker stores it at create: the daemon's default driver when none is given, and
        the daemon's --log-opt under the container's own for that driver."""
        log_config = host_config.get("LogConfig") or {}
        if not isinstance(log_config, dict) or not isinstance(log_config.get("Config") or {}, dict):
            raise InvalidArgument("LogConfig must be a JSON object with a Config object")
        driver = str(log_config.get("Type") or DEFAULT_LOG_DRIVER)
        opts = {str(k): str(v) for k, v in (log_config.get("Config") or {}).items()}
        if driver == DEFAULT_LOG_DRIVER:
            opts = {**self._config.log_opts, **opts}
        return {"Type": driver, "Config": opts}

    def _log_settings(self, host_config: dict[str, Any]) -> LogSettings:
        """The container's log driver and options."""
        log_config = self._log_config(host_config)
        return log_settings(log_config["Type"], log_config["Config"])

    def _log_readable(self, container: Container) -> bool:
        try:
            return self._log_settings(container.host_config).readable
        except InvalidArgument:  # made before drivers were checked at create: it has a json-file log
            return True

    async def logs(self, ref: str, options: LogOptions) -> tuple[bool, AsyncIterator[OutputChunk]]:
        container = self._get(ref)
        if not self._log_readable(container):
            raise NotImplementedYet("configured logging driver does not support reading")
        path = self._files.log_path(container.id)
        tty = bool(container.config.get("Tty"))  # issue #3: a TTY container's log is sent raw
        # Streamed a bounded piece at a time; without per-line timestamps, consecutive lines of a stream go out
        # as one chunk (one frame).
        coalesce = 0 if options.timestamps else jsonfile.COALESCE_BYTES
        stop: asyncio.Event | Callable[[], bool] = _read_once
        if options.follow and container.state.running:
            stop = self._exit_event(container.id)
        return tty, self._follow(path, options.since, options.stdout, options.stderr, options.tail, stop,
                                 options.until, coalesce)

    def _exit_event(self, cid: str) -> asyncio.Event:
        """An event set when the container next exits (or is removed): ends log follows and attaches."""
        event = asyncio.Event()
        self._exit_future(cid).add_done_callback(lambda _: event.set())
        return event

    async def _follow(self, path: Any, since: datetime | None, stdout: bool, stderr: bool, tail: int | None,
                      stop: asyncio.Event | Callable[[], bool], until: datetime | None = None,
                      coalesce: int = 0) -> AsyncIterator[OutputChunk]:
        async for entry in jsonfile.follow(path, since=since, until=until, stdout=stdout, stderr=stderr, tail=tail,
                                           stop=stop, coalesce=coalesce):
            yield OutputChunk(entry.stream, entry.data, entry.time)

    async def attach(self, ref: str, options: AttachOptions
                     ) -> tuple[bool, AsyncIterator[OutputChunk], StdinSink | None]:
        container = self._get(ref)
        tty = bool(container.config.get("Tty"))
        keys = parse_detach_keys(options.detach_keys if options.detach_keys is not None else DEFAULT_DETACH_KEYS)
        if not options.stream:
            if not options.logs:
                return tty, _from_entries([]), None
            return tty, self._follow(self._files.log_path(container.id), None, options.stdout, options.stderr,
                                     None, _read_once, None, jsonfile.COALESCE_BYTES), None
        stop = self._exit_event(container.id)
        sink: _AttachStdin | None = None
        if options.stdin and container.config.get("OpenStdin"):
            sink = _AttachStdin(self, container, tty, keys if tty else b"", stop)
        # Without logs: what is logged from now on. By time, not by "the end of the file when the follow opens
        # it", which happens later, in a thread: output answering stdin sent right after the 101 would be lost.
        since = None if options.logs else datetime.now(UTC)
        source = self._follow(self._files.log_path(container.id), since, options.stdout, options.stderr,
                              None, stop, None, jsonfile.COALESCE_BYTES)
        self._emit("attach", container)  # docker event
        return tty, _pumped(source), sink

    async def resize(self, ref: str, height: int, width: int) -> None:
        container = self._get(ref)
        if not container.state.running:
            raise Conflict(f"Container {container.id} is not running")
        await self._tasks.resize(self._ns, container.id, width, height)


DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
STDIN_CLOSE_WAIT = 60.0  # how long the end of a StdinOnce client's stdin waits for the container to start


def parse_detach_keys(spec: str) -> bytes:
    """Docker's detach keys ("ctrl-p,ctrl-q", "a,ctrl-@"...) as the byte sequence to watch for."""
    out = bytearray()
    for key in spec.split(","):
        lower = key.lower()
        if len(key) == 1:
            out.append(ord(key))
        elif lower.startswith("ctrl-") and len(key) == 6 and (
                "a" <= lower[5] <= "z" or lower[5] in "@[\\]^_"):
            char = lower[5]
            out.append(ord(char) - ord("a") + 1 if "a" <= char <= "z" else ord(char) - 64)
        else:
            raise InvalidArgument(f"Invalid detach keys ({spec}) provided")
    return bytes(out)


class _AttachStdin:
    """One attach's stdin: into the container's init-stdin FIFO once its task exists. The end of the client's
    stdin closes the container's stdin with StdinOnce (no TTY); otherwise it ends the attach, as in Docker.
    With a TTY the detach keys end the attach and leave the container running."""

    def __init__(self, service: ContainerService, container: Container, tty: bool, detach_keys: bytes,
                 stop: asyncio.Event) -> None:
        self._service = service
        self._container = container
        self._tty = tty
        self._keys = detach_keys
        self._matched = 0
        self._stop = stop
        self._writer: TaskStdin | None = None
        self._detached = False

    async def write(self, data: bytes) -> None:
        if self._detached or not data:
            return
        if self._keys:
            data = self._scan(data)
            if not data:
                return
        if self._writer is None:
            tasks = self._service._tasks
            await tasks.wait_created(self._service._ns, self._container.id)
            self._writer = await tasks.open_stdin(self._service._ns, self._container.id)
        await self._writer.write(data)

    def _scan(self, data: bytes) -> bytes:
        """Data to forward; holds back a partial detach sequence, detaches on the whole one."""
        out = bytearray()
        for byte in data:
            if byte == self._keys[self._matched]:
                self._matched += 1
                if self._matched == len(self._keys):
                    self._detached = True
                    self._stop.set()
                    self._service._emit("detach", self._container)  # docker event
                    return bytes(out)
                continue
            out += self._keys[:self._matched]
            self._matched = 0
            if byte == self._keys[0]:
                self._matched = 1
            else:
                out.append(byte)
        return bytes(out)

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.close()
        if self._detached:
            return
        if self._container.config.get("StdinOnce") and not self._tty:
            tasks = self._service._tasks
            current = asyncio.current_task()
            try:
                if current is None or not current.cancelling():
                    # The client's stdin may end before the container started (`true | docker run -i ...`).
                    async with asyncio.timeout(STDIN_CLOSE_WAIT):
                        await tasks.wait_created(self._service._ns, self._container.id)
                await tasks.close_stdin(self._service._ns, self._container.id)
            except (AiodockError, TimeoutError):
                pass  # no task (the attach is torn down before a start): nothing to close
        else:
            self._stop.set()


# ---- helpers ----------------------------------------------------------------------------------------------------

def parse_ps(output: str, pids: set[int]) -> dict[str, Any]:
    """`ps` output -> {"Titles", "Processes"} with the rows of ``pids`` (the last column keeps its spaces)."""
    lines = [line for line in output.splitlines() if line.strip()]
    if not lines:
        raise InternalError("Error running ps: no output")
    titles = lines[0].split()
    if "PID" not in titles:
        raise InternalError("Couldn't find PID field in ps output")
    index = titles.index("PID")
    processes = []
    for line in lines[1:]:
        fields = line.split()
        try:
            pid = int(fields[index])
        except (IndexError, ValueError):
            continue
        if pid in pids:
            head = fields[:len(titles) - 1]
            processes.append(head + [" ".join(fields[len(titles) - 1:])])
    return {"Titles": titles, "Processes": processes}


async def _exited_within(exited: asyncio.Future[None], seconds: float) -> bool:
    """Wait for an exit future without cancelling it (other waiters share it)."""
    try:
        async with asyncio.timeout(seconds):
            await asyncio.shield(exited)
        return True
    except TimeoutError:
        return False


async def _from_entries(entries: list[jsonfile.LogEntry]) -> AsyncIterator[OutputChunk]:
    for entry in entries:
        yield OutputChunk(entry.stream, entry.data, entry.time)


def _read_once() -> bool:
    """The `stop` of a log read that is not a follow: what is there now, then the end."""
    return True


_PUMP_DEPTH = 8  # chunks read ahead of a slow client (each up to jsonfile.COALESCE_BYTES): back-pressure beyond


async def _pumped(source: AsyncIterator[OutputChunk]) -> AsyncIterator[OutputChunk]:
    """Start reading the source now (so its position is fixed before the caller returns), deliver lazily."""
    queue: asyncio.Queue[OutputChunk | None] = asyncio.Queue(_PUMP_DEPTH)
    ended = False

    async def pump() -> None:
        nonlocal ended
        try:
            async for chunk in source:
                await queue.put(chunk)
        finally:
            ended = True
            with contextlib.suppress(asyncio.QueueFull):  # full: the reader sees `ended` once it drained it
                queue.put_nowait(None)

    task = asyncio.create_task(pump())
    await asyncio.sleep(0)
    try:
        while True:
            if ended and queue.empty():
                break
            item = await queue.get()
            if item is None:
                break
            yield item
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _host_name() -> str:
    import socket
    return socket.gethostname()


def _mounts_volume(mounts: list[dict[str, Any]], values: list[str]) -> bool:
    """Docker's ps volume filter: a mount whose destination, or volume name (a bind's source), is one of
    ``values``."""
    for mount in mounts:
        if mount.get("Destination") in values or (mount.get("Name") or mount.get("Source")) in values:
            return True
    return False


def _status_text(container: Container) -> str:
    st = container.state
    now = time.time()
    if st.status == "running":
        health = (st.health or {}).get("Status")
        suffix = {"starting": " (health: starting)", "healthy": " (healthy)", "unhealthy": " (unhealthy)"}
        return "Up " + human_duration(now - parse_rfc3339(st.started_at).timestamp()) + suffix.get(health or "", "")
    if st.status == "paused":
        return "Up " + human_duration(now - parse_rfc3339(st.started_at).timestamp()) + " (Paused)"
    if st.status == "restarting":
        return f"Restarting ({st.exit_code}) " + human_duration(now - parse_rfc3339(st.finished_at).timestamp()) + " ago"
    if st.status == "removing":
        return "Removal In Progress"
    if st.status == "dead":
        return "Dead"
    if st.status == "exited":
        return f"Exited ({st.exit_code}) " + human_duration(now - parse_rfc3339(st.finished_at).timestamp()) + " ago"
    return "Created"


_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


def _mac_address(body: dict[str, Any], mode: str) -> str:
    """--mac-address: Config.MacAddress (API < 1.44) or the MacAddress of the one endpoint a create names (1.44),
    checked as Docker checks it; lower-case, as the kernel shows it."""
    mac = body.get("MacAddress") or ""
    endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    if not mac and isinstance(endpoints, dict) and len(endpoints) == 1:  # the primary one ("default" or a name)
        primary = next(iter(endpoints.values()))
        if isinstance(primary, dict):
            mac = primary.get("MacAddress") or ""
    if not mac:
        return ""
    if not isinstance(mac, str) or not _MAC_RE.match(mac):
        raise InvalidArgument(f"invalid MAC address: {mac}")
    if int(mac[:2], 16) & 1:
        raise InvalidArgument(f"invalid MAC address: {mac}: a multicast address")
    if mode in ("host", "none"):
        raise InvalidArgument("conflicting options: mac-address and the network mode")
    return mac.lower()


# Looked up once (Docker's sysinfo does the same at start-up), not on the create path.
_BLKIO_WEIGHT_SUPPORTED = os.path.exists("/sys/fs/cgroup/blkio/blkio.weight")


def _check_namespace_modes(body: dict[str, Any], host_config: dict[str, Any]) -> None:
    """HostConfig PidMode, IpcMode and UTSMode with Docker's messages (400)."""
    pid = str(host_config.get("PidMode") or "")
    if pid not in ("", "host", "private") and not (pid.startswith("container:") and pid != "container:"):
        raise InvalidArgument(f"invalid PID mode: {pid}")
    ipc = str(host_config.get("IpcMode") or "")
    if ipc not in ("", "host", "private", "shareable", "none") and not (
            ipc.startswith("container:") and ipc != "container:"):
        raise InvalidArgument(f"invalid IPC mode: {ipc}")
    uts = str(host_config.get("UTSMode") or "")
    if uts not in ("", "host", "private"):
        raise InvalidArgument(f"invalid UTS mode: {uts}")
    if uts == "host" and body.get("Hostname"):
        raise InvalidArgument("conflicting options: hostname and the UTS mode")


def _mount_shm(target: Path, size: int) -> None:
    """A tmpfs for a shareable container's /dev/shm on the host side (blocking)."""
    unmount(target)  # left from a run that ended while the daemon was down
    mount_all([Mount("tmpfs", "shm", ("nosuid", "nodev", "noexec", "mode=1777", f"size={size}"))], target)


class _JoinFailed(Conflict):
    """A `container:<id>` mode (network, pid, ipc) cannot join at start (409); a --rm container is removed, as
    Docker does."""


class _JoinNotFound(NotFound):
    """A `container:<id>` mode names no container at start (404)."""


def _copy_network_files(source: Path, dest: Path) -> None:
    for name in ("hostname", "hosts", "resolv.conf"):
        try:
            atomicfile.write_text(dest / name, (source / name).read_text())
        except FileNotFoundError:
            continue


def _networks(container: Container) -> dict[str, Any]:
    mode = network_mode(container.host_config)
    if mode not in ("host", "none"):
        return {}
    return {mode: {
        "IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "NetworkID": mode, "EndpointID": "",
        "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0, "DriverOpts": None, "DNSNames": None,
    }}


def _mounts(container: Container, volume_mountpoint: Callable[[str], str]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for bind in container.host_config.get("Binds") or []:
        parts = bind.split(":")
        if len(parts) < 2 or not parts[0].startswith("/"):
            continue  # volumes: below
        mode = parts[2] if len(parts) > 2 else ""
        result.append({"Type": "bind", "Source": parts[0], "Destination": parts[1], "Mode": mode,
                       "RW": "ro" not in mode.split(","), "Propagation": "rprivate"})
    for m in container.host_config.get("Mounts") or []:
        if m.get("Type") == "volume":
            continue
        entry = {"Type": m.get("Type", ""), "Source": m.get("Source", ""), "Destination": m.get("Target", ""),
                 "Mode": "", "RW": not m.get("ReadOnly", False), "Propagation": ""}
        if m.get("Type") == "bind":
            entry["Propagation"] = (m.get("BindOptions") or {}).get("Propagation") or "rprivate"
        result.append(entry)
    for vol in container_volumes(container.id, container.config, container.host_config):
        result.append(vol.to_docker(volume_mountpoint(vol.name)))
    return result


def _rmdir_quietly(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


