"""GET /events: Docker's event stream, one JSON message per line, each sent as it happens."""

from __future__ import annotations

import contextlib
import json

from aiohttp import web

from aiodock.api import params, streams
from aiodock.engine.backend import EventsBackend
from aiodock.engine.events import parse_time

EVENTS = web.AppKey("events", EventsBackend)
routes = web.RouteTableDef()


@routes.get("/events")
async def events(request: web.Request) -> web.StreamResponse:
    since = parse_time(request.query.get("since"), "since")
    until = parse_time(request.query.get("until"), "until")
    source = await request.app[EVENTS].stream(since=since, until=until, filters=params.filters(request))
    response = await streams.start_stream(request, "application/json")  # headers at once, like Docker
    try:
        async for event in source:
            await response.write(json.dumps(event.to_json(), separators=(",", ":")).encode() + b"\n")
        await response.write_eof()
    except ConnectionError:
        pass
    finally:
        closer = getattr(source, "aclose", None)
        if closer is not None:
            with contextlib.suppress(Exception):
                await closer()
    return response


__all__ = ["EVENTS", "routes"]
