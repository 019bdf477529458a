"""/volumes: create, list, inspect, remove, prune."""

from __future__ import annotations

from aiohttp import web

from aiodock.api import params, streams
from aiodock.engine.backend import VolumeBackend
from aiodock.errors import NotImplementedYet

VOLUMES = web.AppKey("volumes", VolumeBackend)
routes = web.RouteTableDef()


def _backend(request: web.Request) -> VolumeBackend:
    backend = request.app.get(VOLUMES)
    if backend is None:
        raise NotImplementedYet("volumes are not served by this daemon")
    return backend


@routes.get("/volumes")
async def list_volumes(request: web.Request) -> web.Response:
    return streams.json_response(await _backend(request).list_volumes(params.filters(request)))


@routes.post("/volumes/create")
async def create(request: web.Request) -> web.Response:
    body = await params.json_object(request, target="volume.CreateOptions", required=False)
    return streams.json_response(await _backend(request).create_volume(body), status=201)


@routes.post("/volumes/prune")
async def prune(request: web.Request) -> web.Response:
    return streams.json_response(await _backend(request).prune_volumes(params.filters(request)))


@routes.get("/volumes/{name}")
async def inspect(request: web.Request) -> web.Response:
    return streams.json_response(await _backend(request).inspect_volume(request.match_info["name"]))


@routes.delete("/volumes/{name}")
async def remove(request: web.Request) -> web.Response:
    await _backend(request).remove_volume(request.match_info["name"], force=params.boolean(request, "force"))
    return web.Response(status=204)


__all__ = ["VOLUMES", "routes"]
