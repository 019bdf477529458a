"""Image routes: import/load bodies via temp files, save streamed and cleaned up, names with slashes."""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp.test_utils import TestClient

from tests.unit.api.api_fakes import Images


async def body_chunks(data: bytes, size: int = 1000):  # type: ignore[no-untyped-def]
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def test_import_from_body(client: TestClient, images: Images, tmp_path: Path) -> None:
    payload = b"x" * 5000
    resp = await client.post("/v1.44/images/create?fromSrc=-&repo=demo&tag=v1&changes=CMD+sh&message=hi",
                             data=body_chunks(payload))
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert await resp.read() == b'{"status":"sha256:' + b"a" * 64 + b'"}\r\n'
    assert images.calls[-1] == ("import", (payload, "demo", "v1", ["CMD sh"], "hi"))
    assert not images.seen_files[-1].exists()  # the temp copy is gone
    assert list(tmp_path.iterdir()) == []


async def test_pull_streams_progress_as_json_lines(client: TestClient) -> None:
    resp = await client.post("/images/create?fromImage=busybox&tag=latest")
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
    lines = [json.loads(line) for line in (await resp.read()).splitlines() if line.strip()]
    assert lines == [{"status": "Pulling from library/busybox", "id": "latest"},
                     {"status": "Status: Downloaded newer image for busybox:latest"}]


async def test_pull_error_before_progress_is_an_http_error(client: TestClient) -> None:
    resp = await client.post("/images/create?fromImage=missing&tag=latest")
    assert resp.status == 404
    assert (await resp.json())["message"].startswith("pull access denied for missing")


async def test_pull_error_during_progress_ends_the_stream_with_error_detail(client: TestClient) -> None:
    resp = await client.post("/images/create?fromImage=broken&tag=1")
    assert resp.status == 200
    lines = [json.loads(line) for line in (await resp.read()).splitlines() if line.strip()]
    assert lines[0]["status"] == "Pulling from library/broken"
    assert lines[-1] == {"errorDetail": {"message": "unexpected EOF"}, "error": "unexpected EOF"}


async def test_load(client: TestClient, images: Images) -> None:
    resp = await client.post("/images/load?quiet=1", data=b"tarball")
    assert resp.headers["Content-Type"] == "application/json"
    lines = (await resp.read()).split(b"\r\n")
    assert json.loads(lines[0]) == {"stream": "Loaded image: busybox:latest\n"}
    assert json.loads(lines[1]) == {"stream": "Loaded image ID: sha256:" + "b" * 64 + "\n"}
    assert not images.seen_files[-1].exists()


async def test_load_failure_in_stream(client: TestClient) -> None:
    resp = await client.post("/images/load", data=b"bad")
    assert resp.status == 200
    assert json.loads(await resp.read())["error"] == "unexpected EOF"


async def test_save_streams_file_then_deletes_it(client: TestClient, images: Images) -> None:
    resp = await client.get("/images/get?names=a:1&names=b/c:2")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/x-tar"
    body = await resp.read()
    assert body == b"T" * 200_000 + b"a:1,b/c:2"
    assert not images.seen_files[-1].exists()


async def test_save_one_and_missing(client: TestClient) -> None:
    resp = await client.get("/images/localhost:5000/x/y:1/get")
    assert (await resp.read()).endswith(b"localhost:5000/x/y:1")
    resp = await client.get("/images/missing/get")
    assert resp.status == 404


async def test_names_with_slashes_and_colons(client: TestClient, images: Images) -> None:
    name = "localhost:5000/team/app:1.0"
    assert (await (await client.get(f"/v1.44/images/{name}/json")).json())["RepoTags"] == [name]
    assert await (await client.get(f"/images/{name}/history")).json() == [{"Id": name}]
    resp = await client.post(f"/images/{name}/tag?repo=other/app&tag=2")
    assert resp.status == 201
    assert images.calls[-1] == ("tag", (name, "other/app", "2"))
    resp = await client.delete(f"/images/{name}?force=1&noprune=1")
    assert await resp.json() == [{"Untagged": name}]
    assert images.calls[-1] == ("remove", (name, True, False))


async def test_list_and_prune(client: TestClient, images: Images) -> None:
    await client.get("/images/json?all=1&filters=%7B%22dangling%22%3A%7B%22true%22%3Atrue%7D%7D")
    assert images.calls[-1] == ("list", (True, {"dangling": ["true"]}))
    resp = await client.post("/images/prune", params={"filters": '{"dangling": ["false"]}'})
    assert resp.status == 200
    assert images.calls[-1] == ("prune", (False, {"dangling": ["false"]}))
    resp = await client.post("/images/prune", params={"filters": '{"dangling": ["maybe"]}'})
    assert resp.status == 400
