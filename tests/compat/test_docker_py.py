"""docker-py (the PyPI `docker` package) against a real aiodock daemon."""

from __future__ import annotations

import docker
import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.root


@pytest.fixture
def client(daemon: Daemon) -> docker.DockerClient:
    c = docker.DockerClient(base_url=daemon.host, version="1.44", timeout=60)
    yield c
    c.close()


def test_run_returns_output(client: docker.DockerClient, busybox: str) -> None:
    out = client.containers.run(busybox, ["sh", "-c", "echo hello; echo err >&2"], remove=True)
    assert out == b"hello\n"


def test_run_failure_raises_container_error(client: docker.DockerClient, busybox: str) -> None:
    with pytest.raises(docker.errors.ContainerError) as err:
        client.containers.run(busybox, ["sh", "-c", "echo bad >&2; exit 4"], remove=True)
    assert err.value.exit_status == 4


def test_detached_lifecycle(client: docker.DockerClient, busybox: str) -> None:
    c = client.containers.run(busybox, ["sh", "-c", "echo up; sleep 60"], detach=True, name="pyc",
                              labels={"k": "v"}, environment={"X": "y"})
    try:
        c.reload()
        assert c.status == "running" and c.name == "pyc" and c.labels == {"k": "v"}
        assert "X=y" in c.attrs["Config"]["Env"]
        assert [x.id for x in client.containers.list(filters={"label": "k=v"})] == [c.id]
        c.stop(timeout=1)
        assert c.wait()["StatusCode"] in (137, 143)
        assert b"up\n" in c.logs()
        c.reload()
        assert c.status == "exited"
    finally:
        c.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get("pyc")


def test_images_api(client: docker.DockerClient, busybox: str) -> None:
    image = client.images.get(busybox)
    assert "busybox:latest" in image.tags
    assert image.attrs["ContainerConfig"] is not None
    assert image.attrs["RootFS"]["Type"] == "layers"
    image.tag("pytag", "x")
    assert "pytag:x" in client.images.get("pytag:x").tags
    client.images.remove("pytag:x")
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("pytag:x")
    assert client.ping() is True
    assert client.version()["ApiVersion"] == "1.44"
