"""Swarm-mode and plugin endpoints of a daemon that is not in a swarm and has no plugins, answered as such a dockerd
answers them: the swarm resources with 503 "This node is not a swarm manager...", GET /plugins with an empty list.
aiodock does not implement swarm mode: init and join answer 501."""

from __future__ import annotations

from aiohttp import web

from aiodock.api import streams
from aiodock.errors import NotImplementedYet, Unavailable

routes = web.RouteTableDef()

NOT_A_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this '
                 "node to swarm and try again.")
NOT_IN_SWARM = "This node is not part of a swarm"
SWARM_RESOURCES = ("nodes", "services", "tasks", "secrets", "configs")


@routes.get("/plugins")
async def plugins(request: web.Request) -> web.Response:
    return streams.json_response([])


@routes.get("/swarm")
async def swarm(request: web.Request) -> web.Response:
    raise Unavailable(NOT_A_MANAGER)


@routes.post("/swarm/leave")
async def swarm_leave(request: web.Request) -> web.Response:
    raise Unavailable(NOT_IN_SWARM)


@routes.post("/swarm/init")
@routes.post("/swarm/join")
async def swarm_init(request: web.Request) -> web.Response:
    raise NotImplementedYet("swarm mode is not supported by aiodock")


async def _not_a_manager(request: web.Request) -> web.Response:
    raise Unavailable(NOT_A_MANAGER)


for _resource in SWARM_RESOURCES:
    for _method in ("GET", "POST", "DELETE"):
        routes.route(_method, f"/{_resource}")(_not_a_manager)
        routes.route(_method, f"/{_resource}/{{name:.+}}")(_not_a_manager)
