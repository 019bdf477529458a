"""containerd.services.content.v1.Content over core.content.ContentStore (read side; Write/Abort unimplemented)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import BinaryIO

from aiodock._proto.containerd.services.content.v1 import (
    ContentBase,
    DeleteContentRequest,
    InfoRequest,
    InfoResponse,
    ListContentRequest,
    ListContentResponse,
    ListStatusesRequest,
    ListStatusesResponse,
    ReadContentRequest,
    ReadContentResponse,
    StatusRequest,
    StatusResponse,
    UpdateRequest,
    UpdateResponse,
)
from aiodock._proto.google.protobuf import Empty
from aiodock.core.content import BlobInfo, ContentStore
from aiodock.core.metadata import FieldAdaptor, parse_filters, update_map
from aiodock.errors import InvalidArgument, NotFound
from aiodock.grpc.convert import blob_info_to_proto
from aiodock.grpc.errors import grpc_service

READ_CHUNK = 1 << 20  # bytes per ReadContentResponse
LIST_BATCH = 100  # infos per ListContentResponse


def _blob_adaptor(info: BlobInfo) -> FieldAdaptor:
    def field(path: tuple[str, ...]) -> str | None:
        head, rest = path[0], path[1:]
        if head == "digest" and not rest:
            return info.digest
        if head == "size" and not rest:
            return str(info.size)
        if head == "labels" and rest:
            return info.labels.get(".".join(rest))
        return None

    return field


def _open_range(store: ContentStore, digest: str, offset: int, size: int) -> tuple[BinaryIO, int]:
    """Open the blob positioned at ``offset``; returns the file and how many bytes to read (to the end if size<=0)."""
    fh = store.open(digest)
    try:
        total = fh.seek(0, 2)
        if offset < 0 or offset > total:
            raise InvalidArgument(f"offset {offset} out of range for {digest} of size {total}: invalid argument")
        fh.seek(offset)
    except BaseException:
        fh.close()
        raise
    return fh, (total - offset if size <= 0 else min(size, total - offset))


@grpc_service
class ContentService(ContentBase):
    def __init__(self, store: ContentStore) -> None:
        self._store = store

    async def info(self, message: InfoRequest) -> InfoResponse:
        info = await asyncio.to_thread(self._store.info, message.digest)
        return InfoResponse(info=blob_info_to_proto(info))

    async def update(self, message: UpdateRequest) -> UpdateResponse:
        if message.info is None:
            raise InvalidArgument("info must be set: invalid argument")
        wanted = message.info
        paths = list(message.update_mask.paths) if message.update_mask else []

        def update() -> BlobInfo:
            labels = dict(self._store.info(wanted.digest).labels)
            for path in paths or ["labels"]:
                if (new_labels := update_map(labels, wanted.labels, path, "labels")) is not None:
                    labels = new_labels
                else:
                    raise InvalidArgument(
                        f'cannot update "{path}" field on content info "{wanted.digest}": invalid argument'
                    )
            return self._store.update_labels(wanted.digest, labels)

        return UpdateResponse(info=blob_info_to_proto(await asyncio.to_thread(update)))

    async def list(self, message: ListContentRequest) -> AsyncIterator[ListContentResponse]:
        selected = parse_filters(message.filters)
        infos = [i for i in await asyncio.to_thread(self._store.list) if selected.match(_blob_adaptor(i))]
        for start in range(0, len(infos), LIST_BATCH):
            yield ListContentResponse(info=[blob_info_to_proto(i) for i in infos[start:start + LIST_BATCH]])

    async def delete(self, message: DeleteContentRequest) -> Empty:
        await asyncio.to_thread(self._store.delete, message.digest)
        return Empty()

    async def read(self, message: ReadContentRequest) -> AsyncIterator[ReadContentResponse]:
        fh, remaining = await asyncio.to_thread(
            _open_range, self._store, message.digest, message.offset, message.size
        )
        offset = message.offset
        try:
            while remaining > 0:
                chunk = await asyncio.to_thread(fh.read, min(READ_CHUNK, remaining))
                if not chunk:
                    break
                yield ReadContentResponse(offset=offset, data=chunk)
                offset += len(chunk)
                remaining -= len(chunk)
        finally:
            fh.close()

    async def status(self, message: StatusRequest) -> StatusResponse:
        raise NotFound(f"ref {message.ref}: not found")

    async def list_statuses(self, message: ListStatusesRequest) -> ListStatusesResponse:
        return ListStatusesResponse(statuses=[])
