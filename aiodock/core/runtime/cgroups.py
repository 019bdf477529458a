"""Reading a task's cgroup counters (cgroup v1 here, v2 where the host is unified): containerd's metrics role.

The small file readers are shared with the engine's `docker stats` (engine/stats.py). metrics() returns one
reading shaped like containerd's cgroups Metrics messages (v1: io.containerd.cgroups.v1.Metrics, v2:
io.containerd.cgroups.v2.Metrics), as plain dicts keyed by their field names; the gRPC adapter encodes them.
All functions here block (small /sys and /proc reads): call them through asyncio.to_thread.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CGROUP_ROOT = Path("/sys/fs/cgroup")
CLK_TCK = os.sysconf("SC_CLK_TCK")
MAX_UINT64 = (1 << 64) - 1

# memory.stat (v1) keys whose Metrics field names differ
_V1_MEMORY_RENAMES = {
    "pgpgin": "pg_pg_in", "pgpgout": "pg_pg_out", "pgfault": "pg_fault", "pgmajfault": "pg_maj_fault",
    "hierarchical_memsw_limit": "hierarchical_swap_limit",
    "total_pgpgin": "total_pg_pg_in", "total_pgpgout": "total_pg_pg_out", "total_pgfault": "total_pg_fault",
    "total_pgmajfault": "total_pg_maj_fault",
}
_V1_MEMORY_FIELDS = frozenset({
    "cache", "rss", "rss_huge", "mapped_file", "dirty", "writeback", "pg_pg_in", "pg_pg_out", "pg_fault",
    "pg_maj_fault", "inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable",
    "hierarchical_memory_limit", "hierarchical_swap_limit", "total_cache", "total_rss", "total_rss_huge",
    "total_mapped_file", "total_dirty", "total_writeback", "total_pg_pg_in", "total_pg_pg_out", "total_pg_fault",
    "total_pg_maj_fault", "total_inactive_anon", "total_active_anon", "total_inactive_file", "total_active_file",
    "total_unevictable",
})
_V2_MEMORY_FIELDS = frozenset({
    "anon", "file", "kernel_stack", "slab", "sock", "shmem", "file_mapped", "file_dirty", "file_writeback",
    "anon_thp", "inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable", "slab_reclaimable",
    "slab_unreclaimable", "pgfault", "pgmajfault", "workingset_refault", "workingset_activate",
    "workingset_nodereclaim", "pgrefill", "pgscan", "pgsteal", "pgactivate", "pgdeactivate", "pglazyfree",
    "pglazyfreed", "thp_fault_alloc", "thp_collapse_alloc",
})


def read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def read_int(path: Path, default: int = 0, unlimited: int = 0) -> int:
    """The first number in a cgroup file ("max" reads as unlimited)."""
    text = read_text(path).strip()
    if text == "max":
        return unlimited
    try:
        return int(text.split()[0]) if text else default
    except ValueError:
        return default


def read_keyed(path: Path) -> dict[str, int]:
    """A "key value" per line file (memory.stat, cpu.stat, cpuacct.stat, ...)."""
    found: dict[str, int] = {}
    for line in read_text(path).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            found[parts[0]] = int(parts[1])
    return found


def unified() -> bool:
    """True on a cgroup v2 (unified) host."""
    return (CGROUP_ROOT / "cgroup.controllers").exists()


def v1_dir(controller: str, cgroup_path: str) -> Path:
    """The directory of a cgroup in one v1 controller's hierarchy (cpu and cpuacct may be co-mounted)."""
    for name in (controller, "cpu,cpuacct" if controller in ("cpu", "cpuacct") else controller):
        candidate = CGROUP_ROOT / name / cgroup_path.strip("/")
        if candidate.exists():
            return candidate
    return CGROUP_ROOT / controller / cgroup_path.strip("/")


def v2_dir(cgroup_path: str) -> Path:
    return CGROUP_ROOT / cgroup_path.strip("/")


def mem_total() -> int:
    for line in read_text(Path("/proc/meminfo")).splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def exists(cgroup_path: str) -> bool:
    """Whether the cgroup is there (its task runs, or is not deleted yet)."""
    if unified():
        return v2_dir(cgroup_path).is_dir()
    return v1_dir("memory", cgroup_path).is_dir() or v1_dir("pids", cgroup_path).is_dir()


def metrics(cgroup_path: str) -> tuple[int, dict[str, Any]]:
    """(cgroup version, one reading shaped like that version's containerd Metrics message)."""
    if unified():
        return 2, metrics_v2(cgroup_path)
    return 1, metrics_v1(cgroup_path)


