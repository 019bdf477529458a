"""The Engine API application and the listeners the daemon serves it on (unix, tcp[+TLS], fd://)."""

from __future__ import annotations

import asyncio
import grp
import os
import socket
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from aiodock.api import hijack, middleware
from aiodock.api.keys import CONTAINERS, IMAGES, SYSTEM, TMP_DIR
from aiodock.api.routes import ALL
from aiodock.api.routes.archive import ARCHIVES, COMMITS
from aiodock.api.routes.build import BUILDER
from aiodock.api.routes.events import EVENTS
from aiodock.api.routes.exec import EXECS
from aiodock.api.routes.networks import NETWORKS, NetworkBackend
from aiodock.api.routes.stats import STATS, StatsBackend
from aiodock.api.routes.volumes import VOLUMES
from aiodock.engine.backend import (
    ArchiveBackend,
    BuildBackend,
    CommitBackend,
    ContainerBackend,
    EventsBackend,
    ExecBackend,
    ImageBackend,
    SystemBackend,
    VolumeBackend,
)
from aiodock.errors import InvalidArgument

log = structlog.get_logger("aiodock.api")

# Docker's versionMatcher: every route also answers under /v{version}.
VERSION_PREFIX = "/v{" + middleware.VERSION_KEY + r":[0-9]+(?:\.[0-9]+)*}"
MAX_BODY = 64 * 1024 * 1024  # bodies read whole (container create JSON); tar uploads are streamed


def create_app(*, containers: ContainerBackend, images: ImageBackend, system: SystemBackend,
               tmp_dir: Path | None = None, execs: ExecBackend | None = None,
               events: EventsBackend | None = None, networks: NetworkBackend | None = None,
               volumes: VolumeBackend | None = None, archives: ArchiveBackend | None = None,
               commits: CommitBackend | None = None, stats: StatsBackend | None = None,
               builder: BuildBackend | None = None) -> web.Application:
    app = web.Application(middlewares=[middleware.errors_middleware], client_max_size=MAX_BODY)
    app[CONTAINERS] = containers
    app[IMAGES] = images
    app[SYSTEM] = system
    if tmp_dir is not None:
        app[TMP_DIR] = tmp_dir
    if execs is not None:
        app[EXECS] = execs
    if events is not None:
        app[EVENTS] = events
    if networks is not None:
        app[NETWORKS] = networks
    if volumes is not None:
        app[VOLUMES] = volumes
    if archives is not None:
        app[ARCHIVES] = archives
    if commits is not None:
        app[COMMITS] = commits
    if stats is not None:
        app[STATS] = stats
    if builder is not None:
        app[BUILDER] = builder
    for table in ALL:
        for route in table:
            assert isinstance(route, web.RouteDef)
            app.router.add_route(route.method, route.path, route.handler, **route.kwargs)
            app.router.add_route(route.method, VERSION_PREFIX + route.path, route.handler, **route.kwargs)
    app.on_response_prepare.append(middleware.add_common_headers)
    hijack.setup(app)
    return app


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """dockerd's --tlscert/--tlskey/--tlscacert/--tlsverify."""

    cert: Path
    key: Path
    ca: Path | None = None
    verify: bool = False

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca) if self.ca else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self.cert), str(self.key))
        if self.verify:
            if self.ca is None:
                raise InvalidArgument("--tlsverify needs --tlscacert to verify client certificates")
            context.verify_mode = ssl.CERT_REQUIRED
        return context


async def serve(app: web.Application, hosts: list[str], tls: TLSConfig | None = None,
                socket_group: str = "aiodock", shutdown_timeout: float = 5.0) -> web.AppRunner:
    """Start listening on every host ("unix:///path", "tcp://host:port", "fd://[N]"); stop with runner.cleanup().

    On cleanup, hijacked attach connections are closed at once; other requests in flight (wait, logs -f) get
    ``shutdown_timeout`` seconds before they are cancelled.
    """
    context = await asyncio.to_thread(tls.server_context) if tls is not None else None
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        for host in hosts:
            for site in await _sites(runner, host, context, socket_group):
                await site.start()
                if isinstance(site, web.UnixSite):
                    await asyncio.to_thread(_secure_socket, Path(host.partition("://")[2]), socket_group)
                log.info("api_listening", host=host, site=site.name)
    except BaseException:
        await runner.cleanup()
        raise
    return runner


async def _sites(runner: web.AppRunner, host: str, context: ssl.SSLContext | None,
                 group: str) -> list[web.BaseSite]:
    proto, _, rest = host.partition("://")
    if proto == "unix":
        if not rest.startswith("/"):
            raise InvalidArgument(f"invalid bind address format: {host}: the unix socket path must be absolute")
        path = Path(rest)
        await asyncio.to_thread(_prepare_socket_path, path)
        return [web.UnixSite(runner, str(path))]
    if proto == "tcp":
        parsed = urlsplit(host)
        try:
            port = parsed.port
        except ValueError:
            raise InvalidArgument(f"invalid bind address format: {host}") from None
        default_port = 2376 if context is not None else 2375
        return [web.TCPSite(runner, parsed.hostname or "0.0.0.0", default_port if port is None else port,
                            ssl_context=context)]
    if proto == "fd":
        return [web.SockSite(runner, sock, ssl_context=context if sock.family != socket.AF_UNIX else None)
                for sock in _activated_sockets(rest)]
    raise InvalidArgument(f"invalid bind address format: {host}")


def _prepare_socket_path(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()  # stale socket from an earlier daemon
        else:
            raise InvalidArgument(f"cannot listen on {path}: exists and is not a socket")
    except FileNotFoundError:
        pass


def _secure_socket(path: Path, group: str) -> None:
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        gid = -1
    if gid != -1:
        os.chown(path, -1, gid)
    os.chmod(path, 0o660)


def _activated_sockets(selector: str) -> list[socket.socket]:
    """systemd socket activation (sd_listen_fds): fds 3..3+LISTEN_FDS-1 when LISTEN_PID is us."""
    try:
        ours = int(os.environ.get("LISTEN_PID", "0")) == os.getpid()
        count = int(os.environ.get("LISTEN_FDS", "0")) if ours else 0
    except ValueError:
        count = 0
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if count == 0:
        raise InvalidArgument("no sockets found via socket activation: make sure the service was started by systemd")
    fds = list(range(3, 3 + count))
    if selector:
        try:
            wanted = int(selector)
        except ValueError:
            raise InvalidArgument(f"failed to parse systemd fd address: should be a number: {selector}") from None
        if wanted not in fds:
            raise InvalidArgument(f"too few socket activated files passed in by systemd: fd {wanted} not in {fds}")
        fds = [wanted]
    sockets = []
    for fd in fds:
        os.set_inheritable(fd, False)
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        sockets.append(sock)
    return sockets
