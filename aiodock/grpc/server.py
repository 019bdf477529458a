"""The containerd-compatible gRPC server on a unix socket (grpclib).

Every service declared in protos/ is registered: the ones we serve as given, the rest as their generated ``*Base``
whose methods answer UNIMPLEMENTED from inside a proper gRPC stream. (grpclib's own "method not found" answer for an
unregistered service lacks content-type, which grpc-go reports as "missing content-type" instead of Unimplemented.)
The ``containerd-namespace`` request metadata is copied into ``core.namespaces.current_namespace``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import structlog
from betterproto2.grpclib.grpclib_server import ServiceBase
from grpclib.events import RecvRequest, listen
from grpclib.server import Server

from aiodock._proto.containerd.services.containers.v1 import ContainersBase
from aiodock._proto.containerd.services.content.v1 import ContentBase
from aiodock._proto.containerd.services.diff.v1 import DiffBase
from aiodock._proto.containerd.services.events.v1 import EventsBase
from aiodock._proto.containerd.services.images.v1 import ImagesBase
from aiodock._proto.containerd.services.introspection.v1 import IntrospectionBase
from aiodock._proto.containerd.services.leases.v1 import LeasesBase
from aiodock._proto.containerd.services.namespaces.v1 import NamespacesBase
from aiodock._proto.containerd.services.snapshots.v1 import SnapshotsBase
from aiodock._proto.containerd.services.tasks.v1 import TasksBase
from aiodock._proto.containerd.services.version.v1 import VersionBase
from aiodock.core.namespaces import DEFAULT_NAMESPACE, current_namespace

log = structlog.get_logger(__name__)

NAMESPACE_METADATA_KEY = "containerd-namespace"

# Every service of protos/, in registration order.
ALL_SERVICE_BASES: tuple[type[ServiceBase], ...] = (
    ContainersBase, ContentBase, DiffBase, EventsBase, ImagesBase, IntrospectionBase, LeasesBase,
    NamespacesBase, SnapshotsBase, TasksBase, VersionBase,
)


async def _on_recv_request(event: RecvRequest) -> None:
    value = event.metadata.get(NAMESPACE_METADATA_KEY)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    current_namespace.set(value or DEFAULT_NAMESPACE)


def complete_services(services: Sequence[object]) -> list[object]:
    """``services`` plus a bare generated base for every service nobody serves. Two servers of one service
    is a programming error."""
    handlers = list(services)
    for base in ALL_SERVICE_BASES:
        serving = [s for s in handlers if isinstance(s, base)]
        if len(serving) > 1:
            raise ValueError(f"{base.__name__} is served twice: {serving}")
        if not serving:
            handlers.append(base())
    return handlers


class GrpcServer:
    def __init__(self, socket_path: Path, services: list[object]) -> None:
        self.socket_path = Path(socket_path)
        self._handlers = complete_services(services)
        self._server: Server | None = None

    async def start(self) -> None:
        """Listen on the socket (a stale socket file is removed; mode 0660)."""
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.socket_path.unlink()
        except FileNotFoundError:
            pass
        server = Server(cast(list[Any], self._handlers))
        listen(server, RecvRequest, _on_recv_request)
        await server.start(path=str(self.socket_path))
        os.chmod(self.socket_path, 0o660)
        self._server = server
        log.info("grpc_listening", socket=str(self.socket_path))

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await server.wait_closed()
        try:
            self.socket_path.unlink()
        except FileNotFoundError:
            pass
