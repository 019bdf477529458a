"""containerd.services.containers.v1.Containers over core.metadata.ContainerStore (namespace from the request)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiodock._proto.containerd.services.containers.v1 import (
    ContainersBase,
    CreateContainerRequest,
    CreateContainerResponse,
    DeleteContainerRequest,
    GetContainerRequest,
    GetContainerResponse,
    ListContainerMessage,
    ListContainersRequest,
    ListContainersResponse,
    UpdateContainerRequest,
    UpdateContainerResponse,
)
from aiodock._proto.google.protobuf import Empty
from aiodock.core import events as ev
from aiodock.core.metadata import ContainerStore
from aiodock.core.namespaces import NamespaceStore, namespace_from_context
from aiodock.errors import InvalidArgument
from aiodock.grpc.convert import container_from_proto, container_to_proto
from aiodock.grpc.errors import grpc_service


@grpc_service
class ContainersService(ContainersBase):
    def __init__(
        self, store: ContainerStore, namespaces: NamespaceStore, exchange: ev.EventExchange | None = None
    ) -> None:
        self._store = store
        self._namespaces = namespaces
        self._exchange = exchange

    async def get(self, message: GetContainerRequest) -> GetContainerResponse:
        record = await asyncio.to_thread(self._store.get, namespace_from_context(), message.id)
        return GetContainerResponse(container=container_to_proto(record))

    async def list(self, message: ListContainersRequest) -> ListContainersResponse:
        records = await asyncio.to_thread(self._store.list, namespace_from_context(), list(message.filters))
        return ListContainersResponse(containers=[container_to_proto(r) for r in records])

    async def list_stream(self, message: ListContainersRequest) -> AsyncIterator[ListContainerMessage]:
        records = await asyncio.to_thread(self._store.list, namespace_from_context(), list(message.filters))
        for record in records:
            yield ListContainerMessage(container=container_to_proto(record))

    async def create(self, message: CreateContainerRequest) -> CreateContainerResponse:
        if message.container is None:
            raise InvalidArgument("container must be set: invalid argument")
        ns = namespace_from_context()
        record = container_from_proto(message.container)

        def create() -> object:
            self._namespaces.ensure(ns)
            return self._store.create(ns, record)

        await asyncio.to_thread(create)
        stored = await asyncio.to_thread(self._store.get, ns, record.id)
        if self._exchange is not None:
            self._exchange.publish(ns, ev.CONTAINER_CREATE, ev.ContainerCreate(stored.id, stored.image,
                                                                                stored.runtime_name))
        return CreateContainerResponse(container=container_to_proto(stored))

    async def update(self, message: UpdateContainerRequest) -> UpdateContainerResponse:
        if message.container is None:
            raise InvalidArgument("container must be set: invalid argument")
        ns = namespace_from_context()
        paths = list(message.update_mask.paths) if message.update_mask else []
        updated = await asyncio.to_thread(self._store.update, ns, container_from_proto(message.container), paths)
        return UpdateContainerResponse(container=container_to_proto(updated))

    async def delete(self, message: DeleteContainerRequest) -> Empty:
        ns = namespace_from_context()
        await asyncio.to_thread(self._store.delete, ns, message.id)
        if self._exchange is not None:
            self._exchange.publish(ns, ev.CONTAINER_DELETE, ev.ContainerDelete(message.id))
        return Empty()
