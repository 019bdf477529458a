"""The real containerd `ctr` (Debian's 1.6.20) against aiodock's gRPC server, in-process on a temp unix socket.

Each test asserts what a ctr user sees: the printed tables and error messages.
"""

from __future__ import annotations

import asyncio
import builtins
import gzip
import hashlib
import json
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aiodock.core import events as ev
from aiodock.core.content import ContentStore
from aiodock.core.images.store import Descriptor, ImageRecord, ImageStore
from aiodock.core.metadata import ContainerRecord, ContainerStore
from aiodock.core.namespaces import NamespaceStore
from aiodock.errors import NotFound
from aiodock.grpc.server import GrpcServer
from aiodock.grpc.services.containers import ContainersService
from aiodock.grpc.services.content import ContentService
from aiodock.grpc.services.events import EventsService
from aiodock.grpc.services.images import ImagesService
from aiodock.grpc.services.introspection import IntrospectionService
from aiodock.grpc.services.namespaces import NamespacesService
from aiodock.grpc.services.tasks import TasksService
from aiodock.grpc.services.version import VERSION, VersionService
from tests.conftest import tar_of

CTR = "/usr/bin/ctr"
pytestmark = pytest.mark.skipif(not os.access(CTR, os.X_OK), reason="needs containerd's ctr")

IMAGE_NAME = "docker.io/library/busybox:latest"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True, slots=True)
class ListedTask:
    namespace: str
    container_id: str
    pid: int
    status: str
    exit_status: int | None
    exited_at: datetime | None
    bundle: Path


class ListingOnlyTasks:
    """Just enough of the task manager protocol for `ctr tasks ls` and `containers rm` (which asks for the task
    first); every other call is a test failure."""

    def __init__(self, tasks: list[ListedTask]) -> None:
        self._tasks = tasks

    def list(self, ns: str) -> list[ListedTask]:
        return [t for t in self._tasks if t.namespace == ns]

    def get(self, ns: str, id: str) -> ListedTask:
        for task in self.list(ns):
            if task.container_id == id:
                return task
        raise NotFound(f'task "{id}" in namespace "{ns}": not found')

    async def kill(self, ns: str, id: str, signal: int, all: bool = False) -> None:
        raise AssertionError("not used by these tests")

    async def pids(self, ns: str, id: str) -> builtins.list[int]:
        raise AssertionError("not used by these tests")

    async def wait(self, ns: str, id: str) -> ev.TaskExit:
        raise AssertionError("not used by these tests")

    async def delete(self, ns: str, id: str) -> ev.TaskExit | None:
        raise AssertionError("not used by these tests")


@dataclass
class Daemon:
    root: Path
    socket: Path
    exchange: ev.EventExchange
    containers: ContainerStore

    async def ctr(self, *args: str, namespace: str | None = None, check: bool = True) -> tuple[int, str, str]:
        ns_args = ["-n", namespace] if namespace else []
        proc = await asyncio.create_subprocess_exec(
            CTR, "--address", str(self.socket), *ns_args, *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
        rc = proc.returncode
        assert rc is not None
        if check:
            assert rc == 0, f"ctr {' '.join(args)} failed ({rc}): {err.decode()}"
        return rc, out.decode(), err.decode()


def _table(output: str) -> list[list[str]]:
    return [line.split() for line in output.strip().splitlines()]


def _layer_blob() -> bytes:
    """A gzip'd tar holding one file: a real (tiny) image layer."""
    return gzip.compress(tar_of({"hello.txt": b"hello from aiodock\n"}), mtime=0)


def _seed_image(content: ContentStore, images: ImageStore) -> Descriptor:
    layer = _layer_blob()
    layer_digest = content.write(layer)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()]},
    }).encode()
    config_digest = content.write(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest,
                    "size": len(layer)}],
    }).encode()
    target = Descriptor(MANIFEST_TYPE, content.write(manifest), len(manifest))
    now = datetime.now(UTC)
    images.put("moby", ImageRecord(IMAGE_NAME, target, now, now, {"io.aiodock.test": "yes"}))
    return target


