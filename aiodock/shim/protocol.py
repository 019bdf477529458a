"""The shim's wire formats, shared by the shim and the daemon-side client (stdlib only).

Control socket (one unix stream socket per shim, bound and listened by the daemon, served by the shim):
JSON lines, one request per line ``{"op": <op>, ...params}``, one response per line, ``{"error": msg, "kind": k}``
on failure (``kind`` names an aiodock.errors class: NotFound, Conflict, FailedPrecondition, RuntimeFailure,
InvalidArgument, InternalError).

Ops:
  create {runtime, runc_root, log_path, log_max_size, log_max_files, stdin, terminal} -> {"pid"}
      terminal: config.json's process.terminal is true; runc create gets --console-socket and hands the shim
      the pty master, whose output becomes stdout (log and init-stdout) and which stdin is written to.
  start -> {"pid"};  state -> {"pid", "status", "exit_status", "exited_at"}
  kill {signal, all} -> {};  pids -> {"pids": [..]};  close_stdin -> {}
  wait -> {"pid", "exit_status", "exited_at"}  (answered once the init process has exited: a long poll)
  delete {force} -> {"pid", "exit_status", "exited_at"}, then the shim exits
  shutdown {now} -> {}, then the shim exits (refused while a container process lives, unless now)
  pause -> {};  resume -> {}  (runc pause / runc resume: the cgroup freezer)
  exec {exec_id, process, stdout, stderr, stdin} -> {"pid"}: `runc exec -d` of the OCI process (a dict) in the running
      container. stdout/stderr true: the process writes straight into the FIFOs exec-<exec_id>-stdout/-stderr
      in the bundle, which the daemon made and holds open for reading (else /dev/null). The shim reaps it.
      stdin true: the process reads exec-<exec_id>-stdin, which the daemon made and holds open for writing
      (its close is the process's EOF). process.terminal true: `runc exec --tty --console-socket`; the shim
      copies the pty master to the stdout FIFO (or /dev/null) and the stdin FIFO to the master.
  exec_state {exec_id} -> {"pid", "status", "exit_status", "exited_at"}
  exec_wait {exec_id} -> {"pid", "exit_status", "exited_at"}  (a long poll, like wait)
  resize {width, height, exec_id?} -> {}: the window size of the init's (or the exec's) pty master
  update {resources} -> {}: `runc update --resources <bundle>/update-resources.json` with the OCI LinuxResources
      (a dict; absent or zero fields are left as they are) of the created, running or paused container

Factory channel (SOCK_SEQPACKET socketpair between the daemon and the shim factory): one JSON datagram per
message. The daemon sends ``{"op": "spawn", ...SpawnRequest}`` with the listening control socket passed by
SCM_RIGHTS and gets ``{"pid": shim_pid}`` or ``{"error": msg}``. The factory says ``{"ready": true}`` once.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROTOCOL = "aiodock-json"
BOOTSTRAP_VERSION = 1

# Files in a task bundle
CONFIG_FILE = "config.json"
ROOTFS_DIR = "rootfs"
BOOTSTRAP_FILE = "bootstrap.json"
EXIT_FILE = "exit.json"
INIT_PID_FILE = "init.pid"
SHIM_LOG_FILE = "shim.log"
RUNC_LOG_FILE = "runc-log.json"
STDIN_FIFO = "init-stdin"
STDOUT_FIFO = "init-stdout"
STDERR_FIFO = "init-stderr"
EXEC_PREFIX = "exec-"
UPDATE_RESOURCES_FILE = "update-resources.json"

# Ops
OP_CREATE = "create"
OP_START = "start"
OP_STATE = "state"
OP_KILL = "kill"
OP_PIDS = "pids"
OP_WAIT = "wait"
OP_DELETE = "delete"
OP_SHUTDOWN = "shutdown"
OP_CLOSE_STDIN = "close_stdin"
OP_PAUSE = "pause"
OP_RESUME = "resume"
OP_EXEC = "exec"
OP_EXEC_STATE = "exec_state"
OP_EXEC_WAIT = "exec_wait"
OP_EXEC_DELETE = "exec_delete"
OP_RESIZE = "resize"
OP_UPDATE = "update"

# Task statuses (containerd's task status names)
STATUS_CREATED = "created"
STATUS_RUNNING = "running"
STATUS_STOPPED = "stopped"
STATUS_PAUSED = "paused"
STATUS_UNKNOWN = "unknown"

MAX_LINE = 1 << 20


def control_socket_path(exec_root: Path, namespace: str, container_id: str) -> Path:
    """Short, fixed-length socket path (unix socket paths are limited to 107 bytes)."""
    digest = hashlib.sha256(f"{namespace}/{container_id}".encode()).hexdigest()[:32]
    return Path(exec_root) / "s" / f"{digest}.sock"


def console_socket_path(control_socket: str, suffix: str) -> str:
    """Where runc sends a pty master (--console-socket): beside the short control socket path."""
    base = control_socket[:-len(".sock")] if control_socket.endswith(".sock") else control_socket
    return f"{base}-{suffix}.sock"


def valid_exec_id(exec_id: str) -> bool:
    """Exec ids name files in the bundle: letters, digits, '-' and '_' only (at most 128)."""
    return 0 < len(exec_id) <= 128 and all(c.isascii() and (c.isalnum() or c in "-_") for c in exec_id)


def exec_fifo(bundle: str | Path, exec_id: str, stream: str) -> Path:
    """<bundle>/exec-<exec_id>-stdout or -stderr."""
    return Path(bundle) / f"{EXEC_PREFIX}{exec_id}-{stream}"


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    value = json.loads(line)
    if not isinstance(value, dict):
        raise ValueError("shim protocol: message is not a JSON object")
    return value


def error_response(message: str, kind: str = "InternalError") -> dict[str, Any]:
    return {"error": message, "kind": kind}


@dataclass(frozen=True, slots=True)
class SpawnRequest:
    """What the factory needs to fork a shim for one task."""

    namespace: str
    container_id: str
    bundle: str
    socket_path: str
    grpc_address: str

    def to_json(self) -> dict[str, Any]:
        return {"op": "spawn", **asdict(self)}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> SpawnRequest:
        return cls(
            namespace=str(raw["namespace"]),
            container_id=str(raw["container_id"]),
            bundle=str(raw["bundle"]),
            socket_path=str(raw["socket_path"]),
            grpc_address=str(raw["grpc_address"]),
        )


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """<bundle>/bootstrap.json, written by the shim when it starts."""

    version: int
    address: str
    protocol: str
    shim_pid: int
    shim_start_time: int  # /proc/<pid>/stat field 22, to tell a reused pid from the shim

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Bootstrap:
        return cls(
            version=int(raw["version"]),
            address=str(raw["address"]),
            protocol=str(raw["protocol"]),
            shim_pid=int(raw["shim_pid"]),
            shim_start_time=int(raw.get("shim_start_time", 0)),
        )


@dataclass(frozen=True, slots=True)
class ExitRecord:
    """<bundle>/exit.json, written durably by the shim before it reports the exit."""

    pid: int
    exit_status: int
    exited_at: str  # RFC 3339 with nanoseconds, UTC
    oom_killed: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ExitRecord:
        return cls(pid=int(raw["pid"]), exit_status=int(raw["exit_status"]), exited_at=str(raw["exited_at"]),
                   oom_killed=bool(raw.get("oom_killed", False)))


def oom_killed(bundle: str) -> bool:
    """Whether the container's memory cgroup OOM-killed a process (read at init exit, before runc delete
    removes the cgroup): cgroup v1 memory.oom_control or v2 memory.events, "oom_kill N"."""
    try:
        with open(f"{bundle}/{CONFIG_FILE}", "rb") as fh:
            spec = json.loads(fh.read())
    except (OSError, ValueError):
        return False
    path = str((spec.get("linux") or {}).get("cgroupsPath") or "").strip("/")
    if not path or ":" in path:
        return False
    for name in (f"/sys/fs/cgroup/memory/{path}/memory.oom_control", f"/sys/fs/cgroup/{path}/memory.events"):
        try:
            with open(name) as fh:
                lines = fh.read().splitlines()
        except OSError:
            continue
        for line in lines:
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value) > 0
    return False


def process_start_time(pid: int) -> int | None:
    """Start time of pid in clock ticks since boot (/proc/<pid>/stat field 22); None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The comm field may hold spaces and parentheses: split after the last ')'.
    rest = raw[raw.rfind(b")") + 2:].split()
    try:
        state = rest[0]
        if state in (b"Z", b"X"):
            return None
        return int(rest[19])
    except (IndexError, ValueError):
        return None


def process_alive(pid: int, start_time: int) -> bool:
    """True when pid runs and is the same process (same start time; 0 means unknown: pid only)."""
    if pid <= 0:
        return False
    current = process_start_time(pid)
    if current is None:
        return False
    return start_time == 0 or current == start_time


def format_timestamp(ns: int) -> str:
    """RFC 3339 UTC with 9 fraction digits and Z (Docker's RFC3339NanoFixed)."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def parse_timestamp(text: str) -> datetime:
    """Parse format_timestamp's output (or any RFC 3339 UTC time) to an aware datetime (microseconds)."""
    base, _, frac = text.rstrip("Z").partition(".")
    parsed = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    micros = int((frac + "000000")[:6]) if frac else 0
    return parsed.replace(microsecond=micros)
