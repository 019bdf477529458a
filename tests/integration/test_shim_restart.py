"""Restart safety: shims outlive the TaskManager; a new one finds exits, live tasks and dead shims."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from aiodock.core import events as ev
from aiodock.core.runtime.testing import RuntimeHarness, cgroup_dirs, pid_alive
from aiodock.shim.protocol import BOOTSTRAP_FILE, EXIT_FILE, Bootstrap
from tests.integration.conftest import needs_root

pytestmark = [pytest.mark.root, needs_root]
NS = "default"




async def until(predicate: object, timeout: float = 10.0) -> None:
    assert callable(predicate)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def shim_pid(harness: RuntimeHarness, cid: str) -> int:
    raw = (harness.exec_root / NS / cid / BOOTSTRAP_FILE).read_text()
    import json

    return Bootstrap.from_json(json.loads(raw)).shim_pid


def exits_seen(harness: RuntimeHarness, cid: str) -> list[int]:
    return [e.event.exit_status for e in harness.seen
            if e.topic == ev.TASK_EXIT and isinstance(e.event, ev.TaskExit) and e.event.container_id == cid]


async def test_exit_while_daemon_down_is_found_at_load(harness: RuntimeHarness) -> None:
    tm = await harness.manager()
    cid = harness.new_id("down")
    info = await tm.create(harness.spec(cid, ["sh", "-c", "read x; echo bye; exit 7"], stdin=True))
    harness.init_pids.add(info.pid)
    await tm.start_task(NS, cid)
    await tm.close()
    bundle = harness.exec_root / NS / cid
    with open(bundle / "init-stdin", "wb") as fh:  # the task exits while no manager exists
        fh.write(b"go\n")
    await until(lambda: (bundle / EXIT_FILE).exists())
    assert pid_alive(shim_pid(harness, cid))  # the shim waits for delete

    tm2 = await harness.manager()
    loaded = await tm2.load_existing()
    assert [(i.container_id, i.status, i.exit_status) for i in loaded] == [(cid, "stopped", 7)]
    assert exits_seen(harness, cid) == [7]
    assert (await tm2.wait(NS, cid)).exit_status == 7
    assert '"log":"bye\\n"' in harness.log_path(cid).read_text()
    await tm2.handle_exit(NS, ev.TaskExit(cid, cid, info.pid, 7, ev.utcnow()))  # a late forward: no repeat
    assert exits_seen(harness, cid) == [7]
    exit_ = await tm2.delete(NS, cid)
    assert exit_ is not None and exit_.exit_status == 7
    assert not bundle.exists()


async def test_sigkilled_shim_gives_synthetic_255(harness: RuntimeHarness) -> None:
    tm = await harness.manager()
    cid = harness.new_id("dead")
    info = await tm.create(harness.spec(cid, ["sleep", "100"]))
    harness.init_pids.add(info.pid)
    await tm.start_task(NS, cid)
    await tm.close()
    shim = shim_pid(harness, cid)
    os.kill(shim, signal.SIGKILL)
    await until(lambda: not pid_alive(shim))

    tm2 = await harness.manager()
    loaded = await tm2.load_existing()
    assert [(i.container_id, i.status, i.exit_status) for i in loaded] == [(cid, "stopped", 255)]
    assert exits_seen(harness, cid) == [255]
    await until(lambda: not pid_alive(info.pid))  # runc delete --force killed the orphaned container
    assert cgroup_dirs(cid) == []
    await tm2.delete(NS, cid)
    assert not (harness.exec_root / NS / cid).exists()


async def test_shim_killed_while_manager_watches(harness: RuntimeHarness) -> None:
    tm = await harness.manager()
    cid = harness.new_id("watch")
    info = await tm.create(harness.spec(cid, ["sleep", "100"]))
    harness.init_pids.add(info.pid)
    await tm.start_task(NS, cid)
    os.kill(shim_pid(harness, cid), signal.SIGKILL)
    exit_ = await asyncio.wait_for(tm.wait(NS, cid), 15)
    assert exit_.exit_status == 255
    await until(lambda: not pid_alive(info.pid))
    await tm.delete(NS, cid)


async def test_five_running_tasks_survive_a_manager_restart(harness: RuntimeHarness) -> None:
    tm = await harness.manager()
    script = "while true; do echo tick; sleep 0.05; done"
    cids = [harness.new_id(f"five{i}") for i in range(5)]
    infos = await asyncio.gather(*(tm.create(harness.spec(cid, ["sh", "-c", script])) for cid in cids))
    harness.init_pids.update(i.pid for i in infos)
    await asyncio.gather(*(tm.start_task(NS, cid) for cid in cids))
    await tm.close()

    sizes = {cid: harness.log_path(cid).stat().st_size for cid in cids}
    await asyncio.sleep(0.5)
    for cid in cids:  # the shims keep writing logs while no manager exists
        assert harness.log_path(cid).stat().st_size > sizes[cid]

    tm2 = await harness.manager()
    loaded = {i.container_id: i for i in await tm2.load_existing()}
    assert sorted(loaded) == sorted(cids)
    for info in infos:
        assert loaded[info.container_id].status == "running"
        assert loaded[info.container_id].pid == info.pid
        os.kill(info.pid, 0)
    await asyncio.gather(*(tm2.kill(NS, cid, signal.SIGKILL) for cid in cids))
    exits = await asyncio.wait_for(asyncio.gather(*(tm2.wait(NS, cid) for cid in cids)), 15)
    assert [e.exit_status for e in exits] == [137] * 5
    for cid in cids:
        assert exits_seen(harness, cid) == [137]
        await tm2.delete(NS, cid)


async def test_exit_forwarded_over_grpc_with_retry(harness: RuntimeHarness) -> None:
    from grpclib.server import Server

    from aiodock._proto.containerd.events import TaskExit
    from aiodock._proto.containerd.services.events.v1 import EventsBase, ForwardRequest
    from aiodock._proto.google.protobuf import Empty

    received: asyncio.Queue[tuple[str, str, str, TaskExit]] = asyncio.Queue()

    class Events(EventsBase):
        async def forward(self, message: ForwardRequest) -> Empty:
            env = message.envelope
            assert env is not None and env.event is not None
            received.put_nowait((env.namespace, env.topic, env.event.type_url, TaskExit.parse(env.event.value)))
            return Empty()

    tm = await harness.manager()
    cid = harness.new_id("fwd")
    info = await tm.create(harness.spec(cid, ["sh", "-c", "read x; exit 5"], stdin=True))
    harness.init_pids.add(info.pid)
    await tm.start_task(NS, cid)
    bundle = harness.exec_root / NS / cid
    with open(bundle / "init-stdin", "wb") as fh:
        fh.write(b"go\n")
    await until(lambda: (bundle / EXIT_FILE).exists())
    await asyncio.sleep(0.3)  # the shim is retrying: nobody listens on the gRPC socket yet

    server = Server([Events()])
    await server.start(path=str(harness.grpc_socket))
    try:
        namespace, topic, type_url, event = await asyncio.wait_for(received.get(), 10)
    finally:
        server.close()
        await server.wait_closed()
    assert (namespace, topic, type_url) == (NS, "/tasks/exit", "containerd.events.TaskExit")
    assert (event.container_id, event.id, event.pid, event.exit_status) == (cid, cid, info.pid, 5)
    assert event.exited_at is not None
    await tm.handle_exit(NS, ev.TaskExit(cid, cid, event.pid, event.exit_status, event.exited_at))
    assert (await tm.wait(NS, cid)).exit_status == 5
    assert exits_seen(harness, cid) == [5]
    await tm.delete(NS, cid)


async def test_half_made_bundles_are_cleaned_at_load(harness: RuntimeHarness) -> None:
    from aiodock.core.mount import Mount, mount_all, mounts_under

    bundle = harness.exec_root / NS / harness.new_id("half")
    (bundle / "rootfs").mkdir(parents=True)
    (bundle / "config.json").write_text("{}")
    mount_all((Mount("bind", str(harness.rootfs), ("rbind", "ro")),), bundle / "rootfs")
    empty = harness.exec_root / NS / harness.new_id("empty")
    empty.mkdir()
    tm = await harness.manager()
    assert await tm.load_existing() == []
    assert not bundle.exists() and not empty.exists()
    assert mounts_under(harness.tmp) == []


async def test_unresponsive_live_shim_is_not_an_exit(harness: RuntimeHarness) -> None:
    tm = await harness.manager()
    cid = harness.new_id("stop")
    info = await tm.create(harness.spec(cid, ["sleep", "100"]))
    harness.init_pids.add(info.pid)
    await tm.start_task(NS, cid)
    await tm.close()
    shim = shim_pid(harness, cid)
    os.kill(shim, signal.SIGSTOP)  # alive, but its control socket does not answer
    try:
        tm2 = await harness.manager()
        loaded = await tm2.load_existing()
        assert [(i.container_id, i.status, i.exit_status) for i in loaded] == [(cid, "unknown", None)]
        assert exits_seen(harness, cid) == []
    finally:
        os.kill(shim, signal.SIGCONT)
    await until(lambda: tm2.get(NS, cid).status == "running")
    await tm2.kill(NS, cid, signal.SIGKILL)
    assert (await asyncio.wait_for(tm2.wait(NS, cid), 10)).exit_status == 137
    await tm2.delete(NS, cid)


DAEMON_SCRIPT = """
import asyncio, json, sys
from pathlib import Path
from aiodock.core.events import EventExchange
from aiodock.core.mount import Mount
from aiodock.core.runtime.tasks import TaskManager, TaskSpec
from aiodock.core.runtime.testing import minimal_spec

