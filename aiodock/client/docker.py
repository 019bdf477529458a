"""``DockerClient``: an asyncio client of the Docker Engine API (aiohttp; unix socket or plain tcp)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import aiohttp

from aiodock import __version__ as _version
from aiodock.client.errors import ClientError, DaemonUnreachable
from aiodock.client.hijack import HijackedStream, hijack
from aiodock.client.host import Host, parse_host, resolve_host
from aiodock.client.stream import STDOUT, demux

MAX_API_VERSION = "1.48"
USER_AGENT = f"aiodock-cli/{_version}"

ParamValue = str | int | bool | None | Iterable[str]
Params = Mapping[str, ParamValue]


def _version_tuple(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in v.split("."))
    except ValueError:
        return (0,)


def encode_params(params: Params | None) -> list[tuple[str, str]]:
    """Docker query encoding: booleans as 1/0, None dropped, lists repeated, dicts as JSON."""
    out: list[tuple[str, str]] = []
    for key, value in (params or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            out.append((key, "1" if value else "0"))
        elif isinstance(value, (int, str)):
            out.append((key, str(value)))
        elif isinstance(value, Mapping):
            out.append((key, json.dumps(value)))
        else:
            out.extend((key, str(v)) for v in value)
    return out


def filters_param(filters: Iterable[str]) -> str | None:
    """``-f key=value`` flags to the Engine API's ``{"key": {"value": true}}`` JSON."""
    result: dict[str, dict[str, bool]] = {}
    for item in filters:
        if "=" not in item:
            raise ValueError(f"bad format of filter (expected name=value): {item}")
        key, value = item.split("=", 1)
        result.setdefault(key.strip().lower(), {})[value] = True
    return json.dumps(result) if result else None


