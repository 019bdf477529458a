"""docker events (GET /events) with the real docker CLI and docker-py against a real aiodock daemon."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import docker
import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.root


def _now() -> str:
    return f"{time.time():.9f}"


def _events(daemon: Daemon, since: str, *filters: str) -> list[dict[str, Any]]:
    args = ["events", "--since", since, "--until", _now(), "--format", "{{json .}}"]
    for f in filters:
        args += ["--filter", f]
    proc = daemon.docker(*args, check=True, timeout=30)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def test_container_lifecycle_events_since_until(daemon: Daemon) -> None:
    since = _now()
    proc = daemon.docker("run", "--name", "evbox", "-l", "team=a", "busybox:latest", "sh", "-c", "exit 2")
    assert proc.returncode == 2, proc.stderr
    cid = json.loads(daemon.docker("inspect", "evbox", check=True).stdout)[0]["Id"]
    daemon.docker("rename", "evbox", "evbox2", check=True)
    daemon.docker("rm", "evbox2", check=True)
    events = _events(daemon, since, "container=" + cid)
    assert [e["Action"] for e in events] == ["create", "attach", "start", "die", "rename", "destroy"]
    die = events[3]
    assert die["Type"] == "container" and die["status"] == "die" and die["id"] == cid
    assert die["from"] == "busybox:latest" and die["scope"] == "local"
    assert die["Actor"] == {"ID": cid, "Attributes": {"exitCode": "2", "image": "busybox:latest",
                                                      "name": "evbox", "team": "a"}}
    assert die["time"] == die["timeNano"] // 10**9 and abs(die["time"] - time.time()) < 60
    assert events[4]["Actor"]["Attributes"]["oldName"] == "/evbox"
    assert events[4]["Actor"]["Attributes"]["name"] == "evbox2"
    # filters: by name, event, label, type
    assert [e["Action"] for e in _events(daemon, since, "container=evbox", "event=die")] == ["die"]
    assert [e["Action"] for e in _events(daemon, since, "label=team=a", "event=start")] == ["start"]
    assert _events(daemon, since, "label=team=b") == []
    assert all(e["Type"] == "image" for e in _events(daemon, since, "type=image"))


def test_stop_kill_pause_and_exec_events(daemon: Daemon) -> None:
    since = _now()
    cid = daemon.docker("run", "-d", "busybox:latest", "sleep", "600", check=True).stdout.strip()
    daemon.docker("exec", cid, "sh", "-c", "exit 4")
    daemon.docker("pause", cid, check=True)
    daemon.docker("unpause", cid, check=True)
    daemon.docker("stop", "-t", "1", cid, check=True)
    daemon.docker("rm", cid, check=True)
    events = _events(daemon, since, "container=" + cid)
    actions = [e["Action"] for e in events]
    assert actions == ["create", "start", "exec_create: sh -c exit 4", "exec_start: sh -c exit 4", "exec_die",
                       "pause", "unpause", "kill", "kill", "die", "stop", "destroy"]
    exec_die = events[4]["Actor"]["Attributes"]
    assert exec_die["exitCode"] == "4" and len(exec_die["execID"]) == 64
    assert [e["Actor"]["Attributes"]["signal"] for e in events if e["Action"] == "kill"] == ["15", "9"]
    assert events[9]["Actor"]["Attributes"]["exitCode"] == "137"
    # Docker's fuzzy match: event=exec_start matches "exec_start: sh -c exit 4"
    assert [e["Action"] for e in _events(daemon, since, "container=" + cid, "event=exec_start")] == [
        "exec_start: sh -c exit 4"]


def test_image_events(daemon: Daemon) -> None:
    since = _now()
    daemon.docker("tag", "busybox:latest", "evimage:v1", check=True)
    daemon.docker("rmi", "evimage:v1", check=True)
    image_id = json.loads(daemon.docker("inspect", "busybox:latest", check=True).stdout)[0]["Id"]
    events = _events(daemon, since, "type=image")
    assert [(e["Action"], e["id"]) for e in events] == [("tag", image_id), ("untag", image_id)]
    assert events[0]["Actor"]["Attributes"]["name"] == "evimage:v1"
    assert [e["Action"] for e in _events(daemon, since, "image=evimage:v1")] == ["tag"]


def test_network_and_volume_events(daemon: Daemon) -> None:
    """network create/connect/disconnect/destroy and volume create/mount/unmount/destroy, as Docker emits them."""
    since = _now()
    nid = daemon.docker("network", "create", "evnet", check=True).stdout.strip()
    try:
        cid = daemon.docker("run", "-d", "--network", "evnet", "-v", "evvol:/data", "busybox:latest", "sleep",
                            "600", check=True).stdout.strip()
        daemon.docker("network", "connect", "bridge", cid, check=True)
        daemon.docker("network", "disconnect", "bridge", cid, check=True)
        daemon.docker("rm", "-f", cid, check=True)
    finally:
        daemon.docker("network", "rm", "evnet")
        daemon.docker("volume", "rm", "evvol")
    network = _events(daemon, since, "type=network")
    bridge_id = json.loads(daemon.docker("network", "inspect", "bridge", check=True).stdout)[0]["Id"]
    assert [(e["Action"], e["Actor"]["ID"], e["Actor"]["Attributes"].get("container")) for e in network] == [
        ("create", nid, None), ("connect", nid, cid), ("connect", bridge_id, cid), ("disconnect", bridge_id, cid),
        ("disconnect", nid, cid), ("destroy", nid, None)]
    assert network[0]["Actor"]["Attributes"] == {"name": "evnet", "type": "bridge"}
    assert [e["Action"] for e in _events(daemon, since, "network=evnet")] == [
        "create", "connect", "disconnect", "destroy"]
    volume = _events(daemon, since, "type=volume")
    assert [(e["Action"], e["Actor"]["ID"]) for e in volume] == [
        ("create", "evvol"), ("mount", "evvol"), ("unmount", "evvol"), ("destroy", "evvol")]
    assert volume[1]["Actor"]["Attributes"] == {"container": cid, "destination": "/data", "driver": "local",
                                                "propagation": "", "read/write": "true"}
    assert [e["Action"] for e in _events(daemon, since, "volume=evvol", "event=mount")] == ["mount"]
    # the order a `docker run` shows: the volume is mounted and the network connected before the start
    everything = [(e["Type"], e["Action"]) for e in _events(daemon, since)]
    assert everything.index(("volume", "mount")) < everything.index(("container", "start"))
    assert everything.index(("network", "connect")) < everything.index(("container", "start"))


def test_live_stream_with_docker_py(daemon: Daemon) -> None:
    client = docker.DockerClient(base_url=daemon.host, version="1.44", timeout=60)
    seen: list[dict[str, Any]] = []
    stream = client.events(decode=True, filters={"type": "container", "label": "live=yes"})
    done = threading.Event()

    def read() -> None:
        try:
            for event in stream:
                seen.append(event)
                if event["Action"] == "destroy":
                    break
        except Exception:  # noqa: BLE001 - the stream is closed under us at the end
            pass
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        time.sleep(0.2)
        cid = daemon.docker("run", "-d", "-l", "live=yes", "busybox:latest", "sleep", "600",
                            check=True).stdout.strip()
        deadline = time.monotonic() + 10
        while [e["Action"] for e in seen] != ["create", "start"]:  # each event arrives as it happens
            assert time.monotonic() < deadline, seen
            time.sleep(0.02)
        daemon.docker("rm", "-f", cid, check=True)
        assert done.wait(10), seen
        assert [e["Action"] for e in seen] == ["create", "start", "kill", "die", "destroy"]
        assert all(e["id"] == cid for e in seen)
    finally:
        stream.close()
        client.close()


def test_headers_come_at_once_and_bad_input(daemon: Daemon) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(daemon.socket))
        sock.sendall(b"GET /v1.44/events HTTP/1.1\r\nHost: x\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)  # no event has happened: the headers alone must arrive
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Type: application/json" in head
    status, data = daemon.api("GET", "/events?since=later")
    assert status == 400 and json.loads(data)["message"] == "invalid value for since: later"
    status, data = daemon.api("GET", "/events?filters=" + '{"nope":["x"]}')
    assert status == 400 and json.loads(data)["message"] == "invalid filter 'nope'"
