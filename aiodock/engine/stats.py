"""GET /containers/{id}/stats: Docker's stats document, read from the container's cgroup (v1 here, v2 where the
host has it; the cgroup file readers are core's, aiodock.core.runtime.cgroups) and from its network namespace
(/proc/<pid>/net/dev)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiodock.config import DaemonConfig
from aiodock.core.runtime import cgroups
from aiodock.engine.containers import ContainerService
from aiodock.engine.state import Container, rfc3339nano

ZERO_TIME = "0001-01-01T00:00:00Z"


def system_cpu_usage() -> int:
    """All CPUs' time since boot in nanoseconds (the first line of /proc/stat), as Docker reports it."""
    for line in cgroups.read_text(Path("/proc/stat")).splitlines():
        if line.startswith("cpu "):
            ticks = sum(int(v) for v in line.split()[1:8])
            return ticks * 1_000_000_000 // cgroups.CLK_TCK
    return 0


def network_stats(pid: int) -> dict[str, dict[str, int]]:
    """Per-interface counters inside the container's network namespace (loopback left out, as Docker does)."""
    networks: dict[str, dict[str, int]] = {}
    if pid <= 0:
        return networks
    for line in cgroups.read_text(Path(f"/proc/{pid}/net/dev")).splitlines()[2:]:
        name, _, counters = line.partition(":")
        name = name.strip()
        values = counters.split()
        if name == "lo" or len(values) < 16:
            continue
        v = [int(x) for x in values]
        networks[name] = {"rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2], "rx_dropped": v[3],
                          "tx_bytes": v[8], "tx_packets": v[9], "tx_errors": v[10], "tx_dropped": v[11]}
    return networks


def _v1_sample(cgroup_path: str) -> dict[str, Any]:
    cpuacct = cgroups.v1_dir("cpuacct", cgroup_path)
    cpu = cgroups.v1_dir("cpu", cgroup_path)
    memory = cgroups.v1_dir("memory", cgroup_path)
    pids = cgroups.v1_dir("pids", cgroup_path)
    blkio = cgroups.v1_dir("blkio", cgroup_path)
    ticks = cgroups.read_keyed(cpuacct / "cpuacct.stat")
    percpu = [int(v) for v in cgroups.read_text(cpuacct / "cpuacct.usage_percpu").split()]
    throttling = cgroups.read_keyed(cpu / "cpu.stat")
    mem_stat = cgroups.read_keyed(memory / "memory.stat")
    io_bytes = []
    for line in cgroups.read_text(blkio / "blkio.throttle.io_service_bytes").splitlines():
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0]:
            major, minor = parts[0].split(":")
            io_bytes.append({"major": int(major), "minor": int(minor), "op": parts[1].lower(), "value": int(parts[2])})
    return {
        "cpu": {
            "cpu_usage": {
                "total_usage": cgroups.read_int(cpuacct / "cpuacct.usage"),
                "percpu_usage": percpu,
                "usage_in_kernelmode": ticks.get("system", 0) * 1_000_000_000 // cgroups.CLK_TCK,
                "usage_in_usermode": ticks.get("user", 0) * 1_000_000_000 // cgroups.CLK_TCK,
            },
            "throttling_data": {"periods": throttling.get("nr_periods", 0),
                                "throttled_periods": throttling.get("nr_throttled", 0),
                                "throttled_time": throttling.get("throttled_time", 0)},
        },
        "memory": {
            "usage": cgroups.read_int(memory / "memory.usage_in_bytes"),
            "max_usage": cgroups.read_int(memory / "memory.max_usage_in_bytes"),
            "stats": mem_stat,
            "limit": _memory_limit(cgroups.read_int(memory / "memory.limit_in_bytes")),
        },
        "pids": {"current": cgroups.read_int(pids / "pids.current"), "limit": cgroups.read_int(pids / "pids.max")},
        "blkio": io_bytes,
    }


def _memory_limit(cgroup_limit: int) -> int:
    """The limit stats report: the cgroup's, but at most the host's memory, as Docker's (an unlimited v1 cgroup
    reads about 2^63; v2's "max" reads 0 here)."""
    host = cgroups.mem_total()
    if not cgroup_limit or not host:
        return cgroup_limit or host
    return min(cgroup_limit, host)