@pytest.fixture
async def daemon() -> AsyncIterator[Daemon]:
    root = Path(tempfile.mkdtemp(prefix="adk-", dir="/tmp"))
    socket = root / "c.sock"
    namespaces = NamespaceStore(root)
    containers = ContainerStore(root)
    images = ImageStore(root)
    content = ContentStore(root)
    namespaces.usage = lambda ns: [
        kind for kind, held in (("containers", containers.list(ns)), ("images", images.list(ns))) if held
    ]
    exchange = ev.EventExchange()

    namespaces.create("moby", {"io.aiodock.owner": "engine"})
    namespaces.ensure("default")
    now = datetime.now(UTC)
    containers.create("moby", ContainerRecord(
        id="c0ffee", image=IMAGE_NAME, runtime_name="io.containerd.runc.v2",
        spec={"ociVersion": "1.0.2", "process": {"args": ["sh"]}}, snapshotter="overlayfs",
        snapshot_key="c0ffee", labels={"com.docker/engine.bundle.path": "/run/aiodock/moby/c0ffee"},
        created_at=now, updated_at=now,
    ))
    _seed_image(content, images)
    tasks = ListingOnlyTasks([
        ListedTask("moby", "c0ffee", 4242, "running", None, None, Path("/run/aiodock/moby/c0ffee")),
        ListedTask("moby", "deadbeef", 0, "stopped", 0, now, Path("/run/aiodock/moby/deadbeef")),
    ])
    server = GrpcServer(socket, [
        VersionService(),
        IntrospectionService(root),
        NamespacesService(namespaces, exchange),
        ContainersService(containers, namespaces, exchange),
        ImagesService(images, namespaces, exchange),
        ContentService(content),
        TasksService(tasks),
        EventsService(exchange),
    ])
    await server.start()
    try:
        yield Daemon(root, socket, exchange, containers)
    finally:
        await server.close()
        shutil.rmtree(root, ignore_errors=True)


async def test_socket_mode_and_stale_socket_replaced(daemon: Daemon) -> None:
    assert daemon.socket.stat().st_mode & 0o777 == 0o660


async def test_version_shows_server_version_and_stable_uuid(daemon: Daemon) -> None:
    _, out, _ = await daemon.ctr("version")
    server_part = out.split("Server:", 1)[1]
    assert VERSION in server_part
    assert "UUID" in server_part
    uuid_line = next(line for line in server_part.splitlines() if "UUID" in line)
    _, again, _ = await daemon.ctr("version")
    assert uuid_line in again


async def test_namespaces_ls_shows_labels(daemon: Daemon) -> None:
    _, out, _ = await daemon.ctr("namespaces", "ls")
    rows = _table(out)
    assert rows[0] == ["NAME", "LABELS"]
    assert ["default"] in rows[1:]
    assert ["moby", "io.aiodock.owner=engine"] in rows[1:]


async def test_namespaces_create_and_rm(daemon: Daemon) -> None:
    await daemon.ctr("namespaces", "create", "scratch", "team=infra")
    _, out, _ = await daemon.ctr("namespaces", "ls", "-q")
    assert "scratch" in out.split()
    _, out, _ = await daemon.ctr("namespaces", "ls")
    assert ["scratch", "team=infra"] in _table(out)

    rc, _, err = await daemon.ctr("namespaces", "create", "scratch", check=False)
    assert rc != 0 and 'namespace "scratch": already exists' in err

    _, out, _ = await daemon.ctr("namespaces", "rm", "scratch")
    assert out.strip() == "scratch"
    _, out, _ = await daemon.ctr("namespaces", "ls", "-q")
    assert "scratch" not in out.split()

    rc, _, err = await daemon.ctr("namespaces", "rm", "moby", check=False)
    assert rc != 0 and 'namespace "moby" must be empty, but it still has containers, images' in err


async def test_containers_ls_in_moby_namespace(daemon: Daemon) -> None:
    _, out, _ = await daemon.ctr("containers", "ls", namespace="moby")
    rows = _table(out)
    assert rows[0] == ["CONTAINER", "IMAGE", "RUNTIME"]
    assert rows[1:] == [["c0ffee", IMAGE_NAME, "io.containerd.runc.v2"]]
    _, out, _ = await daemon.ctr("containers", "ls")
    assert _table(out)[1:] == []  # "default" has none


async def test_containers_info_and_rm(daemon: Daemon) -> None:
    _, out, _ = await daemon.ctr("containers", "info", "c0ffee", namespace="moby")
    info = json.loads(out)
    assert info["Image"] == IMAGE_NAME
    assert info["Spec"]["process"]["args"] == ["sh"]

    rc, _, err = await daemon.ctr("containers", "rm", "c0ffee", namespace="moby", check=False)
    assert rc != 0 and "cannot delete a non stopped container" in err  # its task is running

    now = datetime.now(UTC)
    daemon.containers.create("moby", ContainerRecord(
        id="leftover", image=IMAGE_NAME, runtime_name="io.containerd.runc.v2", spec=None,
        snapshotter="overlayfs", snapshot_key="", labels={}, created_at=now, updated_at=now,  # no snapshot to clean
    ))
    _, out, _ = await daemon.ctr("containers", "ls", "-q", namespace="moby")
    assert out.split() == ["c0ffee", "leftover"]
    await daemon.ctr("containers", "rm", "leftover", namespace="moby")
    _, out, _ = await daemon.ctr("containers", "ls", "-q", namespace="moby")
    assert out.split() == ["c0ffee"]
    rc, _, err = await daemon.ctr("containers", "info", "leftover", namespace="moby", check=False)
    assert rc != 0 and 'container "leftover" in namespace "moby": not found' in err


