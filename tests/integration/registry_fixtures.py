"""A real registry (Debian's docker-registry) on loopback, and a small aiohttp proxy in front of it.

The registry runs as a subprocess of the test session (never as a service) with its storage in a temp dir;
``auth=True`` adds htpasswd (bcrypt) authentication. The proxy forwards everything to the registry and can
corrupt or truncate large blobs, or put Bearer token authentication (its own token endpoint) in front.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
USER, PASSWORD = "aiodock", "s3cret-pass"
BIG_BLOB = 64 << 10  # blobs above this size are layers (the config is a few hundred bytes)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def htpasswd_line(user: str, password: str) -> str:
    try:
        import bcrypt  # type: ignore[import-not-found]
        return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()}"
    except ImportError:
        out = subprocess.run(["htpasswd", "-nbB", user, password], check=True, capture_output=True, text=True)
        return out.stdout.strip()


class Registry:
    """``tls`` = (certificate, key) serves HTTPS; ``clientcas`` then also demands a client certificate."""

    def __init__(self, root: Path, auth: bool, ip: str = "127.0.0.1", tls: tuple[Path, Path] | None = None,
                 clientcas: Path | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.host = f"{ip}:{self.port}"
        self.auth = auth
        self.tls = tls
        self.clientcas = clientcas
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        config = [
            "version: 0.1",
            "log:",
            "  level: error",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.root / 'data'}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: {self.host}",
            f"  secret: {secrets.token_hex(16)}",
        ]
        if self.tls:
            config += ["  tls:", f"    certificate: {self.tls[0]}", f"    key: {self.tls[1]}"]
            if self.clientcas:
                config += ["    clientcas:", f"      - {self.clientcas}"]
        if self.auth:
            (self.root / "htpasswd").write_text(htpasswd_line(USER, PASSWORD) + "\n")
            config += ["auth:", "  htpasswd:", "    realm: aiodock-test", f"    path: {self.root / 'htpasswd'}"]
        (self.root / "config.yml").write_text("\n".join(config) + "\n")
        log = open(self.root / "registry.log", "ab")
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(self.root / "config.yml")],
                                     stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("docker-registry exited:\n" + (self.root / "registry.log").read_text())
            if self.tls:
                try:
                    socket.create_connection((self.host.rsplit(":", 1)[0], self.port), timeout=1).close()
                    return
                except OSError:
                    time.sleep(0.05)
                    continue
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
                return
            except urllib.error.HTTPError:
                return  # 401 with auth: it answers
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _registry(auth: bool, ip: str = "127.0.0.1", tls: tuple[Path, Path] | None = None,
              clientcas: Path | None = None) -> Iterator[Registry]:
    if not Path(REGISTRY_BIN).exists():
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    root = Path(tempfile.mkdtemp(prefix="aiodock-registry-"))
    reg = Registry(root, auth, ip, tls, clientcas)
    try:
        reg.start()
        yield reg
    finally:
        reg.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    yield from _registry(auth=False)


@pytest.fixture(scope="module")
def auth_registry() -> Iterator[Registry]:
    yield from _registry(auth=True)


class Proxy:
    """aiohttp reverse proxy on 127.0.0.1 in its own thread. mode: "pass", "corrupt", "truncate" (drops the first
    answer of each large blob mid-way), "truncate-always" (every answer, ranged ones too), "stall", "token".
    ``requests`` logs (method, path with query, Range or Content-Range header) of everything forwarded."""

    def __init__(self, upstream: str, mode: str = "pass") -> None:
        self.upstream = upstream
        self.mode = mode
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.token = secrets.token_hex(16)
        self.tampered: list[str] = []
        self.token_requests: list[str] = []
        self.requests: list[tuple[str, str, str]] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def __enter__(self) -> Proxy:
        self._thread.start()
        assert self._ready.wait(10), "proxy did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _main(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application(client_max_size=1 << 30)
        app.router.add_get("/token", self._token)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            self.session = session
            self._ready.set()
            await self._stop.wait()
            await runner.cleanup()

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests.append(request.query_string)
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"details": "incorrect username or password"}, status=401)
        return web.json_response({"token": self.token, "expires_in": 300})

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if self.mode == "token" and request.headers.get("Authorization") != f"Bearer {self.token}":
            scope = ""
            parts = request.path.split("/")
            if len(parts) > 3 and ("manifests" in parts or "blobs" in parts):
                end = parts.index("manifests") if "manifests" in parts else parts.index("blobs")
                action = "pull" if request.method in ("GET", "HEAD") else "pull,push"
                scope = f',scope="repository:{"/".join(parts[2:end])}:{action}"'
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}, status=401,
                headers={"WWW-Authenticate":
                         f'Bearer realm="http://{self.host}/token",service="aiodock-test"{scope}'})
        self.requests.append((request.method, request.path_qs,
                              request.headers.get("Range") or request.headers.get("Content-Range") or ""))
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "authorization", "content-length", "transfer-encoding")}
        body = await request.read()
        url = f"http://{self.upstream}{request.path_qs}"
        async with self.session.request(request.method, url, headers=headers, data=body or None,
                                        allow_redirects=False) as up:
            data = await up.read()
            out_headers = {k: v for k, v in up.headers.items()
                           if k.lower() not in ("content-length", "transfer-encoding", "connection")}
            if "Location" in up.headers:
                out_headers["Location"] = up.headers["Location"].replace(self.upstream, self.host)
            is_blob = request.method == "GET" and "/blobs/sha256:" in request.path and (
                up.status == 200 or (up.status == 206 and self.mode == "truncate-always"))
            if is_blob and len(data) > BIG_BLOB and self.mode == "corrupt":
                self.tampered.append(request.path)
                middle = len(data) // 2
                data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
            if is_blob and len(data) > BIG_BLOB and self.mode in ("truncate", "truncate-always"):
                self.tampered.append(request.path)
                resp = web.StreamResponse(status=200, headers=out_headers)
                resp.content_length = len(data)
                await resp.prepare(request)
                await resp.write(data[: len(data) // 3])
                assert request.transport is not None
                request.transport.close()  # the connection drops mid-blob
                return resp
            if is_blob and len(data) > BIG_BLOB and self.mode == "stall":
                self.tampered.append(request.path)
                resp = web.StreamResponse(status=200, headers=out_headers)
                resp.content_length = len(data)
                await resp.prepare(request)
                await resp.write(data[: len(data) // 2])
                assert self._stop is not None
                await self._stop.wait()  # never more: the client has to give up
                assert request.transport is not None
                request.transport.close()
                return resp
            if request.method == "HEAD":
                return web.Response(status=up.status, headers=out_headers)
            return web.Response(status=up.status, headers=out_headers, body=data)
