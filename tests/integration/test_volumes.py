"""Named and anonymous volumes (local driver) through the real docker CLI and docker-py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import docker
import pytest

from tests.conftest import Daemon


def _run(daemon: Daemon, *args: str) -> str:
    return daemon.docker(*args, check=True).stdout


def test_named_volume_data_survives_and_in_use(daemon: Daemon) -> None:
    _run(daemon, "run", "--name", "vw", "-v", "vdata:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    # the volume was created on first use, with Docker's mountpoint
    doc = json.loads(_run(daemon, "volume", "inspect", "vdata"))[0]
    assert doc["Driver"] == "local" and doc["Scope"] == "local"
    assert doc["Mountpoint"] == str(daemon.data_root / "volumes" / "vdata" / "_data")
    assert Path(doc["Mountpoint"], "f").read_text() == "kept\n"
    out = _run(daemon, "run", "--rm", "--mount", "type=volume,source=vdata,target=/in,readonly", "busybox",
               "sh", "-c", "cat /in/f; touch /in/x 2>&1 || echo ro")
    assert out.splitlines()[0] == "kept" and "Read-only file system" in out
    mounts = json.loads(_run(daemon, "inspect", "vw"))[0]["Mounts"]
    assert mounts == [{"Type": "volume", "Name": "vdata", "Source": doc["Mountpoint"], "Destination": "/data",
                       "Driver": "local", "Mode": "z", "RW": True, "Propagation": ""}]
    cid = _run(daemon, "inspect", "-f", "{{.Id}}", "vw").strip()
    proc = daemon.docker("volume", "rm", "vdata")
    assert proc.returncode == 1
    assert f"remove vdata: volume is in use - [{cid}]" in proc.stderr
    status, body = daemon.api("DELETE", "/volumes/vdata?force=1")
    assert status == 409
    _run(daemon, "rm", "vw")
    assert _run(daemon, "volume", "rm", "vdata").strip() == "vdata"
    proc = daemon.docker("volume", "inspect", "vdata")
    assert proc.returncode == 1 and "get vdata: no such volume" in proc.stderr


def test_copy_up_and_anonymous_volumes(daemon: Daemon) -> None:
    # a named volume mounted on /etc is filled from the image's /etc on first use
    out = _run(daemon, "run", "--rm", "-v", "vetc:/etc", "busybox", "cat", "/etc/passwd")
    assert "root:x:0:0" in out
    assert (daemon.data_root / "volumes" / "vetc" / "_data" / "passwd").exists()
    _run(daemon, "volume", "rm", "vetc")
    # -v /path makes an anonymous volume: kept by rm, removed by rm -v
    _run(daemon, "create", "--name", "anon1", "-v", "/scratch", "busybox", "true")
    _run(daemon, "create", "--name", "anon2", "-v", "/scratch", "busybox", "true")
    names = []
    for cname in ("anon1", "anon2"):
        mounts = json.loads(_run(daemon, "inspect", cname))[0]["Mounts"]
        assert len(mounts) == 1 and mounts[0]["Type"] == "volume" and mounts[0]["Destination"] == "/scratch"
        assert len(mounts[0]["Name"]) == 64 and mounts[0]["Mode"] == "" and mounts[0]["RW"] is True
        names.append(mounts[0]["Name"])
    listed = _run(daemon, "volume", "ls", "-q").split()
    assert set(names) <= set(listed)
    _run(daemon, "rm", "anon1")
    _run(daemon, "rm", "-v", "anon2")
    listed = _run(daemon, "volume", "ls", "-q").split()
    assert names[0] in listed and names[1] not in listed
    # prune drops unused anonymous volumes only
    _run(daemon, "volume", "create", "keepme")
    out = _run(daemon, "volume", "prune", "-f")
    assert names[0] in out
    assert _run(daemon, "volume", "ls", "-q", "--filter", "name=keepme").split() == ["keepme"]
    _run(daemon, "volume", "rm", "keepme")


def test_docker_py_volumes_api(daemon: Daemon) -> None:
    client = docker.DockerClient(base_url=daemon.host)
    start = int(time.time()) - 1
    try:
        vol = client.volumes.create("pyvol", labels={"team": "a"})
        assert vol.attrs["Labels"] == {"team": "a"} and vol.attrs["Driver"] == "local"
        tmpfs = client.volumes.create("tmpvol", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
        assert tmpfs.attrs["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
        out = client.containers.run("busybox", ["sh", "-c", "grep ' /t ' /proc/mounts"], remove=True,
                                    volumes={"tmpvol": {"bind": "/t", "mode": "rw"}})
        assert b"tmpfs /t tmpfs" in out
        assert [v.name for v in client.volumes.list(filters={"label": "team=a"})] == ["pyvol"]
        assert {v.name for v in client.volumes.list(filters={"dangling": True})} >= {"pyvol", "tmpvol"}
        assert client.volumes.get("pyvol").id == "pyvol"
        generated = client.api.create_volume()
        assert len(generated["Name"]) == 64
        with pytest.raises(docker.errors.NotFound):
            client.volumes.get("nope")
        with pytest.raises(docker.errors.APIError) as err:
            client.volumes.create("bad/name")
        assert err.value.status_code == 400
        for name in ("pyvol", "tmpvol", generated["Name"]):
            client.volumes.get(name).remove()
        events = client.events(since=start, until=time.time() + 0.5, decode=True, filters={"type": "volume"})
        seen = [(e["Action"], e["Actor"]["ID"]) for e in events]
        assert ("create", "pyvol") in seen and ("destroy", "pyvol") in seen
    finally:
        client.close()


def test_volumes_survive_a_daemon_restart_and_bad_specs(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    _run(d, "volume", "create", "--label", "k=v", "persist")
    _run(d, "run", "--rm", "-v", "persist:/p", "busybox", "sh", "-c", "echo 1 > /p/one")
    d.kill9()
    d.start()
    doc = json.loads(_run(d, "volume", "inspect", "persist"))[0]
    assert doc["Labels"] == {"k": "v"} and doc["Name"] == "persist"
    assert _run(d, "run", "--rm", "-v", "persist:/p", "busybox", "cat", "/p/one") == "1\n"
    proc = d.docker("create", "-v", "persist:relative", "busybox", "true")
    assert proc.returncode != 0 and "mount path must be absolute" in proc.stderr
    _run(d, "volume", "rm", "persist")
