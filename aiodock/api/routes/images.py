"""/images/...: import, load, save, list, inspect, history, tag, remove, prune (pull/push answer an error)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import structlog
from aiohttp import web

from aiodock.api import params, streams
from aiodock.api.keys import IMAGES, TMP_DIR
from aiodock.errors import AiodockError, InvalidArgument, NotImplementedYet

routes = web.RouteTableDef()
log = structlog.get_logger("aiodock.api")

# Image references contain slashes and colons: {name:.+} takes the whole middle of the path.
NAME = "{name:.+}"


async def _tmp_dir(request: web.Request) -> Path:
    base = request.app.get(TMP_DIR)
    return Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="aiodock-api-", dir=base))


async def _remove_tree(path: Path) -> None:
    await asyncio.to_thread(shutil.rmtree, path, True)


@routes.post("/images/create")
async def create(request: web.Request) -> web.StreamResponse:
    from_image, from_src = request.query.get("fromImage", ""), request.query.get("fromSrc", "")
    if from_image:
        ref = from_image + (f":{request.query['tag']}" if request.query.get("tag") else "")
        return await _error_stream(request, f"pull of {ref} is not supported by aiodock yet: "
                                            "use docker load or docker import")
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
    return await _error_stream(request, f"push of {request.match_info['name']} is not supported by aiodock yet")


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


async def _error_stream(request: web.Request, message: str) -> web.StreamResponse:
    response = await streams.start_stream(request, "application/json")
    await response.write(streams.error_line(message))
    await response.write_eof()
    return response
