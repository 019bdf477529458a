"""The one error path, API version negotiation and the headers Docker puts on every response."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from aiodock import API_VERSION, MIN_API_VERSION, __version__
from aiodock.api import streams
from aiodock.errors import AiodockError, InvalidArgument, NotModified

log = structlog.get_logger("aiodock.api")

VERSION_KEY = "_api_version"  # match_info key of the optional /v1.NN route prefix
SERVER = f"Docker/aiodock-{__version__} (linux)"
COMMON_HEADERS = {
    "Api-Version": API_VERSION,
    "Docker-Experimental": "false",
    "Ostype": "linux",
    "Server": SERVER,
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _parse(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def check_version(version: str) -> None:
    """Docker's versionMiddleware: refuse clients outside MIN_API_VERSION..API_VERSION."""
    if _parse(version) < _parse(MIN_API_VERSION):
        raise InvalidArgument(f"client version {version} is too old. Minimum supported API version is "
                              f"{MIN_API_VERSION}, please upgrade your client to a newer version")
    if _parse(version) > _parse(API_VERSION):
        raise InvalidArgument(f"client version {version} is too new. Maximum supported API version is {API_VERSION}")


def error_body(status: int, message: str) -> web.Response:
    if status == 304:
        return web.Response(status=304)
    return streams.json_response({"message": message}, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map domain errors (and aiohttp's routing errors) to Docker's JSON {"message": ...} once."""
    try:
        version = request.match_info.get(VERSION_KEY)
        if version is not None:
            check_version(version)
        return await handler(request)
    except NotModified:
        return web.Response(status=304)
    except AiodockError as err:
        if err.http_status >= 500:
            log.warning("api_error", method=request.method, path=request.path, status=err.http_status, error=str(err))
        return error_body(err.http_status, str(err))
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        return error_body(404, "page not found")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_body(exc.status, exc.text or exc.reason)
    except Exception as exc:  # a real internal fault: log it, answer 500 without a traceback
        log.exception("api_internal_error", method=request.method, path=request.path)
        return error_body(500, str(exc) or type(exc).__name__)


async def add_common_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: runs for streamed and error responses alike, before the headers leave."""
    for name, value in COMMON_HEADERS.items():
        response.headers[name] = value