async def test_images_ls_shows_size_and_platform(daemon: Daemon) -> None:
    _, out, _ = await daemon.ctr("images", "ls", namespace="moby")
    rows = _table(out)
    assert rows[0] == ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]
    # REF TYPE DIGEST <number> <unit> PLATFORMS LABELS; size = manifest + config + layer, about 1 KiB
    row = next(r for r in rows[1:] if r[0] == IMAGE_NAME)
    assert row[1] == MANIFEST_TYPE
    assert row[2] == _manifest_digest(daemon)
    assert float(row[3]) > 0 and row[4] in {"B", "KiB"}
    assert row[5] == "linux/amd64"
    assert row[6] == "io.aiodock.test=yes"


def _manifest_digest(daemon: Daemon) -> str:
    return ImageStore(daemon.root).get("moby", IMAGE_NAME).target.digest


async def test_images_check_reports_no_transport_error(daemon: Daemon) -> None:
    rc, out, err = await daemon.ctr("images", "check", namespace="moby", check=False)
    assert "missing content-type" not in out + err
    assert IMAGE_NAME in out
    assert "complete" in out


async def test_tasks_ls(daemon: Daemon) -> None:
    _, out, _ = await daemon.ctr("tasks", "ls", namespace="moby")
    rows = _table(out)
    assert rows[0] == ["TASK", "PID", "STATUS"]
    assert ["c0ffee", "4242", "RUNNING"] in rows[1:]
    assert ["deadbeef", "0", "STOPPED"] in rows[1:]


async def test_events_streams_a_published_task_exit(daemon: Daemon) -> None:
    proc = await asyncio.create_subprocess_exec(
        CTR, "--address", str(daemon.socket), "events",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        exited = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
        line = b""
        async with asyncio.timeout(20):
            while b"/tasks/exit" not in line:
                # publish until ctr's subscription is in place and the line comes through
                daemon.exchange.publish("moby", ev.TASK_EXIT, ev.TaskExit("c0ffee", "c0ffee", 4242, 137, exited))
                try:
                    line = await asyncio.wait_for(proc.stdout.readline(), timeout=0.3)
                except TimeoutError:
                    continue
        text = line.decode()
        assert " moby /tasks/exit " in text
        assert '"container_id":"c0ffee"' in text.replace(" ", "")
        assert '"exit_status":137' in text.replace(" ", "")
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()


async def test_unimplemented_service_answers_not_implemented(daemon: Daemon) -> None:
    rc, out, err = await daemon.ctr("snapshots", "ls", check=False)
    assert rc != 0
    assert "missing content-type" not in err
    assert "not implemented" in err.lower() or "unimplemented" in err.lower()


async def test_forwarded_task_exit_reaches_ctr_events(daemon: Daemon) -> None:
    """What a shim does: Forward(envelope{TaskExit as Any}) with the generated stub; `ctr events` shows it."""
    from grpclib.client import Channel

    from aiodock._proto.containerd.events import TaskExit
    from aiodock._proto.containerd.services.events.v1 import Envelope, EventsStub, ForwardRequest
    from aiodock._proto.google.protobuf import Any

    proc = await asyncio.create_subprocess_exec(
        CTR, "--address", str(daemon.socket), "events",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    channel = Channel(path=str(daemon.socket))
    try:
        assert proc.stdout is not None
        stub = EventsStub(channel)
        exited = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
        task_exit = TaskExit(container_id="fwd1", id="fwd1", pid=77, exit_status=3, exited_at=exited)
        request = ForwardRequest(envelope=Envelope(
            timestamp=exited, namespace="moby", topic="/tasks/exit",
            event=Any(type_url="containerd.events.TaskExit", value=bytes(task_exit)),
        ))
        line = b""
        async with asyncio.timeout(20):
            while b"fwd1" not in line:
                await stub.forward(request)
                try:
                    line = await asyncio.wait_for(proc.stdout.readline(), timeout=0.3)
                except TimeoutError:
                    continue
        assert " moby /tasks/exit " in line.decode()
        assert '"exit_status":3' in line.decode().replace(" ", "")
    finally:
        channel.close()
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
