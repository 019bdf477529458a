"""Container routes: create, wait (headers before the result), logs framing and flushing."""

from __future__ import annotations

import asyncio
import struct

from aiohttp.test_utils import TestClient

from aiodock.engine.backend import WaitResult
from tests.unit.api.api_fakes import Containers


def frames(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    while data:
        kind, size = struct.unpack(">BxxxL", data[:8])
        out.append((kind, data[8:8 + size]))
        data = data[8 + size:]
    return out


async def test_create(client: TestClient, containers: Containers) -> None:
    resp = await client.post("/v1.44/containers/create?name=web", json={"Image": "busybox", "Cmd": ["true"]})
    assert resp.status == 201
    assert await resp.json() == {"Id": "c1" * 32, "Warnings": []}
    assert containers.calls[-1] == ("create", ("web", {"Image": "busybox", "Cmd": ["true"]}))


async def test_stop_params(client: TestClient, containers: Containers) -> None:
    assert (await client.post("/containers/c1/stop?t=5&signal=SIGINT")).status == 204
    assert containers.calls[-1] == ("stop", (5, "SIGINT"))
    assert (await client.post("/containers/c1/stop?timeout=7")).status == 204
    assert containers.calls[-1] == ("stop", (7, None))


async def test_remove_flags(client: TestClient, containers: Containers) -> None:
    assert (await client.delete("/containers/c1?force=1&v=true")).status == 204
    assert containers.calls[-1] == ("remove", (True, True, False))


async def test_wait_sends_headers_before_result(client: TestClient, containers: Containers) -> None:
    resp = await asyncio.wait_for(client.post("/containers/c1/wait?condition=next-exit"), 5)
    # The status line and headers arrived while the container has not exited yet.
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert containers.waiter is not None and not containers.waiter.done()
    containers.waiter.set_result(WaitResult(3))
    assert await asyncio.wait_for(resp.json(), 5) == {"StatusCode": 3, "Error": None}


async def test_wait_error_message(client: TestClient, containers: Containers) -> None:
    resp = await client.post("/containers/c1/wait")
    assert containers.waiter is not None
    containers.waiter.set_result(WaitResult(127, "exec: not found"))
    assert await resp.json() == {"StatusCode": 127, "Error": {"Message": "exec: not found"}}


async def test_wait_bad_condition_is_plain_error(client: TestClient) -> None:
    resp = await client.post("/containers/c1/wait?condition=bogus")
    assert resp.status == 400
    assert (await resp.json())["message"] == "invalid condition: 'bogus'"


async def test_logs_need_a_stream(client: TestClient) -> None:
    resp = await client.get("/containers/c1/logs")
    assert resp.status == 400
    assert await resp.json() == {"message": "Bad parameters: you must choose at least one stream"}


async def test_logs_multiplexed(client: TestClient, containers: Containers) -> None:
    resp = await client.get("/containers/c1/logs?stdout=1&stderr=1&tail=5&since=1700000000.5")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/vnd.docker.multiplexed-stream"
    assert frames(await resp.read()) == [(1, b"out\n"), (2, b"err\n")]
    options = containers.calls[-1][1]
    assert options.tail == 5 and options.stdout and options.stderr and options.since.microsecond == 500000


async def test_logs_tty_raw(client: TestClient, containers: Containers) -> None:
    containers.tty = True
    resp = await client.get("/containers/c1/logs?stdout=1")
    assert resp.headers["Content-Type"] == "application/vnd.docker.raw-stream"
    assert await resp.read() == b"out\nerr\n"


async def test_logs_timestamps(client: TestClient, containers: Containers) -> None:
    from datetime import UTC, datetime

    from aiodock.engine.backend import OutputChunk
    containers.tty = True
    containers.chunks = [OutputChunk("stdout", b"hi\n", datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC))]
    resp = await client.get("/containers/c1/logs?stdout=1&timestamps=1")
    assert await resp.read() == b"2024-01-02T03:04:05.000006000Z hi\n"


async def test_logs_follow_flushes_each_chunk(client: TestClient, containers: Containers) -> None:
    containers.gate = asyncio.Event()
    resp = await client.get("/containers/c1/logs?stdout=1&stderr=1&follow=1")
    first = await asyncio.wait_for(resp.content.readexactly(12), 5)  # arrives while the backend is blocked
    assert frames(first) == [(1, b"out\n")]
    containers.gate.set()
    assert frames(await asyncio.wait_for(resp.read(), 5)) == [(2, b"err\n")]


async def test_attach_without_upgrade_streams_body(client: TestClient) -> None:
    resp = await client.post("/containers/c1/attach?stream=1&stdout=1&stderr=1")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/vnd.docker.multiplexed-stream"
    assert frames(await resp.read()) == [(1, b"out\n"), (2, b"err\n")]


async def test_prune_filters(client: TestClient, containers: Containers) -> None:
    resp = await client.post("/containers/prune", params={"filters": '{"until": ["10m"]}'})
    assert await resp.json() == {"ContainersDeleted": [], "SpaceReclaimed": 0}
    assert containers.calls[-1] == ("prune", {"until": ["10m"]})