async def main():
    rootfs, exec_root, cid = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    tm = TaskManager(exec_root=exec_root, runtime="runc", events=EventExchange(),
                     grpc_socket=exec_root / "g.sock")
    await tm.start()
    spec = TaskSpec("default", cid, minimal_spec(["sleep", "100"], cid), (Mount("bind", rootfs, ("rbind", "ro")),), None)
    info = await tm.create(spec)
    await tm.start_task("default", cid)
    sys.stderr.write(json.dumps({"factory": tm._factory.pid, "pid": info.pid}) + "\\n")
    sys.stderr.flush()
    await asyncio.sleep(100)

asyncio.run(main())
"""


async def test_shims_survive_a_sigkilled_daemon_and_the_factory_dies_with_it(harness: RuntimeHarness) -> None:
    import json
    import sys

    cid = harness.new_id("pdeath")
    daemon = await asyncio.create_subprocess_exec(
        sys.executable, "-c", DAEMON_SCRIPT, str(harness.rootfs), str(harness.exec_root), cid,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    assert daemon.stderr is not None
    try:
        line = b""
        while not line.startswith(b"{"):
            line = await asyncio.wait_for(daemon.stderr.readline(), 20)
            assert line, "the daemon script died"
        started = json.loads(line)
        harness.init_pids.add(started["pid"])
    finally:
        daemon.kill()
        await daemon.wait()
    await until(lambda: not pid_alive(started["factory"]), 5)
    assert pid_alive(started["pid"]) and pid_alive(shim_pid(harness, cid))
    tm = await harness.manager()
    loaded = await tm.load_existing()
    assert [(i.container_id, i.status, i.pid) for i in loaded] == [(cid, "running", started["pid"])]
    await tm.delete(NS, cid, force=True)
