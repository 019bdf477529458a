"""containerd.services.images.v1.Images over core.images.store.ImageStore (namespace from the request)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from aiodock._proto.containerd.services.images.v1 import (
    CreateImageRequest,
    CreateImageResponse,
    DeleteImageRequest,
    GetImageRequest,
    GetImageResponse,
    ImagesBase,
    ListImagesRequest,
    ListImagesResponse,
    UpdateImageRequest,
    UpdateImageResponse,
)
from aiodock._proto.google.protobuf import Empty
from aiodock.core import events as ev
from aiodock.core.images.store import ImageRecord, ImageStore
from aiodock.core.metadata import FieldAdaptor, parse_filters, update_map
from aiodock.core.namespaces import NamespaceStore, namespace_from_context, validate_labels
from aiodock.errors import AlreadyExists, InvalidArgument, NotFound
from aiodock.grpc.convert import descriptor_from_proto, image_from_proto, image_to_proto
from aiodock.grpc.errors import grpc_service

IMAGE_FILTER_FIELDS = frozenset({"name", "labels", "target"})


def _image_adaptor(record: ImageRecord) -> FieldAdaptor:
    def field(path: tuple[str, ...]) -> str | None:
        head, rest = path[0], path[1:]
        if head == "name" and not rest:
            return record.name
        if head == "labels" and rest:
            return record.labels.get(".".join(rest))
        if head == "target" and len(rest) == 1:
            return {"digest": record.target.digest, "mediatype": record.target.media_type}.get(rest[0])
        return None

    return field


def _validate(record: ImageRecord) -> None:
    if not record.name:
        raise InvalidArgument("Image.Name: image name must not be empty: invalid argument")
    if not record.target.media_type:
        raise InvalidArgument("Target.MediaType: must be set: invalid argument")
    if not record.target.digest:
        raise InvalidArgument("Target.Digest: must be set: invalid argument")
    validate_labels(record.labels)


@grpc_service
class ImagesService(ImagesBase):
    def __init__(
        self, store: ImageStore, namespaces: NamespaceStore, exchange: ev.EventExchange | None = None
    ) -> None:
        self._store = store
        self._namespaces = namespaces
        self._exchange = exchange

    def _publish(self, ns: str, topic: str, name: str) -> None:
        if self._exchange is not None:
            self._exchange.publish(ns, topic, ev.ImageEvent(name))

    async def get(self, message: GetImageRequest) -> GetImageResponse:
        record = await asyncio.to_thread(self._store.get, namespace_from_context(), message.name)
        return GetImageResponse(image=image_to_proto(record))

    async def list(self, message: ListImagesRequest) -> ListImagesResponse:
        selected = parse_filters(message.filters)
        unknown = selected.fields() - IMAGE_FILTER_FIELDS
        if unknown:
            raise InvalidArgument(f"filters: unknown field {min(unknown)!r} for images: invalid argument")
        records = await asyncio.to_thread(self._store.list, namespace_from_context())
        return ListImagesResponse(images=[image_to_proto(r) for r in records if selected.match(_image_adaptor(r))])

    async def create(self, message: CreateImageRequest) -> CreateImageResponse:
        if message.image is None:
            raise InvalidArgument("image must be set: invalid argument")
        ns = namespace_from_context()
        now = ev.utcnow()
        record = replace(image_from_proto(message.image), created_at=now, updated_at=now)
        _validate(record)

        def create() -> None:
            self._namespaces.ensure(ns)
            try:
                self._store.get(ns, record.name)
            except NotFound:
                self._store.put(ns, record)
                return
            raise AlreadyExists(f'image "{record.name}": already exists')

        await asyncio.to_thread(create)
        self._publish(ns, ev.IMAGE_CREATE, record.name)
        return CreateImageResponse(image=image_to_proto(record))

    async def update(self, message: UpdateImageRequest) -> UpdateImageResponse:
        if message.image is None:
            raise InvalidArgument("image must be set: invalid argument")
        ns = namespace_from_context()
        wanted = message.image
        paths = list(message.update_mask.paths) if message.update_mask else []

        def update() -> ImageRecord:
            current = self._store.get(ns, wanted.name)
            labels, target = dict(current.labels), current.target
            for path in paths or ["labels", "target"]:
                if (new_labels := update_map(labels, wanted.labels, path, "labels")) is not None:
                    labels = new_labels
                elif path == "target":
                    target = descriptor_from_proto(wanted.target)
                else:
                    raise InvalidArgument(f'cannot update "{path}" field on image "{wanted.name}": invalid argument')
            updated = replace(current, labels=labels, target=target, updated_at=ev.utcnow())
            _validate(updated)
            self._store.put(ns, updated)
            return updated

        updated = await asyncio.to_thread(update)
        self._publish(ns, ev.IMAGE_UPDATE, updated.name)
        return UpdateImageResponse(image=image_to_proto(updated))

    async def delete(self, message: DeleteImageRequest) -> Empty:
        ns = namespace_from_context()
        await asyncio.to_thread(self._store.delete, ns, message.name)
        self._publish(ns, ev.IMAGE_DELETE, message.name)
        return Empty()
