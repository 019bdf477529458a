"""containerd.services.introspection.v1.Introspection: server UUID (stable per data root) and our plugin list."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from aiodock._proto.containerd.services.introspection.v1 import (
    IntrospectionBase,
    Plugin,
    PluginsRequest,
    PluginsResponse,
    ServerResponse,
)
from aiodock._proto.containerd.types import Platform
from aiodock._proto.google.protobuf import Empty
from aiodock.core.metadata import FieldAdaptor, parse_filters
from aiodock.grpc.errors import grpc_service
from aiodock.util import atomicfile


@dataclass(frozen=True, slots=True)
class PluginDescription:
    type: str
    id: str
    requires: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    exports: dict[str, str] = field(default_factory=dict)
    linux_platform: bool = False  # advertise linux/amd64 (snapshotters and runtimes do)


AIODOCK_PLUGINS: tuple[PluginDescription, ...] = (
    PluginDescription("io.containerd.content.v1", "content"),
    PluginDescription("io.containerd.snapshotter.v1", "overlayfs", linux_platform=True),
    PluginDescription("io.containerd.metadata.v1", "json", requires=("io.containerd.content.v1",)),
    PluginDescription("io.containerd.event.v1", "exchange"),
    PluginDescription("io.containerd.runtime.v2", "task", requires=("io.containerd.event.v1",), linux_platform=True),
    *(
        PluginDescription("io.containerd.grpc.v1", name)
        for name in ("containers", "content", "events", "images", "introspection", "namespaces", "tasks", "version")
    ),
)


def _plugin_adaptor(desc: PluginDescription) -> FieldAdaptor:
    fields = {"type": desc.type, "id": desc.id}
    return lambda path: fields.get(path[0]) if len(path) == 1 else None


def _load_or_create_uuid(path: Path) -> str:
    try:
        value = path.read_text().strip()
        if value:
            return str(uuid.UUID(value))
    except (FileNotFoundError, ValueError):
        pass
    value = str(uuid.uuid4())
    atomicfile.write_text(path, value + "\n", mode=0o600)
    return value


@grpc_service
class IntrospectionService(IntrospectionBase):
    """The UUID lives in ``<data_root>/metadata/server-uuid``, created on first use."""

    def __init__(self, data_root: Path, plugins: tuple[PluginDescription, ...] = AIODOCK_PLUGINS) -> None:
        self._uuid_path = Path(data_root) / "metadata" / "server-uuid"
        self._plugins = plugins
        self._uuid: str | None = None

    async def server(self, message: Empty) -> ServerResponse:
        if self._uuid is None:
            self._uuid = await asyncio.to_thread(_load_or_create_uuid, self._uuid_path)
        return ServerResponse(uuid=self._uuid)

    async def plugins(self, message: PluginsRequest) -> PluginsResponse:
        selected = parse_filters(message.filters)
        plugins = []
        for desc in self._plugins:
            if not selected.match(_plugin_adaptor(desc)):
                continue
            plugins.append(
                Plugin(
                    type=desc.type,
                    id=desc.id,
                    requires=list(desc.requires),
                    platforms=[Platform(os="linux", architecture="amd64")] if desc.linux_platform else [],
                    exports=dict(desc.exports),
                    capabilities=list(desc.capabilities),
                )
            )
        return PluginsResponse(plugins=plugins)