def _memory_entry(memory: Path, prefix: str) -> dict[str, int]:
    return {
        "usage": read_int(memory / f"{prefix}.usage_in_bytes"),
        "limit": read_int(memory / f"{prefix}.limit_in_bytes"),
        "max": read_int(memory / f"{prefix}.max_usage_in_bytes"),
        "failcnt": read_int(memory / f"{prefix}.failcnt"),
    }


def _blkio_entries(path: Path) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for line in read_text(path).splitlines():
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0] and parts[2].isdigit():
            major, minor = parts[0].split(":", 1)
            entries.append({"op": parts[1], "major": int(major), "minor": int(minor), "value": int(parts[2])})
    return entries


def metrics_v1(cgroup_path: str) -> dict[str, Any]:
    cpuacct = v1_dir("cpuacct", cgroup_path)
    cpu = v1_dir("cpu", cgroup_path)
    memory = v1_dir("memory", cgroup_path)
    pids = v1_dir("pids", cgroup_path)
    blkio = v1_dir("blkio", cgroup_path)
    ticks = read_keyed(cpuacct / "cpuacct.stat")
    throttling = read_keyed(cpu / "cpu.stat")
    memory_stat: dict[str, Any] = {}
    for key, value in read_keyed(memory / "memory.stat").items():
        name = _V1_MEMORY_RENAMES.get(key, key)
        if name in _V1_MEMORY_FIELDS:
            memory_stat[name] = max(value, 0)
    memory_stat.update(
        usage=_memory_entry(memory, "memory"), swap=_memory_entry(memory, "memory.memsw"),
        kernel=_memory_entry(memory, "memory.kmem"), kernel_tcp=_memory_entry(memory, "memory.kmem.tcp"),
    )
    oom = read_keyed(memory / "memory.oom_control")
    service_bytes = blkio / "blkio.io_service_bytes_recursive"
    serviced = blkio / "blkio.io_serviced_recursive"
    if not read_text(service_bytes).strip():  # the CFQ files are absent or empty: the throttle layer's
        service_bytes, serviced = blkio / "blkio.throttle.io_service_bytes", blkio / "blkio.throttle.io_serviced"
    return {
        "pids": {"current": read_int(pids / "pids.current"), "limit": read_int(pids / "pids.max")},
        "cpu": {
            "usage": {
                "total": read_int(cpuacct / "cpuacct.usage"),
                "kernel": ticks.get("system", 0) * 1_000_000_000 // CLK_TCK,
                "user": ticks.get("user", 0) * 1_000_000_000 // CLK_TCK,
                "per_cpu": [int(v) for v in read_text(cpuacct / "cpuacct.usage_percpu").split() if v.isdigit()],
            },
            "throttling": {
                "periods": throttling.get("nr_periods", 0), "throttled_periods": throttling.get("nr_throttled", 0),
                "throttled_time": throttling.get("throttled_time", 0),
            },
        },
        "memory": memory_stat,
        "memory_oom_control": {
            "oom_kill_disable": oom.get("oom_kill_disable", 0), "under_oom": oom.get("under_oom", 0),
            "oom_kill": oom.get("oom_kill", 0),
        },
        "blkio": {
            "io_service_bytes_recursive": _blkio_entries(service_bytes),
            "io_serviced_recursive": _blkio_entries(serviced),
        },
    }


def metrics_v2(cgroup_path: str) -> dict[str, Any]:
    base = v2_dir(cgroup_path)
    cpu = read_keyed(base / "cpu.stat")
    memory_stat = {key: max(value, 0) for key, value in read_keyed(base / "memory.stat").items()
                   if key in _V2_MEMORY_FIELDS}
    memory_stat.update(
        usage=read_int(base / "memory.current"), usage_limit=read_int(base / "memory.max", unlimited=MAX_UINT64),
        swap_usage=read_int(base / "memory.swap.current"),
        swap_limit=read_int(base / "memory.swap.max", unlimited=MAX_UINT64),
    )
    io_usage: list[dict[str, int]] = []
    for line in read_text(base / "io.stat").splitlines():
        parts = line.split()
        if parts and ":" in parts[0]:
            major, minor = parts[0].split(":", 1)
            fields = dict(part.split("=", 1) for part in parts[1:] if "=" in part)
            io_usage.append({"major": int(major), "minor": int(minor),
                             **{key: int(fields.get(key, 0)) for key in ("rbytes", "wbytes", "rios", "wios")}})
    events = read_keyed(base / "memory.events")
    return {
        "pids": {"current": read_int(base / "pids.current"), "limit": read_int(base / "pids.max")},
        "cpu": {key: cpu.get(key, 0) for key in ("usage_usec", "user_usec", "system_usec", "nr_periods",
                                                 "nr_throttled", "throttled_usec")},
        "memory": memory_stat,
        "io": {"usage": io_usage},
        "memory_events": {key: events.get(key, 0) for key in ("low", "high", "max", "oom", "oom_kill")},
    }
