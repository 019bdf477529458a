"""The attach hijack over a real unix socket: raw bytes on the wire, and docker-py as a real client."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import docker
import pytest
from aiohttp import web

from aiodock.api import serve
from tests.unit.api.api_fakes import Containers, Sink
from tests.unit.api.test_containers import frames

REQUEST = ("POST /v1.44/containers/c1/attach?stream=1&stdout=1&stderr=1{extra} HTTP/1.1\r\n"
           "Host: api\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n")


@pytest.fixture
async def sock_path(app: web.Application) -> AsyncIterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="aiodock-t", dir="/tmp"))  # unix socket paths are short
    path = directory / "api.sock"
    runner = await serve(app, [f"unix://{path}"], socket_group="no-such-group-here")
    try:
        yield path
    finally:
        await runner.cleanup()
        shutil.rmtree(directory)


async def upgrade(path: Path, extra: str = "") -> tuple[asyncio.StreamReader, asyncio.StreamWriter, list[str]]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(REQUEST.format(extra=extra).encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return reader, writer, head.decode().split("\r\n")[:-2]


def header_map(lines: list[str]) -> dict[str, str]:
    return {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}


async def test_socket_mode(sock_path: Path) -> None:
    assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o660


async def test_hijack_raw_socket(sock_path: Path) -> None:
    reader, writer, lines = await upgrade(sock_path)
    assert lines[0] == "HTTP/1.1 101 UPGRADED"
    headers = header_map(lines)
    assert headers["content-type"] == "application/vnd.docker.multiplexed-stream"
    assert headers["connection"] == "Upgrade"
    assert headers["upgrade"] == "tcp"
    assert "transfer-encoding" not in headers and "content-length" not in headers
    body = await asyncio.wait_for(reader.read(), 5)  # read() returns at EOF: the server closed after output
    assert frames(body) == [(1, b"out\n"), (2, b"err\n")]
    writer.close()


async def test_hijack_tty_is_raw(sock_path: Path, containers: Containers) -> None:
    containers.tty = True
    reader, writer, lines = await upgrade(sock_path)
    assert header_map(lines)["content-type"] == "application/vnd.docker.raw-stream"
    assert await asyncio.wait_for(reader.read(), 5) == b"out\nerr\n"
    writer.close()


async def test_hijack_stdin_and_half_close(sock_path: Path, containers: Containers) -> None:
    containers.sink = Sink()
    reader, writer, lines = await upgrade(sock_path, "&stdin=1")
    assert lines[0] == "HTTP/1.1 101 UPGRADED"
    assert frames(await asyncio.wait_for(reader.readexactly(14), 5)) == [(1, b"ready\n")]
    writer.write(b"hello ")
    writer.write(b"world\n")
    await writer.drain()
    writer.write_eof()  # half-close: stdin is done, output must still flow back
    rest = await asyncio.wait_for(reader.read(), 5)
    assert frames(rest) == [(1, b"hello world\n")]
    assert containers.sink.closed.is_set()
    writer.close()


async def test_client_leaving_ends_the_attach(sock_path: Path, containers: Containers) -> None:
    containers.gate = asyncio.Event()  # the output iterator blocks after its first chunk
    reader, writer, _ = await upgrade(sock_path)
    await asyncio.wait_for(reader.readexactly(12), 5)
    writer.close()  # a full close looks like a half-close until the next write fails, as with Docker
    await asyncio.sleep(0.05)
    containers.gate.set()
    for _ in range(100):
        if containers.closed_iterators:
            break
        await asyncio.sleep(0.02)
    assert containers.closed_iterators == 1


async def test_shutdown_closes_hijacked_connections(app: web.Application, containers: Containers) -> None:
    containers.gate = asyncio.Event()
    directory = Path(tempfile.mkdtemp(prefix="aiodock-t", dir="/tmp"))
    try:
        runner = await serve(app, [f"unix://{directory / 'api.sock'}"])
        reader, writer, _ = await upgrade(directory / "api.sock")
        await asyncio.wait_for(reader.readexactly(12), 5)
        await asyncio.wait_for(runner.cleanup(), 3)
        assert await asyncio.wait_for(reader.read(), 3) == b""
        assert containers.closed_iterators == 1
        writer.close()
    finally:
        shutil.rmtree(directory)


async def test_docker_py_attach(sock_path: Path, containers: Containers) -> None:
    containers.delay = 0.3
    def run() -> bytes:
        client = docker.APIClient(base_url=f"unix://{sock_path}", version="1.44", timeout=10)
        try:
            return client.attach("c1", stdout=True, stderr=True, stream=False)
        finally:
            client.close()

    assert await asyncio.to_thread(run) == b"out\nerr\n"


async def test_docker_py_attach_socket_stdin(sock_path: Path, containers: Containers) -> None:
    containers.sink = Sink()
    containers.delay = 0.3

    def run() -> bytes:
        client = docker.APIClient(base_url=f"unix://{sock_path}", version="1.44", timeout=10)
        try:
            sock = client.attach_socket("c1", params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            raw: socket.socket = sock._sock  # the socket docker-py's own "docker run -i" uses
            raw.sendall(b"typed\n")
            raw.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := raw.recv(65536):
                data += chunk
            sock.close()
            return data
        finally:
            client.close()

    assert frames(await asyncio.to_thread(run)) == [(1, b"ready\n"), (1, b"typed\n")]
