"""Version prefix, negotiation errors, the headers on every answer, and the one error path."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from tests.unit.api.api_fakes import Containers

COMMON = {
    "Api-Version": "1.44",
    "Docker-Experimental": "false",
    "Ostype": "linux",
    "Server": "Docker/aiodock-0.1.0 (linux)",
}


def assert_common(headers: object) -> None:
    for name, value in COMMON.items():
        assert headers[name] == value, name  # type: ignore[index]


async def test_ping_get(client: TestClient) -> None:
    resp = await client.get("/_ping")
    assert resp.status == 200
    assert await resp.text() == "OK"
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert resp.headers["Builder-Version"] == "1"
    assert "no-cache" in resp.headers["Cache-Control"]
    assert_common(resp.headers)


async def test_ping_head(client: TestClient) -> None:
    resp = await client.head("/_ping")
    assert resp.status == 200
    assert await resp.read() == b""
    assert resp.headers["Builder-Version"] == "1"
    assert_common(resp.headers)


@pytest.mark.parametrize("prefix", ["", "/v1.24", "/v1.41", "/v1.44"])
async def test_version_prefix_accepted(client: TestClient, prefix: str) -> None:
    resp = await client.get(f"{prefix}/version")
    assert resp.status == 200
    assert (await resp.json())["ApiVersion"] == "1.44"
    assert_common(resp.headers)
    assert (await client.get(f"{prefix}/_ping")).status == 200


async def test_version_too_old(client: TestClient) -> None:
    resp = await client.get("/v1.12/version")
    assert resp.status == 400
    assert await resp.json() == {"message": "client version 1.12 is too old. Minimum supported API version is "
                                            "1.24, please upgrade your client to a newer version"}
    assert_common(resp.headers)


async def test_version_too_new(client: TestClient) -> None:
    resp = await client.get("/v1.99/containers/json")
    assert resp.status == 400
    assert await resp.json() == {"message": "client version 1.99 is too new. Maximum supported API version is 1.44"}


@pytest.mark.parametrize("path", ["/nope", "/v1.44/nope", "/containers/c1/nope"])
async def test_unknown_route(client: TestClient, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 404
    assert await resp.json() == {"message": "page not found"}
    assert_common(resp.headers)


async def test_wrong_method_is_page_not_found(client: TestClient) -> None:
    resp = await client.delete("/_ping")
    assert resp.status == 404
    assert await resp.json() == {"message": "page not found"}


async def test_not_found_maps_to_404(client: TestClient) -> None:
    resp = await client.get("/v1.44/containers/zzz/json")
    assert resp.status == 404
    assert resp.headers["Content-Type"].startswith("application/json")
    assert await resp.json() == {"message": "No such container: zzz"}


async def test_conflict_maps_to_409(client: TestClient) -> None:
    resp = await client.post("/containers/c1/kill")
    assert resp.status == 409
    assert await resp.json() == {"message": "Container c1 is not running"}


async def test_not_modified_is_empty_304(client: TestClient) -> None:
    resp = await client.post("/containers/c1/start")
    assert resp.status == 304
    assert await resp.read() == b""
    assert_common(resp.headers)


async def test_internal_fault_is_500_without_traceback(client: TestClient, containers: Containers) -> None:
    containers.fail = RuntimeError("disk on fire")
    resp = await client.get("/containers/json")
    assert resp.status == 500
    body = await resp.json()
    assert body == {"message": "disk on fire"}


async def test_malformed_json_body(client: TestClient) -> None:
    resp = await client.post("/containers/create", data=b"xyz", headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert await resp.json() == {"message": "invalid JSON: invalid character 'x' looking for beginning of value"}


@pytest.mark.parametrize(("body", "message"), [
    (b"", "invalid JSON: got EOF while reading request body"),
    (b"[1]", "invalid JSON: json: cannot unmarshal array into Go value of type container.ContainerConfigWrapper"),
    (b'{"Image": ', "invalid JSON: unexpected end of JSON input"),
    (b"{}", "config cannot be empty in order to create a container"),
])
async def test_bad_create_bodies(client: TestClient, body: bytes, message: str) -> None:
    resp = await client.post("/containers/create", data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert await resp.json() == {"message": message}


async def test_bad_integer_query(client: TestClient) -> None:
    resp = await client.post("/containers/c1/stop?t=abc")
    assert resp.status == 400
    assert await resp.json() == {"message": 'strconv.Atoi: parsing "abc": invalid syntax'}


async def test_info(client: TestClient) -> None:
    resp = await client.get("/v1.43/info")
    assert resp.status == 200
    assert (await resp.json())["ID"] == "x"
