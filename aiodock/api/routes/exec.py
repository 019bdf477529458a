"""/containers/{id}/exec, /exec/{id}/start (hijacked like attach), /exec/{id}/json."""

from __future__ import annotations

from aiohttp import web

from aiodock.api import hijack, params, streams
from aiodock.api.routes.containers import _aclose, _copy_to_response, _serve_hijacked
from aiodock.engine.backend import ExecBackend
from aiodock.errors import InvalidArgument

EXECS = web.AppKey("execs", ExecBackend)
routes = web.RouteTableDef()


@routes.post("/containers/{id}/exec")
async def create(request: web.Request) -> web.Response:
    body = await params.json_object(request, target="container.ExecConfig")
    exec_id = await request.app[EXECS].create(request.match_info["id"], body)
    return streams.json_response({"Id": exec_id}, status=201)


@routes.post("/exec/{id}/start")
async def start(request: web.Request) -> web.StreamResponse:
    body = await params.json_object(request, target="container.ExecStartConfig", required=False)
    detach = body.get("Detach", False)
    if not isinstance(detach, bool):
        raise InvalidArgument("Detach must be a boolean")
    started = await request.app[EXECS].start(request.match_info["id"], detach=detach)
    if started is None:
        return web.Response(status=200)
    tty, chunks, stdin = started
    output = streams.framed(chunks, tty)
    if not hijack.wants_upgrade(request):
        response = await streams.start_stream(request, streams.content_type(tty))
        await _copy_to_response(response, output)
        await _aclose(chunks)
        return response
    try:
        upgraded, connection = await hijack.upgrade(request, streams.content_type(tty))
    except BaseException:
        await _aclose(chunks)
        raise
    try:
        await _serve_hijacked(connection, output, stdin, request.transport)
    finally:
        await _aclose(chunks)
    return upgraded


@routes.post("/exec/{id}/resize")
async def resize(request: web.Request) -> web.Response:
    await request.app[EXECS].resize(request.match_info["id"], height=params.integer(request, "h") or 0,
                                    width=params.integer(request, "w") or 0)
    return web.Response(status=200)


@routes.get("/exec/{id}/json")
async def inspect(request: web.Request) -> web.Response:
    return streams.json_response(await request.app[EXECS].inspect(request.match_info["id"]))


__all__ = ["EXECS", "routes"]
