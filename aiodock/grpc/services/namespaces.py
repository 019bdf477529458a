"""containerd.services.namespaces.v1.Namespaces over core.namespaces.NamespaceStore."""

from __future__ import annotations

import asyncio

from aiodock._proto.containerd.services.namespaces.v1 import (
    CreateNamespaceRequest,
    CreateNamespaceResponse,
    DeleteNamespaceRequest,
    GetNamespaceRequest,
    GetNamespaceResponse,
    ListNamespacesRequest,
    ListNamespacesResponse,
    Namespace,
    NamespacesBase,
    UpdateNamespaceRequest,
    UpdateNamespaceResponse,
)
from aiodock._proto.google.protobuf import Empty
from aiodock.core import events as ev
from aiodock.core.namespaces import NamespaceStore
from aiodock.errors import InvalidArgument, NotFound
from aiodock.grpc.errors import grpc_service


@grpc_service
class NamespacesService(NamespacesBase):
    def __init__(self, store: NamespaceStore, exchange: ev.EventExchange | None = None) -> None:
        self._store = store
        self._exchange = exchange

    async def get(self, message: GetNamespaceRequest) -> GetNamespaceResponse:
        labels = await asyncio.to_thread(self._store.get, message.name)
        return GetNamespaceResponse(namespace=Namespace(name=message.name, labels=labels))

    async def list(self, message: ListNamespacesRequest) -> ListNamespacesResponse:
        def collect() -> list[Namespace]:
            found = []
            for name in self._store.list():
                try:
                    found.append(Namespace(name=name, labels=self._store.get(name)))
                except NotFound:  # deleted meanwhile
                    continue
            return found

        return ListNamespacesResponse(namespaces=await asyncio.to_thread(collect))

    async def create(self, message: CreateNamespaceRequest) -> CreateNamespaceResponse:
        if message.namespace is None:
            raise InvalidArgument("namespace must be set: invalid argument")
        name, labels = message.namespace.name, dict(message.namespace.labels)
        labels = await asyncio.to_thread(self._store.create, name, labels)
        if self._exchange is not None:
            self._exchange.publish(name, ev.NAMESPACE_CREATE, ev.NamespaceEvent(name))
        return CreateNamespaceResponse(namespace=Namespace(name=name, labels=labels))

    async def update(self, message: UpdateNamespaceRequest) -> UpdateNamespaceResponse:
        if message.namespace is None:
            raise InvalidArgument("namespace must be set: invalid argument")
        paths = list(message.update_mask.paths) if message.update_mask else []
        name = message.namespace.name
        labels = await asyncio.to_thread(self._store.update, name, dict(message.namespace.labels), paths)
        return UpdateNamespaceResponse(namespace=Namespace(name=name, labels=labels))

    async def delete(self, message: DeleteNamespaceRequest) -> Empty:
        await asyncio.to_thread(self._store.delete, message.name)
        if self._exchange is not None:
            self._exchange.publish(message.name, ev.NAMESPACE_DELETE, ev.NamespaceEvent(message.name))
        return Empty()
