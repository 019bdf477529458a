"""TaskManager + shims over the real runc, with containers from a busybox rootfs (no mocks)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest

from aiodock import errors
from aiodock.core import events as ev
from aiodock.core.runtime.testing import (
    RuntimeHarness,
    cgroup_dirs,
    pid_alive,
    processes_with_cwd_under,
)
from aiodock.shim.protocol import STDIN_FIFO
from tests.integration.conftest import needs_root

NS = "default"




def log_entries(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.root
@needs_root
async def test_exit_status_log_streams_and_events(harness: RuntimeHarness) -> None:
    tm = await harness.manager()
    cid = harness.new_id("exit")
    created = await tm.create(harness.spec(cid, ["sh", "-c", "echo hi; echo err >&2; exit 3"]))
    harness.init_pids.add(created.pid)
    assert created.status == "created" and created.pid > 0
    assert tm.get(NS, cid).bundle == harness.exec_root / NS / cid
    await tm.start_task(NS, cid)
    exit_ = await asyncio.wait_for(tm.wait(NS, cid), 10)
    assert exit_.exit_status == 3 and exit_.pid == created.pid and exit_.container_id == cid
    assert tm.get(NS, cid).status == "stopped"
    entries = log_entries(harness.log_path(cid))
    assert [(e["log"], e["stream"]) for e in entries] == [("hi\n", "stdout"), ("err\n", "stderr")]
    for e in entries:
        fraction = e["time"].split(".")[1]
        assert fraction.endswith("Z") and 2 <= len(fraction) <= 10  # RFC3339Nano: up to 9 digits, zeros trimmed
    deleted = await tm.delete(NS, cid)
    assert deleted is not None and deleted.exit_status == 3
    assert not (harness.exec_root / NS / cid).exists()
    with pytest.raises(errors.NotFound, match=f"no running task found: task {cid} not found"):
        tm.get(NS, cid)
    topics = [e.topic for e in harness.seen if getattr(e.event, "container_id", None) == cid]
    assert topics == [ev.TASK_CREATE, ev.TASK_START, ev.TASK_EXIT, ev.TASK_DELETE]


@pytest.mark.root
@needs_root
async def test_kill_sigterm_gives_143(harness: RuntimeHarness) -> None:
    tm = await harness.manager()
    cid = harness.new_id("kill")
    # Without a pid namespace `sleep` is not an init process, so SIGTERM's default action applies.
    info = await tm.create(harness.spec(cid, ["sleep", "100"], pid_namespace=False))
    harness.init_pids.add(info.pid)
    await tm.start_task(NS, cid)
    assert tm.get(NS, cid).status == "running"
    assert await tm.pids(NS, cid) == [info.pid]
    with pytest.raises(errors.FailedPrecondition):
        await tm.delete(NS, cid)
    await tm.kill(NS, cid, signal.SIGTERM)
    exit_ = await asyncio.wait_for(tm.wait(NS, cid), 10)
    assert exit_.exit_status == 143
    with pytest.raises(errors.Conflict):
        await tm.kill(NS, cid, signal.SIGTERM)
    await tm.delete(NS, cid)
    assert not pid_alive(info.pid)
    assert cgroup_dirs(cid) == []
    with pytest.raises(errors.NotFound):
        await tm.kill(NS, cid, signal.SIGKILL)


@pytest.mark.root
@needs_root
async def test_force_delete_running_task(harness: RuntimeHarness) -> None:
    tm = await harness.manager()
    cid = harness.new_id("force")
    info = await tm.create(harness.spec(cid, ["sleep", "100"]))
    harness.init_pids.add(info.pid)
    await tm.start_task(NS, cid)
    exit_ = await tm.delete(NS, cid, force=True)
    assert exit_ is not None and exit_.exit_status == 137
    assert not pid_alive(info.pid)


@pytest.mark.root
@needs_root
async def test_failed_create_leaves_nothing(harness: RuntimeHarness) -> None:
    tm = await harness.manager()
    cid = harness.new_id("nope")
    with pytest.raises(errors.RuntimeFailure) as caught:
        await tm.create(harness.spec(cid, ["/nope"]))
    message = str(caught.value)
    assert message.startswith("failed to create shim task: OCI runtime create failed: runc create failed: ")
    assert 'exec: "/nope": stat /nope: no such file or directory' in message
    assert tm.list(NS) == []
    assert not (harness.exec_root / NS / cid).exists()
    assert processes_with_cwd_under(harness.tmp) == []
    assert cgroup_dirs(cid) == []
    assert list((harness.exec_root / "s").iterdir()) == []
    assert not harness.log_path(cid).exists() or harness.log_path(cid).read_text() == ""
    # the id is free again
    ok = await tm.create(harness.spec(cid, ["true"]))
    harness.init_pids.add(ok.pid)
    await tm.start_task(NS, cid)
    assert (await asyncio.wait_for(tm.wait(NS, cid), 10)).exit_status == 0
    await tm.delete(NS, cid)


@pytest.mark.root
@needs_root
async def test_stdin_through_fifo(harness: RuntimeHarness) -> None:
    tm = await harness.manager()
    cid = harness.new_id("stdin")
    info = await tm.create(harness.spec(cid, ["cat"], stdin=True))
    harness.init_pids.add(info.pid)
    await tm.start_task(NS, cid)
    fifo = harness.exec_root / NS / cid / STDIN_FIFO

    def feed() -> None:
        with open(fifo, "wb") as fh:
            fh.write(b"line one\npartial")

    await asyncio.to_thread(feed)
    await tm.close_stdin(NS, cid)
    exit_ = await asyncio.wait_for(tm.wait(NS, cid), 10)
    assert exit_.exit_status == 0
    entries = log_entries(harness.log_path(cid))
    assert [e["log"] for e in entries] == ["line one\n", "partial"]
    await tm.delete(NS, cid)


@pytest.mark.root
@needs_root
async def test_create_and_start_latency(harness: RuntimeHarness) -> None:
    tm = await harness.manager()
    timings = []
    for _ in range(3):
        cid = harness.new_id("lat")
        began = time.monotonic()
        info = await tm.create(harness.spec(cid, ["true"], log=False))
        await tm.start_task(NS, cid)
        timings.append(time.monotonic() - began)
        harness.init_pids.add(info.pid)
        await asyncio.wait_for(tm.wait(NS, cid), 10)
        await tm.delete(NS, cid)
    print(f"create+start of `true`: {[round(t * 1000) for t in timings]} ms")
    assert min(timings) < 2.0


