"""POST /build: Docker's legacy builder (the docker CLI's DOCKER_BUILDKIT=0 path, docker-py, docker-compose)."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from aiodock.api import params, streams
from aiodock.api.keys import TMP_DIR
from aiodock.core.images.reference import parse_normalized
from aiodock.engine.backend import BuildBackend, BuildOptions
from aiodock.errors import InvalidArgument

BUILDER = web.AppKey("builder", BuildBackend)
routes = web.RouteTableDef()


def _json_map(request: web.Request, name: str) -> dict[str, Any]:
    raw = request.query.get(name)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidArgument(f"invalid {name} parameter: {raw}") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"invalid {name} parameter: {raw}")
    return value


def build_options(request: web.Request) -> BuildOptions:
    query = request.query
    if query.get("remote"):
        raise InvalidArgument("remote build contexts are not supported by aiodock's builder")
    if query.get("platform") and query["platform"] not in ("linux", "linux/amd64"):
        raise InvalidArgument(f"\"{query['platform']}\": unsupported platform")
    for tag in query.getall("t", []):
        parse_normalized(tag)  # "invalid reference format" (400) before anything is built
    args = _json_map(request, "buildargs")
    labels = _json_map(request, "labels")
    return BuildOptions(
        tags=tuple(query.getall("t", [])),
        dockerfile=query.get("dockerfile") or "Dockerfile",
        build_args={str(k): (None if v is None else str(v)) for k, v in args.items()},
        labels={str(k): str(v) for k, v in labels.items()},
        target=query.get("target", ""),
        quiet=params.boolean(request, "q"),
        remove=params.boolean(request, "rm", default=True),
        force_remove=params.boolean(request, "forcerm"),
    )


@routes.post("/build")
async def build(request: web.Request) -> web.StreamResponse:
    builder = request.app.get(BUILDER)
    if builder is None:
        raise InvalidArgument("this daemon has no builder")
    options = build_options(request)
    work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="aiodock-build-", dir=request.app.get(TMP_DIR)))
    try:
        context = work / "context.tar"
        await streams.body_to_file(request, context)
        response = await streams.start_stream(request, "application/json")
        messages = builder.build(context, options)
        try:
            async for message in messages:
                await response.write(streams.json_line(message))
        finally:
            await messages.aclose()
        await response.write_eof()
        return response
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
