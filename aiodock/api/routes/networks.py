"""/networks: list, inspect, create (bridge), remove, connect, disconnect, prune."""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from aiodock.api import params, streams
from aiodock.errors import InvalidArgument, NotImplementedYet


class NetworkBackend(Protocol):
    async def list_networks(self, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]: ...

    async def inspect_network(self, ref: str, with_containers: bool = True) -> dict[str, Any]: ...

    async def create_network(self, body: dict[str, Any]) -> dict[str, str]: ...

    async def remove_network(self, ref: str) -> None: ...

    async def connect(self, network_ref: str, container_ref: str,
                      endpoint_config: dict[str, Any] | None = None) -> None: ...

    async def disconnect(self, network_ref: str, container_ref: str, force: bool = False) -> None: ...

    async def prune_networks(self, filters: dict[str, list[str]] | None = None) -> dict[str, Any]: ...


NETWORKS = web.AppKey("networks", NetworkBackend)
routes = web.RouteTableDef()


def _backend(request: web.Request) -> NetworkBackend:
    backend = request.app.get(NETWORKS)
    if backend is None:
        raise NotImplementedYet("networks are not served by this daemon")
    return backend


@routes.get("/networks")
async def list_networks(request: web.Request) -> web.Response:
    return streams.json_response(await _backend(request).list_networks(params.filters(request)))


@routes.post("/networks/create")
async def create(request: web.Request) -> web.Response:
    body = await params.json_object(request, target="types.NetworkCreateRequest")
    return streams.json_response(await _backend(request).create_network(body), status=201)


@routes.post("/networks/prune")
async def prune(request: web.Request) -> web.Response:
    return streams.json_response(await _backend(request).prune_networks(params.filters(request)))


@routes.get("/networks/{id}")
async def inspect(request: web.Request) -> web.Response:
    return streams.json_response(await _backend(request).inspect_network(request.match_info["id"]))


@routes.delete("/networks/{id}")
async def remove(request: web.Request) -> web.Response:
    await _backend(request).remove_network(request.match_info["id"])
    return web.Response(status=204)


def _container(body: dict[str, Any]) -> str:
    container = body.get("Container")
    if not container or not isinstance(container, str):
        raise InvalidArgument("container is required")
    return container


@routes.post("/networks/{id}/connect")
async def connect(request: web.Request) -> web.Response:
    body = await params.json_object(request, target="types.NetworkConnect")
    await _backend(request).connect(request.match_info["id"], _container(body), body.get("EndpointConfig"))
    return web.Response(status=200)


@routes.post("/networks/{id}/disconnect")
async def disconnect(request: web.Request) -> web.Response:
    body = await params.json_object(request, target="types.NetworkDisconnect")
    await _backend(request).disconnect(request.match_info["id"], _container(body), bool(body.get("Force")))
    return web.Response(status=200)


__all__ = ["NETWORKS", "NetworkBackend", "routes"]
