"""The composition root: builds every component in dependency order, recovers state, serves, stops cleanly.

SIGTERM/SIGINT stop serving and exit; containers and their shims keep running (live restore is always on).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import uuid
from pathlib import Path
from typing import cast

from aiodock.api.app import TLSConfig, create_app, serve
from aiodock.config import DaemonConfig
from aiodock.core.events import EventExchange
from aiodock.core.images.registry import RegistryOptions
from aiodock.core.metadata import ContainerStore
from aiodock.core.namespaces import NamespaceStore
from aiodock.core.runtime.tasks import TaskManager
from aiodock.daemon.grpc_wiring import build_grpc_server
from aiodock.engine.archive import ArchiveService
from aiodock.engine.backend import ImageBackend
from aiodock.engine.build import Builder
from aiodock.engine.commit import CommitService
from aiodock.engine.containers import NAMESPACE, ContainerService
from aiodock.engine.events import DockerEvents, EventedImages
from aiodock.engine.exec import ExecService
from aiodock.engine.health import HealthMonitor
from aiodock.engine.images import ImageService
from aiodock.engine.networking import NetworkService
from aiodock.engine.state import ContainerFiles
from aiodock.engine.stats import StatsService
from aiodock.engine.system import SystemService
from aiodock.engine.volumes import VolumeService
from aiodock.errors import AiodockError, FailedPrecondition, InvalidArgument
from aiodock.log import configure, get_logger
from aiodock.util import atomicfile

log = get_logger("aiodock.daemon")


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) about our state; a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
            sock.sendall(message.encode())
        except OSError as exc:
            log.warning("sd_notify failed", error=str(exc))


def _daemon_id(data_root: Path) -> str:
    path = data_root / "engine-id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        value = str(uuid.uuid4())
        atomicfile.write_text(path, value)
        return value


def _claim_pidfile(pidfile: Path) -> None:
    try:
        pid = int(pidfile.read_text().strip() or "0")
    except (FileNotFoundError, ValueError):
        pid = 0
    if pid and pid != os.getpid():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            pass
        else:
            raise FailedPrecondition(f"pid file found, ensure aiodock is not running or delete {pidfile}")
    atomicfile.write_text(pidfile, f"{os.getpid()}\n")


class Daemon:
    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.events = EventExchange()
        self.records = ContainerStore(config.data_root)
        self.images = ImageService(config.data_root, self.events, namespace=NAMESPACE,
                                   registry=RegistryOptions.create(config.registry_certs_dir,
                                                                   config.insecure_registries, config.registry_mirrors))
        self.namespaces = NamespaceStore(config.data_root, usage=self._namespace_usage)
        self.tasks = TaskManager(exec_root=config.exec_root, runtime=config.runtime, events=self.events,
                                 grpc_socket=config.grpc_socket)
        self.networks = NetworkService(data_root=config.data_root, exec_root=config.exec_root,
                                       bridge_name=config.bridge_name, bip=config.bip,
                                       userland_proxy=config.userland_proxy)
        self.containers = ContainerService(
            config=config, files=ContainerFiles(config.data_root / "containers"), images=self.images,
            tasks=self.tasks, records=self.records, events=self.events, networks=self.networks,
        )
        self.volumes = VolumeService(config.data_root)
        self.containers.set_volumes(self.volumes)
        self.archives = ArchiveService(self.containers)
        self.commits = CommitService(self.containers, self.images)
        self.builder = Builder(containers=self.containers, images=self.images, commits=self.commits,
                               archives=self.archives, work_root=config.data_root / "tmp" / "build")
        self.docker_events = DockerEvents()
        self.containers.set_docker_events(self.docker_events)
        self.volumes.set_docker_events(self.docker_events)
        self.networks.set_docker_events(self.docker_events)
        self.execs = ExecService(containers=self.containers, images=self.images, tasks=self.tasks,
                                 events=self.docker_events)
        self.containers.set_exec_lookup(self.execs.exec_ids)
        self.health = HealthMonitor(containers=self.containers, execs=self.execs,
                                    emit=lambda cid, action: self.containers.emit(action, cid))
        self.containers.set_health_monitor(self.health)
        self.networks.set_container_lookup(self.containers.inspect)
        self.networks.set_name_lookup(self._dns_names)  # the embedded DNS server's container names
        self.stats = StatsService(config=config, containers=self.containers)
        self.system = SystemService(config=config, containers=self.containers, images=self.images,
                                    daemon_id=_daemon_id(config.data_root), volumes=self.volumes)
        self.grpc = build_grpc_server(self)
        self._runner: object | None = None

    def _dns_names(self, container_id: str) -> tuple[str, str] | None:
        try:
            container = self.containers.get(container_id)
        except AiodockError:
            return None
        return container.name.lstrip("/"), str(container.config.get("Hostname") or "")

    def _namespace_usage(self, namespace: str) -> list[str]:
        kinds = []
        if self.records.list(namespace):
            kinds.append("containers")
        if self.images.images.list(namespace):
            kinds.append("images")
        return kinds

    async def start(self) -> None:
        cfg = self.config
        await asyncio.to_thread(self.namespaces.ensure, NAMESPACE)
        await self.tasks.start()
        await self.grpc.start()  # first: shims that exited while we were away are retrying their reports
        recovered = await self.tasks.load_existing()
        await self.containers.cleanup_rootfs_mounts()  # a cp/export the daemon died during
        await self.containers.load()
        tls = None
        if cfg.tls or cfg.tlsverify:
            if not (cfg.tlscert and cfg.tlskey):
                raise InvalidArgument("--tls needs --tlscert and --tlskey")
            tls = TLSConfig(cert=cfg.tlscert, key=cfg.tlskey, ca=cfg.tlscacert, verify=bool(cfg.tlsverify))
        images = cast(ImageBackend, EventedImages(self.images, self.docker_events))  # docker image events
        app = create_app(containers=self.containers, images=images, system=self.system, execs=self.execs,
                         events=self.docker_events, networks=self.networks, volumes=self.volumes,
                         archives=self.archives, commits=self.commits, stats=self.stats, builder=self.builder)
        self._runner = await serve(app, list(cfg.hosts), tls=tls)
        log.info("daemon ready", hosts=list(cfg.hosts), grpc=str(cfg.grpc_socket), recovered_tasks=len(recovered))

    async def stop(self) -> None:
        runner = self._runner
        if runner is not None:
            await runner.cleanup()  # type: ignore[attr-defined]
        await self.execs.close()
        await self.health.close()
        await self.containers.close()
        await self.networks.close()
        await self.grpc.close()
        await self.tasks.close()
        log.info("daemon stopped; containers keep running")


async def run(config: DaemonConfig) -> int:
    configure(config.log_level, config.log_format)
    if shutil.which(config.runtime) is None:
        raise InvalidArgument(f"OCI runtime {config.runtime!r} not found in PATH")
    config.data_root.mkdir(parents=True, exist_ok=True, mode=0o711)
    config.exec_root.mkdir(parents=True, exist_ok=True, mode=0o711)
    if config.pidfile:
        _claim_pidfile(config.pidfile)
    daemon = Daemon(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await daemon.start()
        sd_notify("READY=1")
        await stop.wait()
        sd_notify("STOPPING=1")
    finally:
        await daemon.stop()
        if config.pidfile:
            try:
                config.pidfile.unlink()
            except FileNotFoundError:
                pass
    return 0
