"""Wires the containerd-compatible gRPC services to the daemon's core components."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiodock.core import events as ev
from aiodock.errors import NotFound
from aiodock.grpc.server import GrpcServer
from aiodock.grpc.services.containers import ContainersService
from aiodock.grpc.services.content import ContentService
from aiodock.grpc.services.events import EventsService
from aiodock.grpc.services.images import ImagesService
from aiodock.grpc.services.introspection import IntrospectionService
from aiodock.grpc.services.namespaces import NamespacesService
from aiodock.grpc.services.tasks import TasksService
from aiodock.grpc.services.version import VersionService

if TYPE_CHECKING:
    from aiodock.daemon.app import Daemon


def build_grpc_server(daemon: Daemon) -> GrpcServer:
    async def forward(envelope: ev.Envelope) -> None:
        """Shims report here (Events/Forward); exits go through the task manager, which publishes them once."""
        if isinstance(envelope.event, ev.TaskExit):
            await daemon.tasks.handle_exit(envelope.namespace, envelope.event)
        else:
            daemon.events.publish(envelope.namespace, envelope.topic, envelope.event, envelope.timestamp)

    async def task_spec(ns: str, container_id: str) -> dict[str, Any] | None:
        try:
            return await daemon.tasks.task_spec(ns, container_id)
        except NotFound:
            return None

    services: list[object] = [
        VersionService(),
        IntrospectionService(daemon.config.data_root),
        NamespacesService(daemon.namespaces, daemon.events),
        ContainersService(daemon.records, daemon.namespaces, daemon.events, task_spec),
        ImagesService(daemon.images.images, daemon.namespaces, daemon.events),
        ContentService(daemon.images.content),
        TasksService(daemon.tasks),
        EventsService(daemon.events, forward),
    ]
    return GrpcServer(daemon.config.grpc_socket, services)
