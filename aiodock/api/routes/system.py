"""/_ping, /version, /info, /system/df, /build/prune."""

from __future__ import annotations

from aiohttp import web

from aiodock.api import streams
from aiodock.api.keys import SYSTEM

routes = web.RouteTableDef()

_PING_HEADERS = {
    "Builder-Version": "1",
    "Swarm": "inactive",
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
}


@routes.route("GET", "/_ping")
@routes.route("HEAD", "/_ping")
async def ping(request: web.Request) -> web.Response:
    if request.method == "HEAD":
        return web.Response(headers={**_PING_HEADERS, "Content-Type": "text/plain; charset=utf-8",
                                     "Content-Length": "0"})
    return web.Response(text="OK", charset="utf-8", headers=_PING_HEADERS)


@routes.get("/version")
async def version(request: web.Request) -> web.Response:
    return streams.json_response(await request.app[SYSTEM].version())


@routes.get("/info")
async def info(request: web.Request) -> web.Response:
    return streams.json_response(await request.app[SYSTEM].info())


@routes.get("/system/df")
async def disk_usage(request: web.Request) -> web.Response:
    return streams.json_response(await request.app[SYSTEM].df())


@routes.post("/build/prune")
async def build_prune(request: web.Request) -> web.Response:
    return streams.json_response(await request.app[SYSTEM].build_prune())