async def json_messages(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """Decode a stream of concatenated JSON objects (``/images/load``, ``/images/create``)."""
    decoder = json.JSONDecoder()
    buf = ""
    async for chunk in resp.content.iter_any():
        buf += chunk.decode("utf-8", "replace")
        while True:
            buf = buf.lstrip()
            if not buf:
                break
            try:
                obj, end = decoder.raw_decode(buf)
            except ValueError:
                break
            buf = buf[end:]
            if isinstance(obj, dict):
                yield obj
    if buf.strip():
        raise ClientError(0, f"invalid JSON message from daemon: {buf.strip()[:200]}")


def _q(name: str) -> str:
    return quote(name, safe="")


class DockerClient:
    """One HTTP session to one daemon; ``async with DockerClient(host) as c: await c.ping()``.

    The first call negotiates the API version with ``/_ping`` (like the docker CLI) and prefixes every
    later path with ``/v<version>``.
    """

    def __init__(self, host: str | None = None, *, environ: dict[str, str] | None = None) -> None:
        self.host: Host = parse_host(resolve_host(host, environ))
        self.api_version: str | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> DockerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector: aiohttp.BaseConnector
            if self.host.scheme == "unix":
                connector = aiohttp.UnixConnector(path=self.host.path)
            else:
                connector = aiohttp.TCPConnector()
            self._session = aiohttp.ClientSession(
                base_url=self.host.base_url,
                connector=connector,
                headers={"User-Agent": USER_AGENT},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
            )
        return self._session

    # ---- transport -------------------------------------------------------------------------------

    async def _prefix(self) -> str:
        if self.api_version is None:
            self.api_version = await self.ping()
        return f"/v{self.api_version}" if self.api_version else ""

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json_body: Any = None,
        data: bytes | AsyncIterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
        versioned: bool = True,
    ) -> aiohttp.ClientResponse:
        """Send a request; raise ``ClientError`` for 4xx/5xx. The caller releases the response."""
        url = (await self._prefix() if versioned else "") + path
        hdrs = dict(headers or {})
        if json_body is not None:
            data = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        try:
            resp = await self.session.request(method, url, params=encode_params(params), data=data, headers=hdrs)
        except (aiohttp.ClientConnectorError, FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonUnreachable(self.host.url, str(exc)) from exc
        except aiohttp.ClientError as exc:
            raise ClientError(0, f"error during connect: {method} {url}: {exc}") from exc
        if resp.status >= 400:
            body = await resp.read()
            resp.release()
            raise ClientError.from_body(resp.status, body)
        return resp

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Request and decode the JSON answer (``None`` for empty bodies)."""
        resp = await self.request(method, path, **kwargs)
        async with resp:
            body = await resp.read()
        if not body.strip():
            return None
        return json.loads(body)

    @asynccontextmanager
    async def stream(self, method: str, path: str, **kwargs: Any) -> AsyncIterator[aiohttp.ClientResponse]:
        resp = await self.request(method, path, **kwargs)
        try:
            yield resp
        finally:
            resp.release()

    # ---- system ----------------------------------------------------------------------------------

    async def ping(self) -> str:
        """``GET /_ping``; returns the API version to use (min of the daemon's and ours)."""
        resp = await self.request("GET", "/_ping", versioned=False)
        async with resp:
            await resp.read()
        server = resp.headers.get("API-Version", "")
        if not server:
            return ""
        if _version_tuple(server) > _version_tuple(MAX_API_VERSION):
            return MAX_API_VERSION
        return server

    async def version(self) -> dict[str, Any]:
        return dict(await self.call("GET", "/version"))

    async def info(self) -> dict[str, Any]:
        return dict(await self.call("GET", "/info"))

    # ---- containers ------------------------------------------------------------------------------

    async def containers(self, **params: ParamValue) -> list[dict[str, Any]]:
        return list(await self.call("GET", "/containers/json", params=params) or [])

    async def container_inspect(self, ref: str, size: bool = False) -> dict[str, Any]:
        return dict(await self.call("GET", f"/containers/{_q(ref)}/json", params={"size": size or None}))

    async def container_create(self, config: dict[str, Any], name: str | None = None) -> dict[str, Any]:
        return dict(await self.call("POST", "/containers/create", params={"name": name}, json_body=config))

    async def container_start(self, ref: str) -> None:
        await self.call("POST", f"/containers/{_q(ref)}/start")

    async def container_stop(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        await self.call("POST", f"/containers/{_q(ref)}/stop", params={"t": timeout, "signal": signal})

    async def container_restart(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        await self.call("POST", f"/containers/{_q(ref)}/restart", params={"t": timeout, "signal": signal})

    async def container_kill(self, ref: str, signal: str | None = None) -> None:
        await self.call("POST", f"/containers/{_q(ref)}/kill", params={"signal": signal})

    async def container_remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        await self.call("DELETE", f"/containers/{_q(ref)}", params={"force": force, "v": volumes})

    async def container_wait_start(self, ref: str, condition: str | None = None) -> aiohttp.ClientResponse:
        """Send ``POST /wait`` and return once the daemon answered the headers (the waiter is registered).

        Read the result with ``wait_result``.
        """
        return await self.request("POST", f"/containers/{_q(ref)}/wait", params={"condition": condition})

    @staticmethod
    async def wait_result(resp: aiohttp.ClientResponse) -> dict[str, Any]:
        async with resp:
            body = await resp.read()
        return dict(json.loads(body)) if body.strip() else {}

    async def container_wait(self, ref: str, condition: str | None = None) -> dict[str, Any]:
        return await self.wait_result(await self.container_wait_start(ref, condition))

    async def container_logs(
        self, ref: str, *, tty: bool = False, **params: ParamValue
    ) -> AsyncIterator[tuple[int, bytes]]:
        """``(stream, data)`` frames of ``GET /logs``; ``tty`` containers send a raw stream."""
        async with self.stream("GET", f"/containers/{_q(ref)}/logs", params=params) as resp:
            raw = tty or resp.headers.get("Content-Type", "") == "application/vnd.docker.raw-stream"
            if raw:
                async for chunk in resp.content.iter_any():
                    yield STDOUT, chunk
                return

            async def read_exactly(n: int) -> bytes:
                try:
                    return await resp.content.readexactly(n)
                except Exception as exc:  # IncompleteReadError: short read at EOF
                    partial = getattr(exc, "partial", None)
                    if partial is None:
                        raise
                    return bytes(partial)

            async for frame in demux(read_exactly):
                yield frame

    def attach(self, ref: str, *, stdin: bool = False, stdout: bool = True, stderr: bool = True,
               logs: bool = False) -> Any:
        """Hijacked ``/attach`` context manager yielding a ``HijackedStream`` (call ``ping`` first)."""
        return self._attach(ref, stdin=stdin, stdout=stdout, stderr=stderr, logs=logs)

    @asynccontextmanager
    async def _attach(self, ref: str, **flags: bool) -> AsyncIterator[HijackedStream]:
        prefix = await self._prefix()
        params = {"stream": "1", **{k: "1" if v else "0" for k, v in flags.items()}}
        async with hijack(self.host, f"{prefix}/containers/{_q(ref)}/attach", params, USER_AGENT) as stream:
            yield stream

    # ---- images ----------------------------------------------------------------------------------

    async def images(self, **params: ParamValue) -> list[dict[str, Any]]:
        return list(await self.call("GET", "/images/json", params=params) or [])

    async def image_inspect(self, ref: str) -> dict[str, Any]:
        return dict(await self.call("GET", f"/images/{_q(ref)}/json"))

    async def image_remove(self, ref: str, force: bool = False, noprune: bool = False) -> list[dict[str, str]]:
        return list(await self.call("DELETE", f"/images/{_q(ref)}", params={"force": force, "noprune": noprune})
                    or [])

    async def image_tag(self, ref: str, repo: str, tag: str | None) -> None:
        await self.call("POST", f"/images/{_q(ref)}/tag", params={"repo": repo, "tag": tag})

    async def image_load(self, body: AsyncIterable[bytes], quiet: bool = False) -> AsyncIterator[dict[str, Any]]:
        async with self.stream("POST", "/images/load", params={"quiet": quiet}, data=body,
                               headers={"Content-Type": "application/x-tar"}) as resp:
            async for msg in json_messages(resp):
                yield msg

    async def image_import(self, body: AsyncIterable[bytes] | None, **params: ParamValue
                           ) -> AsyncIterator[dict[str, Any]]:
        async with self.stream("POST", "/images/create", params=params, data=body,
                               headers={"Content-Type": "application/x-tar"}) as resp:
            async for msg in json_messages(resp):
                yield msg

    async def image_pull(self, image: str, tag: str | None = None) -> AsyncIterator[dict[str, Any]]:
        async with self.stream("POST", "/images/create", params={"fromImage": image, "tag": tag}) as resp:
            async for msg in json_messages(resp):
                yield msg

    async def image_save(self, names: list[str]) -> AsyncIterator[bytes]:
        async with self.stream("GET", "/images/get", params={"names": names}) as resp:
            async for chunk in resp.content.iter_chunked(1 << 20):
                yield chunk


__all__ = ["ClientError", "DaemonUnreachable", "DockerClient", "filters_param", "json_messages"]
