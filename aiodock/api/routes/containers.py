"""/containers/...: create, list, inspect, lifecycle, wait, logs, attach, remove, rename, prune."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import structlog
from aiohttp import web

from aiodock.api import hijack, params, streams
from aiodock.api.keys import CONTAINERS
from aiodock.api.middleware import VERSION_KEY
from aiodock.engine.backend import AttachOptions, LogOptions, OutputChunk, StdinSink
from aiodock.errors import AiodockError, InvalidArgument

routes = web.RouteTableDef()
LINGER_SECONDS = 2.0
log = structlog.get_logger("aiodock.api")


@routes.post("/containers/create")
async def create(request: web.Request) -> web.Response:
    body = await params.json_object(request, target="container.ContainerConfigWrapper")
    if not body.get("Image"):
        raise InvalidArgument("config cannot be empty in order to create a container")
    cid, warnings = await request.app[CONTAINERS].create(params.string(request, "name"), body)
    return streams.json_response({"Id": cid, "Warnings": warnings or []}, status=201)


@routes.get("/containers/json")
async def list_containers(request: web.Request) -> web.Response:
    items = await request.app[CONTAINERS].list(
        all=params.boolean(request, "all"),
        limit=params.integer(request, "limit", default=-1) or -1,
        size=params.boolean(request, "size"),
        filters=params.filters(request),
    )
    return streams.json_response(items)


@routes.get("/containers/{id}/json")
async def inspect(request: web.Request) -> web.Response:
    return streams.json_response(await request.app[CONTAINERS].inspect(
        request.match_info["id"], size=params.boolean(request, "size")))


@routes.post("/containers/{id}/start")
async def start(request: web.Request) -> web.Response:
    await request.app[CONTAINERS].start(request.match_info["id"])
    return web.Response(status=204)


@routes.post("/containers/{id}/stop")
async def stop(request: web.Request) -> web.Response:
    await request.app[CONTAINERS].stop(request.match_info["id"], timeout=params.integer(request, "t", "timeout"),
                                       signal=params.string(request, "signal"))
    return web.Response(status=204)


@routes.post("/containers/{id}/restart")
async def restart(request: web.Request) -> web.Response:
    await request.app[CONTAINERS].restart(request.match_info["id"], timeout=params.integer(request, "t", "timeout"),
                                          signal=params.string(request, "signal"))
    return web.Response(status=204)


@routes.post("/containers/{id}/kill")
async def kill(request: web.Request) -> web.Response:
    await request.app[CONTAINERS].kill(request.match_info["id"], signal=params.string(request, "signal"))
    return web.Response(status=204)


@routes.post("/containers/{id}/pause")
async def pause(request: web.Request) -> web.Response:
    await request.app[CONTAINERS].pause(request.match_info["id"])
    return web.Response(status=204)


@routes.post("/containers/{id}/unpause")
async def unpause(request: web.Request) -> web.Response:
    await request.app[CONTAINERS].unpause(request.match_info["id"])
    return web.Response(status=204)


@routes.post("/containers/{id}/resize")
async def resize(request: web.Request) -> web.Response:
    await request.app[CONTAINERS].resize(request.match_info["id"], height=params.integer(request, "h") or 0,
                                         width=params.integer(request, "w") or 0)
    return web.Response(status=200)


@routes.post("/containers/{id}/update")
async def update(request: web.Request) -> web.Response:
    body = await params.json_object(request, target="container.UpdateConfig")
    return streams.json_response(await request.app[CONTAINERS].update(request.match_info["id"], body))


@routes.get("/containers/{id}/top")
async def top(request: web.Request) -> web.Response:
    return streams.json_response(await request.app[CONTAINERS].top(
        request.match_info["id"], request.query.get("ps_args", "")))


@routes.post("/containers/{id}/wait")
async def wait(request: web.Request) -> web.StreamResponse:
    condition = request.query.get("condition", "") or "not-running"
    waiter = await request.app[CONTAINERS].wait(request.match_info["id"], condition)
    # Headers go out before the wait: the docker CLI calls wait before start and waits for them.
    response = await streams.start_stream(request, "application/json")
    try:
        result = await waiter
        body: dict[str, Any] = {"StatusCode": result.status_code,
                                "Error": {"Message": result.error} if result.error else None}
    except Exception as err:  # headers are out: report in the body like Docker's WaitExitError
        if not isinstance(err, AiodockError):
            log.exception("api_wait_failed", container=request.match_info["id"])
        body = {"StatusCode": -1, "Error": {"Message": str(err) or type(err).__name__}}
    with contextlib.suppress(ConnectionError):
        await response.write(json.dumps(body).encode() + b"\n")
        await response.write_eof()
    return response


@routes.delete("/containers/{id}")
async def remove(request: web.Request) -> web.Response:
    await request.app[CONTAINERS].remove(request.match_info["id"], force=params.boolean(request, "force"),
                                         volumes=params.boolean(request, "v"), link=params.boolean(request, "link"))
    return web.Response(status=204)


@routes.post("/containers/{id}/rename")
async def rename(request: web.Request) -> web.Response:
    await request.app[CONTAINERS].rename(request.match_info["id"], request.query.get("name", ""))
    return web.Response(status=204)


@routes.post("/containers/prune")
async def prune(request: web.Request) -> web.Response:
    return streams.json_response(await request.app[CONTAINERS].prune(params.filters(request)))


@routes.get("/containers/{id}/logs")
async def logs(request: web.Request) -> web.StreamResponse:
    stdout, stderr = params.boolean(request, "stdout"), params.boolean(request, "stderr")
    if not (stdout or stderr):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    options = LogOptions(
        follow=params.boolean(request, "follow"), stdout=stdout, stderr=stderr,
        since=params.timestamp(request, "since"), until=params.timestamp(request, "until"),
        timestamps=params.boolean(request, "timestamps"), tail=params.tail(request),
    )
    tty, chunks = await request.app[CONTAINERS].logs(request.match_info["id"], options)
    response = await streams.start_stream(request, streams.content_type(tty))
    await _copy_to_response(response, streams.framed(chunks, tty, options.timestamps))
    return response


@routes.post("/containers/{id}/attach")
async def attach(request: web.Request) -> web.StreamResponse:
    options = AttachOptions(
        stream=params.boolean(request, "stream"), stdout=params.boolean(request, "stdout"),
        stderr=params.boolean(request, "stderr"), stdin=params.boolean(request, "stdin"),
        logs=params.boolean(request, "logs"),
        detach_keys=request.query.get("detachKeys"),
    )
    # Register for output before answering, so nothing produced right after the 101 is lost.
    result: tuple[Any, ...] = await request.app[CONTAINERS].attach(request.match_info["id"], options)
    tty: bool = result[0]
    chunks: AsyncIterator[OutputChunk] = result[1]
    stdin: StdinSink | None = result[2] if len(result) > 2 and options.stdin else None
    output = streams.framed(chunks, tty)
    if not hijack.wants_upgrade(request):
        response = await streams.start_stream(request, streams.content_type(tty))
        await _copy_to_response(response, output)
        return response
    try:
        response, connection = await hijack.upgrade(request, streams.content_type(tty))
    except BaseException:
        await _aclose(chunks)
        raise
    await _serve_hijacked(connection, output, stdin, request.transport)
    return response


@routes.get("/containers/{id}/attach/ws")
async def attach_websocket(request: web.Request) -> web.StreamResponse:
    """Attach over a websocket, as Docker's: stdin, stdout and stderr always, never multiplexed (the raw bytes,
    one message per piece); binary messages from API 1.28 on, text before. `logs` and `stream` as for attach."""
    options = AttachOptions(stream=params.boolean(request, "stream"), stdout=True, stderr=True, stdin=True,
                            logs=params.boolean(request, "logs"), detach_keys=request.query.get("detachKeys"))
    result: tuple[Any, ...] = await request.app[CONTAINERS].attach(request.match_info["id"], options)
    chunks: AsyncIterator[OutputChunk] = result[1]
    stdin: StdinSink | None = result[2] if len(result) > 2 else None
    version = request.match_info.get(VERSION_KEY)
    binary = version is None or tuple(int(x) for x in version.split(".")) >= (1, 28)
    ws = web.WebSocketResponse(protocols=("chat",), autoping=True)
    try:
        await ws.prepare(request)
    except BaseException:
        await _aclose(chunks)
        raise

    async def pump_out() -> None:
        async for chunk in chunks:
            if binary:
                await ws.send_bytes(chunk.data)
            else:
                await ws.send_str(chunk.data.decode(errors="replace"))

    async def pump_in() -> None:
        try:
            async for message in ws:
                if stdin is None:
                    continue
                if message.type == web.WSMsgType.BINARY:
                    await stdin.write(message.data)
                elif message.type == web.WSMsgType.TEXT:
                    await stdin.write(message.data.encode())
        finally:
            if stdin is not None:
                await stdin.close()

    out_task = asyncio.ensure_future(pump_out())
    in_task = asyncio.ensure_future(pump_in())
    try:
        await asyncio.wait({out_task, in_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (out_task, in_task):
            task.cancel()
        for task in (out_task, in_task):
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, AiodockError):
                await task
        await _aclose(chunks)
        with contextlib.suppress(ConnectionError):
            await ws.close()
    return ws


async def _copy_to_response(response: web.StreamResponse, data: AsyncIterator[bytes]) -> None:
    """Write each piece as it comes (StreamResponse.write sends at once); stop when the client is gone."""
    try:
        async for piece in data:
            await response.write(piece)
        await response.write_eof()
    except ConnectionError:
        log.debug("api_stream_client_gone")
    except Exception:  # headers are out, no status can change any more: log and end the stream
        log.exception("api_stream_failed")
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
    finally:
        await _aclose(data)


async def _serve_hijacked(connection: hijack.HijackedConnection, output: AsyncIterator[bytes],
                          stdin: StdinSink | None, transport: asyncio.BaseTransport | None = None) -> None:
    """Output to the client until the container's stream ends (or the client leaves); stdin the other way.
    At the end, a client still sending stdin (`yes | docker run -i busybox head -n1`) is sent EOF and given a
    moment to read the rest and close first: closing on its unread input would reset the connection, and the
    client would report the reset instead of the exit code."""
    async def pump_out() -> None:
        async for piece in output:
            await connection.write(piece)

    async def pump_in() -> None:
        try:
            while data := await connection.read():
                if stdin is not None:
                    await stdin.write(data)
        finally:
            if stdin is not None:
                await stdin.close()

    out_task = asyncio.ensure_future(pump_out())
    in_task = asyncio.ensure_future(pump_in())
    closed = asyncio.ensure_future(connection.wait_closed())
    try:
        await asyncio.wait({out_task, closed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (out_task, closed):
            task.cancel()
        try:
            await out_task
        except (asyncio.CancelledError, ConnectionError):
            pass
        except Exception:
            log.exception("api_attach_stream_failed")
        await _aclose(output)
        if not in_task.done():
            in_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, AiodockError):
            await in_task
        await _linger(connection, transport)
        connection.close()
        if not in_task.done():  # the client may still be half-open on stdin: drop it with the connection
            in_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, AiodockError):
            await in_task


async def _linger(connection: hijack.HijackedConnection, transport: asyncio.BaseTransport | None) -> None:
    if connection.closed or not isinstance(transport, asyncio.WriteTransport) or transport.is_closing() \
            or not transport.can_write_eof():
        return
    try:
        transport.write_eof()
        async with asyncio.timeout(LINGER_SECONDS):
            while await connection.read():
                pass  # stdin nobody takes any more
    except (TimeoutError, OSError, RuntimeError):
        pass


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    closer = getattr(iterator, "aclose", None)
    if closer is not None:
        with contextlib.suppress(Exception):
            await closer()


__all__ = ["StdinSink", "routes"]
