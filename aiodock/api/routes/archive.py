"""/containers/{id}/archive: stat (HEAD), get (tar out), put (tar in); export and changes."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from aiohttp import web

from aiodock.api import params, streams
from aiodock.api.keys import TMP_DIR
from aiodock.api.routes.containers import _copy_to_response
from aiodock.engine.backend import ArchiveBackend, CommitBackend
from aiodock.errors import InvalidArgument, NotImplementedYet

ARCHIVES = web.AppKey("archives", ArchiveBackend)
COMMITS = web.AppKey("commits", CommitBackend)
STAT_HEADER = "X-Docker-Container-Path-Stat"
routes = web.RouteTableDef()


def _backend(request: web.Request) -> ArchiveBackend:
    backend = request.app.get(ARCHIVES)
    if backend is None:
        raise NotImplementedYet("container archives are not served by this daemon")
    return backend


def _path(request: web.Request) -> str:
    path = request.query.get("path", "")
    if not path:
        raise InvalidArgument("path cannot be empty")
    return path


@routes.route("HEAD", "/containers/{id}/archive")
async def stat(request: web.Request) -> web.Response:
    header = await _backend(request).stat_path(request.match_info["id"], _path(request))
    return web.Response(status=200, headers={STAT_HEADER: header, "Content-Type": "application/json"})


@routes.get("/containers/{id}/archive")
async def get_archive(request: web.Request) -> web.StreamResponse:
    header, data = await _backend(request).get_archive(request.match_info["id"], _path(request))
    response = web.StreamResponse(status=200, headers={STAT_HEADER: header, "Content-Type": "application/x-tar"})
    try:
        await response.prepare(request)
    except BaseException:
        aclose = getattr(data, "aclose", None)
        if aclose is not None:
            await aclose()
        raise
    await _copy_to_response(response, data)
    return response


@routes.put("/containers/{id}/archive")
async def put_archive(request: web.Request) -> web.Response:
    path = _path(request)
    work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="aiodock-api-", dir=request.app.get(TMP_DIR)))
    try:
        src = work / "archive.tar"
        await streams.body_to_file(request, src)
        await _backend(request).put_archive(
            request.match_info["id"], path, src,
            no_overwrite_dir_non_dir=params.boolean(request, "noOverwriteDirNonDir"),
            copy_uid_gid=params.boolean(request, "copyUIDGID"))
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    return web.Response(status=200)


def _commits(request: web.Request) -> CommitBackend:
    backend = request.app.get(COMMITS)
    if backend is None:
        raise NotImplementedYet("commit, diff and export are not served by this daemon")
    return backend


@routes.get("/containers/{id}/changes")
async def changes(request: web.Request) -> web.Response:
    return streams.json_response(await _commits(request).changes(request.match_info["id"]))


@routes.get("/containers/{id}/export")
async def export(request: web.Request) -> web.StreamResponse:
    data = await _commits(request).export(request.match_info["id"])
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/x-tar"})
    try:
        await response.prepare(request)
    except BaseException:
        aclose = getattr(data, "aclose", None)
        if aclose is not None:
            await aclose()
        raise
    await _copy_to_response(response, data)
    return response


@routes.post("/commit")
async def commit(request: web.Request) -> web.Response:
    container = request.query.get("container", "")
    if not container:
        raise InvalidArgument("No such container: ")
    body = await params.json_object(request, target="container.Config", required=False)
    image_id = await _commits(request).commit(
        container, params.string(request, "repo"), params.string(request, "tag"),
        request.query.get("comment", ""), request.query.get("author", ""),
        [c for c in request.query.getall("changes", []) if c], params.boolean(request, "pause", True), body)
    return streams.json_response({"Id": image_id}, status=201)


__all__ = ["ARCHIVES", "COMMITS", "routes"]
