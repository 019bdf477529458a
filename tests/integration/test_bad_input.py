"""Bad input anywhere in the Engine API gets Docker's status code and a JSON {"message": ...}, never a 500."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.root

BAD_REQUESTS: list[tuple[str, str, object, int]] = [
    ("POST", "/containers/create", b"{not json", 400),
    ("POST", "/containers/create", b"[1, 2]", 400),
    ("POST", "/containers/create", {"Image": 5}, 400),
    ("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"], "HostConfig": "x"}, 400),
    ("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Memory": "lots"}}, 400),
    ("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Memory": 1024}}, 400),
    ("POST", "/containers/create?name=bad%20name!", {"Image": "busybox", "Cmd": ["true"]}, 400),
    ("POST", "/containers/create", {"Image": "bad image name!"}, 400),
    ("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"],
                                    "HostConfig": {"RestartPolicy": {"Name": "sometimes"}}}, 400),
    ("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"],
                                    "HostConfig": {"CapAdd": ["NOT_A_CAP"]}}, 400),
    ("GET", "/containers/json?filters=notjson", None, 400),
    ("GET", "/containers/json?filters=%7B%22status%22%3A%5B%22sleepy%22%5D%7D", None, 400),
    ("GET", "/containers/json?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D", None, 400),
    ("GET", "/containers/json?limit=abc", None, 400),
    ("GET", "/containers/nosuch/json", None, 404),
    ("POST", "/containers/nosuch/start", None, 404),
    ("POST", "/containers/nosuch/stop", None, 404),
    ("POST", "/containers/nosuch/kill", None, 404),
    ("POST", "/containers/nosuch/wait", None, 404),
    ("DELETE", "/containers/nosuch", None, 404),
    ("GET", "/containers/nosuch/logs?stdout=1", None, 404),
    ("POST", "/containers/nosuch/rename?name=x", None, 404),
    ("GET", "/images/nosuch:1/json", None, 404),
    ("GET", "/images/nosuch:1/history", None, 404),
    ("DELETE", "/images/nosuch:1", None, 404),
    ("POST", "/images/nosuch:1/tag?repo=x&tag=y", None, 404),
    ("POST", "/images/busybox/tag?repo=BAD%20REPO", None, 400),
    ("GET", "/images/json?filters=%7B%22dangling%22%3A%5B%22maybe%22%5D%7D", None, 400),
    ("POST", "/images/load", b"this is not a tarball", 200),  # Docker reports load errors in the stream
    ("POST", "/images/create?fromSrc=-", b"not a tarball either", 400),
    ("POST", "/images/create", None, 400),
    ("GET", "/v1.12/version", None, 400),
    ("GET", "/v9.99/version", None, 400),
    ("GET", "/no/such/endpoint", None, 404),
    ("GET", "/events?since=yesterday", None, 400),
    ("POST", "/networks/create", b"{", 400),
    ("GET", "/networks/nosuch", None, 404),
    ("POST", "/exec/nosuch/start", {"Detach": True}, 404),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), BAD_REQUESTS,
                         ids=[f"{m} {p[:60]}" for m, p, _, _ in BAD_REQUESTS])
def test_bad_input_gets_a_json_error(daemon: Daemon, method: str, path: str, body: object, status: int) -> None:
    got, data = daemon.api(method, path, body)
    assert got == status, data
    if status >= 400:
        message = json.loads(data)["message"]
        assert message and "Traceback" not in message
    else:
        assert b'"error"' in data and b"Traceback" not in data


def test_container_state_errors(daemon: Daemon, busybox: str) -> None:
    cid = daemon.docker("create", busybox, "sleep", "30", check=True).stdout.strip()
    for path, status in ((f"/containers/{cid}/kill?signal=NOTASIGNAL", 400), (f"/containers/{cid}/kill", 409),
                         (f"/containers/{cid}/stop", 304),
                         (f"/containers/{cid}/wait?condition=sometime", 400), (f"/containers/{cid}/pause", 409)):
        got, data = daemon.api("POST", path)
        assert got == status, (path, data)
    daemon.api("POST", f"/containers/{cid}/start")
    got, data = daemon.api("POST", f"/containers/{cid}/kill?signal=NOTASIGNAL")
    assert got == 400 and "Invalid signal: NOTASIGNAL" in json.loads(data)["message"]
    assert daemon.api("POST", f"/containers/{cid}/start")[0] == 304
    got, data = daemon.api("POST", f"/containers/{cid}/stop?t=notanumber")
    assert got == 400, data
    daemon.docker("rm", "-f", cid, check=True)
