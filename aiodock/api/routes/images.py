"""/images/...: pull, push, search, import, load, save, list, inspect, history, tag, remove, prune; /auth;
/distribution."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from aiodock.api import params, streams
from aiodock.api.keys import IMAGES, TMP_DIR
from aiodock.errors import AiodockError, InvalidArgument, NotImplementedYet

routes = web.RouteTableDef()
log = structlog.get_logger("aiodock.api")

# Image references contain slashes and colons: {name:.+} takes the whole middle of the path.
NAME = "{name:.+}"
CLIENT_CHECK_INTERVAL = 0.5  # how often a long pull/push looks whether its client is still there


async def _tmp_dir(request: web.Request) -> Path:
    base = request.app.get(TMP_DIR)
    return Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="aiodock-api-", dir=base))


async def _remove_tree(path: Path) -> None:
    await asyncio.to_thread(shutil.rmtree, path, True)


@routes.post("/images/create")
async def create(request: web.Request) -> web.StreamResponse:
    from_image, from_src = request.query.get("fromImage", ""), request.query.get("fromSrc", "")
    if from_image:
        messages = await request.app[IMAGES].pull(from_image, params.string(request, "tag"),
                                                  params.string(request, "platform"),
                                                  request.headers.get("X-Registry-Auth"))
        return await _progress_stream(request, messages)
    if not from_src:
        raise InvalidArgument("either fromImage or fromSrc is required")
    if from_src != "-":
        raise NotImplementedYet(f"importing from {from_src} is not supported yet: send the tarball in the body")
    work = await _tmp_dir(request)
    try:
        src = work / "import.tar"
        await streams.body_to_file(request, src)
        image_id = await request.app[IMAGES].import_tar(
            src, params.string(request, "repo"), params.string(request, "tag"),
            [c for c in request.query.getall("changes", []) if c], request.query.get("message", ""))
    finally:
        await _remove_tree(work)
    response = await streams.start_stream(request, "application/json")
    await response.write(streams.json_line({"status": image_id}))
    await response.write_eof()
    return response


@routes.post(f"/images/{NAME}/push")
async def push(request: web.Request) -> web.StreamResponse:
    messages = await request.app[IMAGES].push(request.match_info["name"], params.string(request, "tag"),
                                              request.headers.get("X-Registry-Auth"))
    return await _progress_stream(request, messages)


@routes.post("/auth")
async def auth(request: web.Request) -> web.Response:
    body = await params.json_object(request, target="types.AuthConfig")
    return streams.json_response(await request.app[IMAGES].login(body))


@routes.get(f"/distribution/{NAME}/json")
async def distribution(request: web.Request) -> web.Response:
    return streams.json_response(await request.app[IMAGES].distribution(
        request.match_info["name"], request.headers.get("X-Registry-Auth")))


@routes.get("/images/search")
async def search(request: web.Request) -> web.Response:
    return streams.json_response(await request.app[IMAGES].search(
        request.query.get("term", ""), params.integer(request, "limit"), params.filters(request),
        request.headers.get("X-Registry-Auth")))


@routes.post("/images/load")
async def load(request: web.Request) -> web.StreamResponse:
    # ?quiet only silences progress bars, which aiodock does not draw.
    work = await _tmp_dir(request)
    try:
        src = work / "load.tar"
        await streams.body_to_file(request, src)
        response = await streams.start_stream(request, "application/json")
        try:
            loaded = await request.app[IMAGES].load(src)
        except AiodockError as err:  # Docker reports load failures inside the stream
            await response.write(streams.error_line(str(err)))
        else:
            for line in loaded:  # the backend words each line as Docker does: "Loaded image: busybox:latest"
                await response.write(streams.json_line({"stream": f"{line}\n"}))
    finally:
        await _remove_tree(work)
    await response.write_eof()
    return response


@routes.get("/images/get")
async def save_many(request: web.Request) -> web.StreamResponse:
    return await _save(request, request.query.getall("names", []))


@routes.get(f"/images/{NAME}/get")
async def save_one(request: web.Request) -> web.StreamResponse:
    return await _save(request, [request.match_info["name"]])


@routes.get("/images/json")
async def list_images(request: web.Request) -> web.Response:
    filters = params.filters(request)
    if legacy := request.query.get("filter"):
        filters.setdefault("reference", []).append(legacy)
    return streams.json_response(await request.app[IMAGES].list_images(all=params.boolean(request, "all"),
                                                                     filters=filters))


@routes.get(f"/images/{NAME}/json")
async def inspect(request: web.Request) -> web.Response:
    return streams.json_response(await request.app[IMAGES].inspect(request.match_info["name"]))


@routes.get(f"/images/{NAME}/history")
async def history(request: web.Request) -> web.Response:
    return streams.json_response(await request.app[IMAGES].history(request.match_info["name"]))


@routes.post(f"/images/{NAME}/tag")
async def tag(request: web.Request) -> web.Response:
    await request.app[IMAGES].tag(request.match_info["name"], request.query.get("repo", ""),
                                  params.string(request, "tag"))
    return web.Response(status=201)


@routes.post("/images/prune")
async def prune(request: web.Request) -> web.Response:
    filters = params.filters(request)
    dangling_only = True
    for value in filters.get("dangling", []):
        lowered = value.strip().lower()
        if lowered in {"false", "0"}:
            dangling_only = False
        elif lowered not in {"true", "1"}:
            raise InvalidArgument(f"invalid filter 'dangling={value}'")
    return streams.json_response(await request.app[IMAGES].prune(dangling_only=dangling_only, filters=filters))


@routes.delete(f"/images/{NAME}")
async def remove(request: web.Request) -> web.Response:
    return streams.json_response(await request.app[IMAGES].remove(
        request.match_info["name"], force=params.boolean(request, "force"),
        prune=not params.boolean(request, "noprune")))


async def _save(request: web.Request, refs: list[str]) -> web.StreamResponse:
    work = await _tmp_dir(request)
    try:
        dest = work / "save.tar"
        await request.app[IMAGES].save(refs, dest)
        response = await streams.start_stream(request, "application/x-tar")
        try:
            async for data in streams.file_chunks(dest):
                await response.write(data)
            await _remove_tree(work)  # gone before the client sees the end of the tar
            await response.write_eof()
        except ConnectionError:
            log.debug("api_stream_client_gone")
    finally:
        await _remove_tree(work)
    return response


async def _next_message(request: web.Request,
                        messages: AsyncGenerator[dict[str, Any], None]) -> dict[str, Any] | None:
    """The next message; a client that went away (docker pull interrupted) cancels the work, as in Docker."""
    pending = asyncio.ensure_future(anext(messages, None))
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=CLIENT_CHECK_INTERVAL)
            if done:
                return pending.result()
            if request.transport is None or request.transport.is_closing():
                raise ConnectionResetError("client went away")
    finally:
        if not pending.done():  # the generator must be idle before it is closed
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending


async def _progress_stream(request: web.Request,
                           messages: AsyncGenerator[dict[str, Any], None]) -> web.StreamResponse:
    """Docker's JSON progress stream; an error after the headers went out is the stream's last message."""
    try:
        response = await streams.start_stream(request, "application/json")
        try:
            while (message := await _next_message(request, messages)) is not None:
                await response.write(streams.json_line(message))
        except AiodockError as err:
            await response.write(streams.error_line(str(err)))
        except ConnectionError:
            log.debug("api_stream_client_gone")
            return response
        except Exception as exc:  # a fault mid-stream: the client still gets an error message
            log.exception("api_progress_stream_error", path=request.path)
            await response.write(streams.error_line(str(exc) or type(exc).__name__))
        await response.write_eof()
        return response
    finally:
        await messages.aclose()
