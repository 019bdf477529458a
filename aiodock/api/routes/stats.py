"""GET /containers/{id}/stats (stream, one-shot)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from aiohttp import web

from aiodock.api import params, streams
from aiodock.errors import InvalidArgument

routes = web.RouteTableDef()


class StatsBackend(Protocol):
    async def stats(self, ref: str, stream: bool = True, one_shot: bool = False) -> AsyncIterator[dict[str, Any]]:
        """NotFound now; then Docker's stats documents."""


STATS = web.AppKey("stats", StatsBackend)


@routes.get("/containers/{id}/stats")
async def stats(request: web.Request) -> web.StreamResponse:
    stream = params.boolean(request, "stream", default=True)
    one_shot = params.boolean(request, "one-shot")
    if one_shot and stream:
        raise InvalidArgument("cannot have stream=true and one-shot=true")
    documents = await request.app[STATS].stats(request.match_info["id"], stream=stream, one_shot=one_shot)
    if not stream:
        return streams.json_response(await anext(documents))
    response = await streams.start_stream(request, "application/json")
    async for doc in documents:
        await response.write(streams.json_line(doc))
    await response.write_eof()
    return response