def _v2_sample(cgroup_path: str) -> dict[str, Any]:
    base = cgroups.v2_dir(cgroup_path)
    cpu = cgroups.read_keyed(base / "cpu.stat")
    mem_stat = cgroups.read_keyed(base / "memory.stat")
    limit = _memory_limit(cgroups.read_int(base / "memory.max"))
    io_bytes = []
    for line in cgroups.read_text(base / "io.stat").splitlines():
        parts = line.split()
        if parts and ":" in parts[0]:
            major, minor = parts[0].split(":")
            fields = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
            for op, key in (("read", "rbytes"), ("write", "wbytes")):
                io_bytes.append({"major": int(major), "minor": int(minor), "op": op, "value": int(fields.get(key, 0))})
    return {
        "cpu": {
            "cpu_usage": {"total_usage": cpu.get("usage_usec", 0) * 1000, "usage_in_kernelmode":
                          cpu.get("system_usec", 0) * 1000, "usage_in_usermode": cpu.get("user_usec", 0) * 1000},
            "throttling_data": {"periods": cpu.get("nr_periods", 0), "throttled_periods": cpu.get("nr_throttled", 0),
                                "throttled_time": cpu.get("throttled_usec", 0) * 1000},
        },
        "memory": {"usage": cgroups.read_int(base / "memory.current"), "stats": mem_stat, "limit": limit},
        "pids": {"current": cgroups.read_int(base / "pids.current"), "limit": cgroups.read_int(base / "pids.max")},
        "blkio": io_bytes,
    }


def sample(cgroup_path: str, pid: int) -> dict[str, Any]:
    """One reading of a container's counters. Blocking (small /sys and /proc reads)."""
    raw = _v2_sample(cgroup_path) if cgroups.unified() else _v1_sample(cgroup_path)
    cpu = raw["cpu"]
    cpu["system_cpu_usage"] = system_cpu_usage()
    cpu["online_cpus"] = os.cpu_count() or 1
    return {"time": datetime.now(UTC), "cpu_stats": cpu, "memory_stats": raw["memory"],
            "pids_stats": raw["pids"], "blkio": raw["blkio"], "networks": network_stats(pid)}


def _empty_cpu() -> dict[str, Any]:
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "system_cpu_usage": 0, "online_cpus": 0,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def document(container: Container, now: dict[str, Any] | None, before: dict[str, Any] | None) -> dict[str, Any]:
    """Docker's stats JSON; a stopped container reads as zeros, as in Docker."""
    doc: dict[str, Any] = {
        "read": rfc3339nano(now["time"]) if now else ZERO_TIME,
        "preread": rfc3339nano(before["time"]) if before else ZERO_TIME,
        "pids_stats": now["pids_stats"] if now else {},
        "blkio_stats": {"io_service_bytes_recursive": now["blkio"] if now else None, "io_serviced_recursive": None,
                        "io_queue_recursive": None, "io_service_time_recursive": None,
                        "io_wait_time_recursive": None, "io_merged_recursive": None, "io_time_recursive": None,
                        "sectors_recursive": None},
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": now["cpu_stats"] if now else _empty_cpu(),
        "precpu_stats": before["cpu_stats"] if before else _empty_cpu(),
        "memory_stats": now["memory_stats"] if now else {},
        "name": "/" + container.name,
        "id": container.id,
    }
    if now and now["networks"]:
        doc["networks"] = now["networks"]
    return doc


class StatsService:
    def __init__(self, *, config: DaemonConfig, containers: ContainerService) -> None:
        self._config = config
        self._containers = containers

    def _cgroup_path(self, container: Container) -> str:
        parent = container.host_config.get("CgroupParent") or self._config.cgroup_parent
        return f"/{parent.strip('/')}/{container.id}"

    async def stats(self, ref: str, stream: bool = True, one_shot: bool = False) -> AsyncIterator[dict[str, Any]]:
        """Validated now (NotFound); then one document (stream false) or one a second until the container stops.
        Without one_shot, a single document carries a precpu reading taken a second earlier (as docker stats
        --no-stream needs for its CPU %)."""
        container = self._containers.get(ref)
        return self._documents(container.id, stream, one_shot)

    async def _documents(self, container_id: str, stream: bool, one_shot: bool) -> AsyncIterator[dict[str, Any]]:
        before: dict[str, Any] | None = None
        while True:
            container = self._containers.get(container_id)
            if not container.state.running:
                yield document(container, None, None)
                return
            now = await asyncio.to_thread(sample, self._cgroup_path(container), container.state.pid)
            if before is not None or one_shot or stream:
                yield document(container, now, before)
                if not stream:
                    return
            before = now
            await asyncio.sleep(1.0)
