"""containerd.services.containers.v1.Containers over core.metadata.ContainerStore (namespace from the request).

A record created without a spec (Docker's containers: the engine builds the spec at each start) is answered with the
spec of its live task, read from the task's bundle, as ctr needs it (`containers info`, `tasks exec`)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

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
from aiodock.core.metadata import ContainerRecord, ContainerStore
from aiodock.core.namespaces import NamespaceStore, namespace_from_context
from aiodock.errors import InvalidArgument
from aiodock.grpc.convert import container_from_proto, container_to_proto
from aiodock.grpc.errors import grpc_service

TaskSpecReader = Callable[[str, str], Awaitable[dict[str, Any] | None]]  # (ns, id) -> a live task's spec


@grpc_service
class ContainersService(ContainersBase):
    def __init__(
        self, store: ContainerStore, namespaces: NamespaceStore, exchange: ev.EventExchange | None = None,
        task_spec: TaskSpecReader | None = None,
    ) -> None:
        self._store = store
        self._namespaces = namespaces
        self._exchange = exchange
        self._task_spec = task_spec

    async def _with_spec(self, ns: str, record: ContainerRecord) -> ContainerRecord:
        if record.spec is not None or self._task_spec is None:
            return record
        spec = await self._task_spec(ns, record.id)
        return record if spec is None else dataclasses.replace(record, spec=spec)

    async def get(self, message: GetContainerRequest) -> GetContainerResponse:
        ns = namespace_from_context()
        record = await asyncio.to_thread(self._store.get, ns, message.id)
        return GetContainerResponse(container=container_to_proto(await self._with_spec(ns, record)))

    async def list(self, message: ListContainersRequest) -> ListContainersResponse:
        ns = namespace_from_context()
        records = await asyncio.to_thread(self._store.list, ns, list(message.filters))
        return ListContainersResponse(containers=[container_to_proto(await self._with_spec(ns, r)) for r in records])

    async def list_stream(self, message: ListContainersRequest) -> AsyncIterator[ListContainerMessage]:
        ns = namespace_from_context()
        records = await asyncio.to_thread(self._store.list, ns, list(message.filters))
        for record in records:
            yield ListContainerMessage(container=container_to_proto(await self._with_spec(ns, record)))

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
