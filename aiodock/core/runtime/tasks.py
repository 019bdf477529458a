"""TaskManager: containerd's runtime v2 role. Bundles, shims, and the task lifecycle, restart-safe.

Each task has a bundle <exec_root>/<ns>/<id>/ and a shim forked by the shim factory. The shim survives the
daemon; at start the daemon finds its tasks again with load_existing(): exit.json (the shim's durable exit
record), else a live shim (pid and start time checked, then `state` over its control socket), else a dead
shim (runc delete --force, unmount, synthetic exit 255: containerd's cleanupAfterDeadShim).

Exits reach the manager by four paths: the shim's Events/Forward call (handle_exit), the long-poll `wait`
connection kept open per task, exit.json at load, and a dead shim. Whichever comes first resolves waiters and
publishes TASK_EXIT; the others are no-ops.

Exec processes (Docker's exec, and containerd's Exec/Start/DeleteProcess for ctr) are kept per task in memory:
created, running (`runc exec -d` in the shim, with the daemon's FIFOs or the client's own), stopped (a long-poll
`exec_wait` per process). They publish /tasks/exec-added, /tasks/exec-started and /tasks/exit with the exec id,
as containerd does; pause and resume publish /tasks/paused and /tasks/resumed. metrics() reads the task's cgroup.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal as signals
import socket
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from aiodock import errors
from aiodock.core import events as ev
from aiodock.core.events import EventExchange, TaskExit
from aiodock.core.mount import Mount, mount_all, unmount
from aiodock.core.runtime import cgroups
from aiodock.core.runtime.shim_client import ShimClient, ShimUnreachable
from aiodock.core.runtime.shim_factory import ShimFactory
from aiodock.log import get_logger
from aiodock.shim import protocol as p
from aiodock.util import atomicfile

log = get_logger("aiodock.runtime")

# Entries of exec_root that are not namespaces.
RESERVED_DIRS = frozenset({"s", "runc", "containerd"})
LOAD_TIMEOUT = 30.0
LOAD_ONE_TIMEOUT = 10.0
SHIM_EXIT_TIMEOUT = 3.0
FORCE_KILL_TIMEOUT = 10.0
DEAD_SHIM_EXIT_STATUS = 255


@dataclass(frozen=True, slots=True)
class TaskSpec:
    namespace: str
    container_id: str
    spec: dict[str, Any]
    rootfs: tuple[Mount, ...]
    log_path: Path | None
    log_max_size: int | None = None
    log_max_files: int = 1
    stdin: bool = False
    terminal: bool = False  # spec's process.terminal: the shim takes the pty master (console socket)


MAX_FINISHED_EXECS = 64  # finished execs nobody deletes (Docker's) kept per task for late waiters


@dataclass(frozen=True, slots=True)
class ExecIO:
    """The client's FIFO paths of an exec (containerd's convention: the client made them and reads/writes)."""

    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False


@dataclass(frozen=True, slots=True)
class TaskInfo:
    namespace: str
    container_id: str
    pid: int
    status: str  # "created" | "running" | "stopped" | "paused" | "unknown"
    exit_status: int | None
    exited_at: datetime | None
    bundle: Path
    oom_killed: bool = False  # the exit came from the cgroup's OOM killer


class _Exec:
    """One exec process of a task: created (Exec), running (Start), stopped (its exit recorded)."""

    __slots__ = (
        "exec_id", "process", "io", "pid", "status", "exit", "exited", "stdin_closed", "console_size", "watcher",
        "lock", "auto_delete",
    )

    def __init__(self, exec_id: str, process: dict[str, Any], io: ExecIO | None, auto_delete: bool) -> None:
        self.exec_id = exec_id
        self.process = process
        self.io = io
        self.pid = 0
        self.status = p.STATUS_CREATED
        self.exit: TaskExit | None = None
        self.exited = asyncio.Event()
        self.stdin_closed = False
        self.console_size: tuple[int, int] | None = None  # (width, height) asked for before the start
        self.watcher: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()
        self.auto_delete = auto_delete  # Docker's execs: never deleted by a client, dropped when old


class _Task:
    """Mutable bookkeeping of one task (internal; callers get TaskInfo snapshots)."""

    __slots__ = (
        "namespace", "container_id", "bundle", "socket_path", "pid", "status", "exit", "shim_pid",
        "shim_start_time", "client", "watcher", "exited", "lock", "starting", "exit_published", "execs",
    )

    def __init__(self, namespace: str, container_id: str, bundle: Path, socket_path: Path) -> None:
        self.namespace = namespace
        self.container_id = container_id
        self.bundle = bundle
        self.socket_path = socket_path
        self.pid = 0
        self.status = p.STATUS_UNKNOWN
        self.exit: TaskExit | None = None
        self.shim_pid = 0
        self.shim_start_time = 0
        self.client = ShimClient(socket_path)
        self.watcher: asyncio.Task[None] | None = None
        self.exited = asyncio.Event()
        self.lock = asyncio.Lock()
        self.starting = False
        self.exit_published = False
        self.execs: dict[str, _Exec] = {}

    def info(self) -> TaskInfo:
        return TaskInfo(
            namespace=self.namespace, container_id=self.container_id, pid=self.pid, status=self.status,
            exit_status=self.exit.exit_status if self.exit else None,
            exited_at=self.exit.exited_at if self.exit else None, bundle=self.bundle,
            oom_killed=self.exit.oom_killed if self.exit else False,
        )

    def shim_alive(self) -> bool:
        return p.process_alive(self.shim_pid, self.shim_start_time)


def _not_found(container_id: str) -> errors.NotFound:
    return errors.NotFound(f"no running task found: task {container_id} not found")


def _validate_name(kind: str, value: str) -> None:
    if not value or "/" in value or value in (".", "..") or "\x00" in value:
        raise errors.InvalidArgument(f"invalid {kind} {value!r}")


TaskInfoList = list[TaskInfo]
PidList = list[int]
BundleList = list[tuple[str, str, Path]]


class TaskManager:
    def __init__(self, *, exec_root: Path, runtime: str, events: EventExchange, grpc_socket: Path) -> None:
        self.exec_root = Path(exec_root)
        self.runtime = runtime
        self.events = events
        self.grpc_socket = Path(grpc_socket)
        self._factory = ShimFactory()
        self._tasks: dict[tuple[str, str], _Task] = {}
        self._reserved: set[tuple[str, str]] = set()
        self._runtime_path = ""
        self._created_waiters: dict[tuple[str, str], list[asyncio.Future[None]]] = {}

    # --- lifecycle of the manager ----------------------------------------------------------------------------

    async def start(self) -> None:
        runtime_path = shutil.which(self.runtime) if "/" not in self.runtime else self.runtime
        if not runtime_path:
            raise errors.InvalidArgument(f"runtime {self.runtime!r}: executable file not found in $PATH")
        self._runtime_path = os.path.abspath(runtime_path)
        await asyncio.to_thread(self._make_dirs)
        await self._factory.start()

    def _make_dirs(self) -> None:
        for path in (self.exec_root, self.exec_root / "s", self.exec_root / "runc"):
            path.mkdir(parents=True, exist_ok=True)
        (self.exec_root / "s").chmod(0o711)

    async def close(self) -> None:
        """Forget the tasks and stop the factory; shims and containers keep running."""
        watchers = [t.watcher for t in self._tasks.values() if t.watcher is not None]
        watchers += [e.watcher for t in self._tasks.values() for e in t.execs.values() if e.watcher is not None]
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        await asyncio.gather(*(t.client.close() for t in self._tasks.values()), return_exceptions=True)
        self._tasks.clear()
        await self._factory.close()

    # --- queries ---------------------------------------------------------------------------------------------

    def _task(self, namespace: str, container_id: str) -> _Task:
        task = self._tasks.get((namespace, container_id))
        if task is None:
            raise _not_found(container_id)
        return task

    def get(self, namespace: str, container_id: str) -> TaskInfo:
        return self._task(namespace, container_id).info()

    def list(self, namespace: str) -> TaskInfoList:
        return [t.info() for (ns, _), t in sorted(self._tasks.items()) if ns == namespace]

    def runc_root(self, namespace: str) -> Path:
        return self.exec_root / "runc" / namespace

    def bundle_path(self, namespace: str, container_id: str) -> Path:
        return self.exec_root / namespace / container_id

    # --- create ----------------------------------------------------------------------------------------------

    async def create(self, spec: TaskSpec) -> TaskInfo:
        ns, cid = spec.namespace, spec.container_id
        _validate_name("namespace", ns)
        _validate_name("container id", cid)
        if ns in RESERVED_DIRS:
            raise errors.InvalidArgument(f"namespace {ns!r} is reserved by the runtime")
        key = (ns, cid)
        if key in self._tasks or key in self._reserved:
            raise errors.AlreadyExists(f"task {cid}: already exists")
        self._reserved.add(key)
        try:
            return await self._create(spec)
        finally:
            self._reserved.discard(key)

    async def _create(self, spec: TaskSpec) -> TaskInfo:
        ns, cid = spec.namespace, spec.container_id
        bundle = self.bundle_path(ns, cid)
        socket_path = p.control_socket_path(self.exec_root, ns, cid)
        task = _Task(ns, cid, bundle, socket_path)
        made_bundle = False
        try:
            await asyncio.to_thread(self._prepare_bundle, spec, bundle)
            made_bundle = True
            listener = await asyncio.to_thread(_listen, socket_path)
            try:
                request = p.SpawnRequest(ns, cid, str(bundle), str(socket_path), str(self.grpc_socket))
                task.shim_pid = await self._factory.spawn(request, listener)
            finally:
                listener.close()
            task.shim_start_time = p.process_start_time(task.shim_pid) or 0
            response = await task.client.call(
                p.OP_CREATE, timeout=60.0,
                runtime=self._runtime_path, runc_root=str(self.runc_root(ns)),
                log_path=str(spec.log_path) if spec.log_path else None,
                log_max_size=spec.log_max_size, log_max_files=spec.log_max_files, stdin=spec.stdin,
                terminal=spec.terminal,
            )
        except BaseException as exc:
            await self._undo_create(task, made_bundle)
            if isinstance(exc, errors.RuntimeFailure):
                raise errors.RuntimeFailure(f"failed to create shim task: {exc.message}") from None
            if isinstance(exc, ShimUnreachable):
                raise errors.Unavailable(f"failed to create shim task: {exc}") from exc
            raise
        task.pid = int(response["pid"])
        task.status = p.STATUS_CREATED
        self._tasks[(ns, cid)] = task
        task.watcher = asyncio.create_task(self._watch(task))
        for waiter in self._created_waiters.pop((ns, cid), []):
            if not waiter.done():
                waiter.set_result(None)
        self.events.publish(ns, ev.TASK_CREATE, ev.TaskCreate(container_id=cid, bundle=str(bundle), pid=task.pid))
        log.info("task created", namespace=ns, container_id=cid, pid=task.pid, shim_pid=task.shim_pid)
        return task.info()

    def _prepare_bundle(self, spec: TaskSpec, bundle: Path) -> None:
        bundle.parent.mkdir(parents=True, exist_ok=True)
        try:
            bundle.mkdir(mode=0o711)
        except FileExistsError:
            raise errors.AlreadyExists(f"task {spec.container_id}: already exists") from None
        try:
            rootfs = bundle / p.ROOTFS_DIR
            rootfs.mkdir()
            config = dict(spec.spec)
            config["root"] = {**dict(config.get("root") or {}), "path": p.ROOTFS_DIR}
            atomicfile.write_json(bundle / p.CONFIG_FILE, config)
            if spec.rootfs:
                mount_all(spec.rootfs, rootfs)
        except BaseException:
            _remove_bundle(bundle)
            raise

    async def _undo_create(self, task: _Task, made_bundle: bool) -> None:
        """Undo a failed create: stop the shim (it already ran runc delete --force), unmount, remove the bundle."""
        if task.shim_pid:
            try:
                await task.client.call(p.OP_SHUTDOWN, timeout=10.0, now=True)
            except (ShimUnreachable, errors.AiodockError):
                pass
            await task.client.close()
            if not await _wait_gone(task.shim_pid, task.shim_start_time, SHIM_EXIT_TIMEOUT):
                _kill_quietly(task.shim_pid, task.shim_start_time)
                await _wait_gone(task.shim_pid, task.shim_start_time, SHIM_EXIT_TIMEOUT)
            await self._runc_delete_force(task.namespace, task.container_id)
        if made_bundle:  # else the bundle (and its socket) may be another live task's, not loaded yet
            await asyncio.to_thread(_remove_bundle, task.bundle)
            await asyncio.to_thread(_unlink, task.socket_path)

    # --- start / kill / pids ---------------------------------------------------------------------------------

    async def start_task(self, namespace: str, container_id: str) -> TaskInfo:
        task = self._task(namespace, container_id)
        async with task.lock:
            if task.status != p.STATUS_CREATED or task.exit is not None:
                raise errors.FailedPrecondition(f"cannot start a task in state {task.status}")
            task.starting = True
            try:
                response = await task.client.call(p.OP_START, timeout=60.0)
            except BaseException as exc:
                task.starting = False
                self._publish_exit(task)
                if isinstance(exc, ShimUnreachable):
                    raise errors.Unavailable(f"failed to start task {container_id}: {exc}") from exc
                raise
            task.starting = False
            if task.exit is None:
                task.status = p.STATUS_RUNNING
            self.events.publish(namespace, ev.TASK_START, ev.TaskStart(container_id=container_id,
                                                                       pid=int(response["pid"])))
            self._publish_exit(task)  # an exit that raced the start is published after TASK_START
            return task.info()

    async def kill(self, namespace: str, container_id: str, signal: int, all: bool = False) -> None:
        task = self._task(namespace, container_id)
        if task.exit is not None or task.status == p.STATUS_STOPPED:
            raise errors.Conflict(f"cannot kill task {container_id}: process already finished")
        try:
            await task.client.call(p.OP_KILL, signal=int(signal), all=all)
        except ShimUnreachable as exc:
            raise errors.Unavailable(f"cannot kill task {container_id}: {exc}") from exc

    async def pids(self, namespace: str, container_id: str) -> PidList:
        task = self._task(namespace, container_id)
        if task.exit is not None:
            return []
        try:
            response = await task.client.call(p.OP_PIDS)
        except ShimUnreachable as exc:
            raise errors.Unavailable(f"cannot list pids of task {container_id}: {exc}") from exc
        return [int(x) for x in response.get("pids") or []]

    async def close_stdin(self, namespace: str, container_id: str) -> None:
        task = self._task(namespace, container_id)
        try:
            await task.client.call(p.OP_CLOSE_STDIN)
        except ShimUnreachable as exc:
            raise errors.Unavailable(f"cannot close stdin of task {container_id}: {exc}") from exc

    async def wait_created(self, namespace: str, container_id: str) -> None:
        """Return once the task exists and has not exited (at once, or when it is next created)."""
        task = self._tasks.get((namespace, container_id))
        if task is not None and task.exit is None:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._created_waiters.setdefault((namespace, container_id), [])
        waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters and self._created_waiters.get((namespace, container_id)) is waiters:
                del self._created_waiters[(namespace, container_id)]

    async def open_stdin(self, namespace: str, container_id: str) -> TaskStdin:
        """A writer into the task's init-stdin FIFO (the shim holds its read end open while stdin is open)."""
        task = self._task(namespace, container_id)
        try:
            fd = await asyncio.to_thread(_open_fifo_writer, task.bundle / p.STDIN_FIFO)
        except OSError as exc:
            raise errors.FailedPrecondition(f"cannot open stdin of task {container_id}: {exc.strerror}") from exc
        return TaskStdin(fd)

    async def resize(self, namespace: str, container_id: str, width: int, height: int,
                     exec_id: str | None = None) -> None:
        """Set the window size of the task's (or its exec's) terminal."""
        task = self._task(namespace, container_id)
        if task.exit is not None:
            raise errors.Conflict(f"cannot resize task {container_id}: process already finished")
        proc = task.execs.get(exec_id) if exec_id else None
        if proc is not None and proc.status == p.STATUS_CREATED:
            proc.console_size = (width, height)  # applied at the start
            return
        try:
            await task.client.call(p.OP_RESIZE, width=width, height=height, exec_id=exec_id)
        except ShimUnreachable as exc:
            raise errors.Unavailable(f"cannot resize task {container_id}: {exc}") from exc

    # --- pause / resume --------------------------------------------------------------------------------------

    async def pause(self, namespace: str, container_id: str) -> None:
        await self._freezer(namespace, container_id, p.OP_PAUSE, p.STATUS_PAUSED)

    async def resume(self, namespace: str, container_id: str) -> None:
        await self._freezer(namespace, container_id, p.OP_RESUME, p.STATUS_RUNNING)

    async def _freezer(self, namespace: str, container_id: str, op: str, status: str) -> None:
        task = self._task(namespace, container_id)
        if task.exit is not None or task.status == p.STATUS_STOPPED:
            raise errors.Conflict(f"cannot {op} task {container_id}: process already finished")
        try:
            await task.client.call(op)
        except ShimUnreachable as exc:
            raise errors.Unavailable(f"cannot {op} task {container_id}: {exc}") from exc
        if task.exit is None:
            task.status = status
        event = ev.TaskPaused(container_id) if op == p.OP_PAUSE else ev.TaskResumed(container_id)
        self.events.publish(namespace, ev.TASK_PAUSED if op == p.OP_PAUSE else ev.TASK_RESUMED, event)

    # --- update ----------------------------------------------------------------------------------------------

    async def update(self, namespace: str, container_id: str, resources: dict[str, Any]) -> None:
        """Apply OCI LinuxResources to the live task (`runc update` in its shim); absent fields stay as they are."""
        task = self._task(namespace, container_id)
        if task.exit is not None or task.status == p.STATUS_STOPPED:
            raise errors.Conflict(f"cannot update task {container_id}: process already finished")
        try:
            await task.client.call(p.OP_UPDATE, resources=resources)
        except ShimUnreachable as exc:
            raise errors.Unavailable(f"cannot update task {container_id}: {exc}") from exc

    # --- metrics ---------------------------------------------------------------------------------------------

    async def metrics(self, namespace: str, container_id: str) -> tuple[int, dict[str, Any]] | None:
        """One cgroup reading of the task: (cgroup version, fields of containerd's cgroups Metrics); None when
        the task has no cgroup (it is not running)."""
        task = self._task(namespace, container_id)
        if task.exit is not None or task.status not in (p.STATUS_CREATED, p.STATUS_RUNNING, p.STATUS_PAUSED):
            return None
        spec = await self.task_spec(namespace, container_id)
        path = str((spec.get("linux") or {}).get("cgroupsPath") or "")
        if not path or ":" in path:  # no cgroup of our own, or a systemd slice spec (not used by aiodock)
            return None

        def read() -> tuple[int, dict[str, Any]] | None:
            return cgroups.metrics(path) if cgroups.exists(path) else None

        return await asyncio.to_thread(read)

    # --- exec ------------------------------------------------------------------------------------------------

    async def task_spec(self, namespace: str, container_id: str) -> dict[str, Any]:
        """The OCI spec the task runs with (its bundle's config.json)."""
        task = self._task(namespace, container_id)
        try:
            return await asyncio.to_thread(atomicfile.read_json, task.bundle / p.CONFIG_FILE)
        except FileNotFoundError:
            raise _not_found(container_id) from None

    async def exec_output(self, namespace: str, container_id: str, exec_id: str, *, stdout: bool,
                          stderr: bool) -> ExecOutput:
        """Make the exec's output FIFOs and open their read ends; call before exec(), close() when done."""
        task = self._task(namespace, container_id)
        if not p.valid_exec_id(exec_id):
            raise errors.InvalidArgument(f"invalid exec id {exec_id!r}")
        wanted = [name for name, on in (("stdout", stdout), ("stderr", stderr)) if on]
        fds = await asyncio.to_thread(_open_exec_fifos, task.bundle, exec_id, wanted)
        return ExecOutput(fds)

    async def exec_stdin(self, namespace: str, container_id: str, exec_id: str) -> TaskStdin:
        """Make the exec's stdin FIFO and hold it open for writing; call before exec(stdin=True). Closing the
        writer gives the process EOF (with a terminal: stops feeding the pty)."""
        task = self._task(namespace, container_id)
        if not p.valid_exec_id(exec_id):
            raise errors.InvalidArgument(f"invalid exec id {exec_id!r}")
        path = p.exec_fifo(task.bundle, exec_id, "stdin")
        fd = await asyncio.to_thread(_make_fifo_writer, path)
        return TaskStdin(fd, path)

    async def exec(self, namespace: str, container_id: str, exec_id: str, process: dict[str, Any], *,
                   stdout: bool = False, stderr: bool = False, stdin: bool = False) -> int:
        """Run an extra process in the running task (`runc exec -d` in its shim); returns its host pid.
        With stdout/stderr, exec_output() must have been called first: the output goes there; with stdin,
        exec_stdin(). process["terminal"] true: the process gets a pty (stdout carries all its output).
        Docker's exec: created and started at once (events exec-added, exec-started, and exit when it ends)."""
        task = self._task(namespace, container_id)
        self._check_exec_allowed(task, exec_id)
        proc = self._add_exec(task, exec_id, process, None, auto_delete=True)
        async with proc.lock:
            try:
                return await self._start_exec(task, proc, stdout=stdout, stderr=stderr, stdin=stdin)
            except BaseException:
                task.execs.pop(exec_id, None)
                raise

    def _check_exec_allowed(self, task: _Task, exec_id: str) -> None:
        if not p.valid_exec_id(exec_id):
            raise errors.InvalidArgument(f"invalid exec id {exec_id!r}")
        if task.exit is not None or task.status == p.STATUS_STOPPED:
            raise errors.Conflict(f"cannot exec in a stopped state: task {task.container_id}")
        if exec_id in task.execs:
            raise errors.AlreadyExists(f"id {exec_id}: already exists")

    def _add_exec(self, task: _Task, exec_id: str, process: dict[str, Any], io: ExecIO | None,
                  auto_delete: bool) -> _Exec:
        proc = _Exec(exec_id, process, io, auto_delete)
        task.execs[exec_id] = proc
        self.events.publish(task.namespace, ev.TASK_EXEC_ADDED, ev.TaskExecAdded(task.container_id, exec_id))
        return proc

    async def _start_exec(self, task: _Task, proc: _Exec, *, stdout: bool = False, stderr: bool = False,
                          stdin: bool = False) -> int:
        process = dict(proc.process)
        if proc.console_size is not None and process.get("terminal"):
            process["consoleSize"] = {"width": proc.console_size[0], "height": proc.console_size[1]}
        params: dict[str, Any] = {"stdout": stdout, "stderr": stderr, "stdin": stdin}
        if proc.io is not None:
            params = {"stdin_path": proc.io.stdin, "stdout_path": proc.io.stdout, "stderr_path": proc.io.stderr}
        try:
            response = await task.client.call(p.OP_EXEC, timeout=60.0, exec_id=proc.exec_id, process=process,
                                              **params)
        except ShimUnreachable as exc:
            raise errors.Unavailable(f"cannot exec in task {task.container_id}: {exc}") from exc
        proc.pid = int(response["pid"])
        proc.status = p.STATUS_RUNNING
        self.events.publish(task.namespace, ev.TASK_EXEC_STARTED,
                            ev.TaskExecStarted(task.container_id, proc.exec_id, proc.pid))
        proc.watcher = asyncio.create_task(self._watch_exec(task, proc))
        if proc.stdin_closed:  # CloseIO came before the start
            with contextlib.suppress(ShimUnreachable, errors.AiodockError):
                await task.client.call(p.OP_CLOSE_STDIN, exec_id=proc.exec_id)
        return proc.pid

    async def _watch_exec(self, task: _Task, proc: _Exec) -> None:
        """Long-poll the shim for the exec's exit. When the shim goes away first (the container was deleted),
        the process died with it: 137 (SIGKILL)."""
        client = ShimClient(task.socket_path)
        try:
            response = await client.call(p.OP_EXEC_WAIT, timeout=None, exec_id=proc.exec_id)
            raw = {"pid": response.get("pid") or proc.pid, "exit_status": int(response["exit_status"]),
                   "exited_at": response["exited_at"]}
        except (ShimUnreachable, errors.AiodockError):
            raw = {"pid": proc.pid, "exit_status": 128 + int(signals.SIGKILL),
                   "exited_at": p.format_timestamp(time.time_ns())}
        finally:
            await client.close()
        exit_ = TaskExit(container_id=task.container_id, id=proc.exec_id, pid=int(raw["pid"]),
                         exit_status=int(raw["exit_status"]), exited_at=p.parse_timestamp(str(raw["exited_at"])))
        proc.exit = exit_
        proc.status = p.STATUS_STOPPED
        proc.exited.set()
        self.events.publish(task.namespace, ev.TASK_EXIT, exit_)
        old = [e for e in task.execs.values() if e.auto_delete and e.exit is not None]
        for stale in old[:max(0, len(old) - MAX_FINISHED_EXECS)]:
            task.execs.pop(stale.exec_id, None)

    def _exec_of(self, namespace: str, container_id: str, exec_id: str) -> tuple[_Task, _Exec]:
        task = self._task(namespace, container_id)
        proc = task.execs.get(exec_id)
        if proc is None:
            raise errors.NotFound(f"process {exec_id} does not exist: not found")
        return task, proc

    async def exec_wait(self, namespace: str, container_id: str, exec_id: str) -> int:
        """The exec process's exit status (exit code, or 128 + signal), once it has exited."""
        return (await self.wait_process(namespace, container_id, exec_id)).exit_status

    # --- exec processes of containerd's Tasks API (ctr tasks exec) -------------------------------------------

    async def exec_create(self, namespace: str, container_id: str, exec_id: str, process: dict[str, Any],
                          io: ExecIO) -> None:
        """Register an exec process (containerd's Exec); exec_start runs it. Its stdio are the client's FIFOs."""
        task = self._task(namespace, container_id)
        self._check_exec_allowed(task, exec_id)
        if task.status != p.STATUS_RUNNING:
            raise errors.FailedPrecondition(f"container {container_id} is not running: {task.status}")
        self._add_exec(task, exec_id, {**process, "terminal": io.terminal}, io, auto_delete=False)

    async def exec_start(self, namespace: str, container_id: str, exec_id: str) -> int:
        task, proc = self._exec_of(namespace, container_id, exec_id)
        async with proc.lock:
            if proc.status != p.STATUS_CREATED:
                raise errors.FailedPrecondition(f"process {exec_id}: cannot start a process in state {proc.status}")
            if task.exit is not None or task.status == p.STATUS_STOPPED:
                raise errors.FailedPrecondition(f"cannot start exec {exec_id}: container {container_id} is not "
                                                "running")
            return await self._start_exec(task, proc)

    def exec_info(self, namespace: str, container_id: str, exec_id: str) -> TaskInfo:
        task, proc = self._exec_of(namespace, container_id, exec_id)
        return TaskInfo(
            namespace=namespace, container_id=container_id, pid=proc.pid, status=proc.status,
            exit_status=proc.exit.exit_status if proc.exit else None,
            exited_at=proc.exit.exited_at if proc.exit else None, bundle=task.bundle,
        )

    async def wait_process(self, namespace: str, container_id: str, exec_id: str) -> TaskExit:
        """The exit of an exec process (waits through its start)."""
        _, proc = self._exec_of(namespace, container_id, exec_id)
        await proc.exited.wait()
        assert proc.exit is not None
        return proc.exit

    async def exec_kill(self, namespace: str, container_id: str, exec_id: str, signal: int) -> None:
        task, proc = self._exec_of(namespace, container_id, exec_id)
        if proc.status == p.STATUS_CREATED:
            raise errors.FailedPrecondition(f"process {exec_id} is not started")
        if proc.exit is not None:
            raise errors.NotFound("process already finished: not found")
        try:
            await task.client.call(p.OP_KILL, exec_id=exec_id, signal=int(signal))
        except ShimUnreachable as exc:
            raise errors.Unavailable(f"cannot kill process {exec_id}: {exc}") from exc

    async def exec_close_stdin(self, namespace: str, container_id: str, exec_id: str) -> None:
        task, proc = self._exec_of(namespace, container_id, exec_id)
        proc.stdin_closed = True
        if proc.status != p.STATUS_RUNNING:
            return  # not started: closed right after the start; stopped: nothing left to close
        try:
            await task.client.call(p.OP_CLOSE_STDIN, exec_id=exec_id)
        except ShimUnreachable as exc:
            raise errors.Unavailable(f"cannot close stdin of process {exec_id}: {exc}") from exc

    async def exec_delete(self, namespace: str, container_id: str, exec_id: str) -> TaskExit | None:
        """Forget a stopped (or never started) exec process: containerd's DeleteProcess."""
        task, proc = self._exec_of(namespace, container_id, exec_id)
        async with proc.lock:
            if proc.status == p.STATUS_RUNNING:
                raise errors.FailedPrecondition(f"process {exec_id} must be stopped before deletion: running")
            if proc.status == p.STATUS_STOPPED and task.shim_alive():
                with contextlib.suppress(ShimUnreachable, errors.AiodockError):
                    await task.client.call(p.OP_EXEC_DELETE, exec_id=exec_id)
            task.execs.pop(exec_id, None)
            return proc.exit

    # --- exits -----------------------------------------------------------------------------------------------

    async def wait(self, namespace: str, container_id: str) -> TaskExit:
        task = self._task(namespace, container_id)
        await task.exited.wait()
        assert task.exit is not None
        return task.exit

    async def handle_exit(self, namespace: str, exit: TaskExit) -> None:
        """An exit reported by a shim (Events/Forward). Idempotent."""
        task = self._tasks.get((namespace, exit.container_id))
        if task is None or (exit.id and exit.id != exit.container_id):
            return  # unknown task (load_existing will read exit.json) or an exec process (its watcher has it)
        record = await asyncio.to_thread(_read_exit, task.bundle)  # written before the report: it has the OOM flag
        if record is not None and record.oom_killed:
            exit = dataclasses.replace(exit, oom_killed=True)
        self._record_exit(task, exit)

    def _record_exit(self, task: _Task, exit: TaskExit) -> None:
        if task.exit is not None:
            return
        task.exit = exit
        task.status = p.STATUS_STOPPED
        task.exited.set()
        if not task.starting:
            self._publish_exit(task)
        log.info("task exited", namespace=task.namespace, container_id=task.container_id,
                 exit_status=exit.exit_status)

    def _publish_exit(self, task: _Task) -> None:
        if task.exit is None or task.exit_published:
            return
        task.exit_published = True
        self.events.publish(task.namespace, ev.TASK_EXIT, task.exit)

    def _exit_from(self, task: _Task, raw: dict[str, Any]) -> TaskExit:
        return TaskExit(
            container_id=task.container_id, id=task.container_id, pid=int(raw.get("pid") or task.pid),
            exit_status=int(raw["exit_status"]), exited_at=p.parse_timestamp(str(raw["exited_at"])),
            oom_killed=bool(raw.get("oom_killed", False)),
        )

    async def _watch(self, task: _Task) -> None:
        """Keep a long-poll `wait` open on the shim; a lost connection is not an exit while the shim lives."""
        delay = 0.1
        while task.exit is None:
            client = ShimClient(task.socket_path)
            try:
                if task.status == p.STATUS_UNKNOWN:  # loaded while the shim did not answer: ask again
                    state = await client.call(p.OP_STATE, timeout=5.0)
                    task.pid = int(state.get("pid") or task.pid)
                    if task.exit is None:
                        task.status = str(state.get("status") or p.STATUS_UNKNOWN)
                response = await client.call(p.OP_WAIT, timeout=None)
                self._record_exit(task, self._exit_from(task, response))
                return
            except ShimUnreachable:
                pass
            except errors.AiodockError as exc:
                log.warning("shim wait failed", container_id=task.container_id, error=str(exc))
            finally:
                await client.close()
            if not task.shim_alive():
                await self._shim_gone(task)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _shim_gone(self, task: _Task) -> None:
        """The shim process is dead: take its exit.json, or clean up after it with a synthetic 255."""
        record = await asyncio.to_thread(_read_exit, task.bundle)
        if record is not None:
            self._record_exit(task, self._exit_from(task, record.to_json()))
            return
        await self._cleanup_after_dead_shim(task)

    async def _cleanup_after_dead_shim(self, task: _Task) -> None:
        log.warning("shim died without an exit record", namespace=task.namespace, container_id=task.container_id)
        await self._runc_delete_force(task.namespace, task.container_id)
        record = p.ExitRecord(task.pid, DEAD_SHIM_EXIT_STATUS, p.format_timestamp(time.time_ns()))

        def persist() -> None:
            unmount(task.bundle / p.ROOTFS_DIR)
            atomicfile.write_json(task.bundle / p.EXIT_FILE, record.to_json())
            _unlink(task.socket_path)

        await asyncio.to_thread(persist)
        self._record_exit(task, self._exit_from(task, record.to_json()))

    async def _runc_delete_force(self, namespace: str, container_id: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            self._runtime_path, "--root", str(self.runc_root(namespace)), "delete", "--force", container_id,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await proc.communicate()
        if proc.returncode and b"does not exist" not in stderr:
            log.warning("runc delete --force failed", container_id=container_id, error=stderr.decode().strip())

    # --- delete ----------------------------------------------------------------------------------------------

    async def delete(self, namespace: str, container_id: str, force: bool = False) -> TaskExit | None:
        task = self._task(namespace, container_id)
        async with task.lock:
            if task.exit is None and task.status in (p.STATUS_RUNNING, p.STATUS_PAUSED) and not force:
                raise errors.FailedPrecondition(f"task must be stopped before deletion: {task.status}")
            if task.watcher is not None:
                task.watcher.cancel()
                await asyncio.gather(task.watcher, return_exceptions=True)
                task.watcher = None
            response: dict[str, Any] | None = None
            began = time.perf_counter()
            answered = gone_at = began
            if task.shim_alive():
                try:
                    response = await task.client.call(p.OP_DELETE, timeout=FORCE_KILL_TIMEOUT + 20.0, force=force)
                    answered = time.perf_counter()
                except ShimUnreachable:
                    response = None
                except errors.AiodockError:
                    if task.exit is None:  # the task lives on: keep watching it
                        task.watcher = asyncio.create_task(self._watch(task))
                    raise
                await task.client.close()
                gone = await _wait_gone(task.shim_pid, task.shim_start_time, SHIM_EXIT_TIMEOUT)
                gone_at = time.perf_counter()
                if not gone and response is None:  # alive but not answering: no choice left
                    _kill_quietly(task.shim_pid, task.shim_start_time)
                    await _wait_gone(task.shim_pid, task.shim_start_time, SHIM_EXIT_TIMEOUT)
            if response is not None and response.get("exit_status") is not None:
                self._record_exit(task, self._exit_from(task, response))
            elif task.exit is None:
                await self._shim_gone(task)
            else:
                await self._runc_delete_force(namespace, container_id)
            await asyncio.to_thread(_remove_bundle, task.bundle)
            await asyncio.to_thread(_unlink, task.socket_path)
            self._tasks.pop((namespace, container_id), None)
            exit_ = task.exit
            if exit_ is not None:
                self._publish_exit(task)
                self.events.publish(namespace, ev.TASK_DELETE, ev.TaskDelete(
                    container_id=container_id, pid=exit_.pid, exit_status=exit_.exit_status,
                    exited_at=exit_.exited_at,
                ))
            log.info("task deleted", namespace=namespace, container_id=container_id,
                     shim_ms=round((answered - began) * 1000, 1), shim_exit_ms=round((gone_at - answered) * 1000, 1),
                     cleanup_ms=round((time.perf_counter() - gone_at) * 1000, 1))
            return exit_

    # --- restart recovery ------------------------------------------------------------------------------------

    async def load_existing(self) -> TaskInfoList:
        """Find the tasks of a previous daemon run (bounded by LOAD_TIMEOUT)."""
        bundles = await asyncio.to_thread(self._scan_bundles)

        async def one(ns: str, cid: str, bundle: Path) -> TaskInfo | None:
            try:
                async with asyncio.timeout(LOAD_ONE_TIMEOUT):
                    return await self._load_one(ns, cid, bundle)
            except TimeoutError:
                log.warning("loading task timed out", namespace=ns, container_id=cid)
            except Exception as exc:  # noqa: BLE001 - one broken bundle must not stop the daemon
                log.warning("loading task failed", namespace=ns, container_id=cid, error=repr(exc))
            return None

        async with asyncio.timeout(LOAD_TIMEOUT):
            results = await asyncio.gather(*(one(ns, cid, bundle) for ns, cid, bundle in bundles))
        return [info for info in results if info is not None]

    def _scan_bundles(self) -> BundleList:
        found: BundleList = []
        if not self.exec_root.is_dir():
            return found
        for ns_dir in sorted(self.exec_root.iterdir()):
            if ns_dir.name in RESERVED_DIRS or not ns_dir.is_dir() or ns_dir.is_symlink():
                continue
            for bundle in sorted(ns_dir.iterdir()):
                if bundle.is_dir() and not bundle.is_symlink():
                    found.append((ns_dir.name, bundle.name, bundle))
        return found

    async def _load_one(self, ns: str, cid: str, bundle: Path) -> TaskInfo | None:
        if (ns, cid) in self._tasks:
            return self._tasks[(ns, cid)].info()
        bootstrap, record, init_pid = await asyncio.to_thread(_read_bundle_state, bundle)
        task = _Task(ns, cid, bundle, p.control_socket_path(self.exec_root, ns, cid))
        task.pid = init_pid
        if bootstrap is None and record is None:
            # Half-made (the daemon died during create): nothing ran here for long; clean it.
            log.info("removing an incomplete bundle", namespace=ns, container_id=cid)
            await self._runc_delete_force(ns, cid)
            await asyncio.to_thread(_remove_bundle, bundle)
            await asyncio.to_thread(_unlink, task.socket_path)
            return None
        if bootstrap is not None:
            task.shim_pid, task.shim_start_time = bootstrap.shim_pid, bootstrap.shim_start_time
            task.socket_path = Path(bootstrap.address)
            task.client = ShimClient(task.socket_path)
        self._tasks[(ns, cid)] = task
        if record is not None:
            task.pid = record.pid or task.pid
            self._record_exit(task, self._exit_from(task, record.to_json()))
            return task.info()
        if task.shim_alive():
            try:
                state = await task.client.call(p.OP_STATE, timeout=3.0)
            except (ShimUnreachable, errors.AiodockError) as exc:
                log.warning("shim alive but not answering", container_id=cid, error=str(exc))
                state = {"status": p.STATUS_UNKNOWN, "pid": task.pid}
            if not state.get("pid") and state.get("exit_status") is None:
                # The daemon died between spawning the shim and `create`: nothing to keep.
                self._tasks.pop((ns, cid), None)
                await self._undo_create(task, made_bundle=True)
                return None
            task.pid = int(state.get("pid") or task.pid)
            task.status = str(state.get("status") or p.STATUS_UNKNOWN)
            if state.get("exit_status") is not None:
                self._record_exit(task, self._exit_from(task, state))
            else:
                task.watcher = asyncio.create_task(self._watch(task))
            return task.info()
        if not task.pid and not await asyncio.to_thread(_read_exit, bundle):
            self._tasks.pop((ns, cid), None)  # the shim died before any container was created
            await self._undo_create(task, made_bundle=True)
            return None
        await self._shim_gone(task)
        return task.info()


class ExecOutput:
    """The read ends of one exec's output FIFOs: chunks() yields (stream, data) until every writer is gone."""

    def __init__(self, fds: dict[str, tuple[int, Path]]) -> None:
        self._fds = fds
        self._queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        self._open: set[str] = set()
        self._started = False

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(self._fds)

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._started = True
        for name, (fd, _) in self._fds.items():
            self._open.add(name)
            loop.add_reader(fd, self._on_readable, name, fd)
        if not self._open:
            self._queue.put_nowait(None)

    def _on_readable(self, name: str, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._queue.put_nowait((name, data))
            return
        asyncio.get_running_loop().remove_reader(fd)
        self._open.discard(name)
        if not self._open:
            self._queue.put_nowait(None)

    async def chunks(self) -> AsyncIterator[tuple[str, bytes]]:
        """Call once, after the exec started (before that a FIFO without a writer reads as EOF)."""
        if not self._started:
            self._start()
        while (item := await self._queue.get()) is not None:
            yield item

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        paths = []
        for fd, path in self._fds.values():
            if self._started:
                loop.remove_reader(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
            paths.append(path)
        self._fds = {}
        self._open.clear()
        self._queue.put_nowait(None)
        for path in paths:
            await asyncio.to_thread(_unlink, path)


class TaskStdin:
    """The write end of a task's init-stdin FIFO (non-blocking; writes wait for room on the event loop)."""

    def __init__(self, fd: int, path: Path | None = None) -> None:
        self._fd = fd
        self._path = path  # an exec's FIFO: removed on close

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._fd < 0:
                raise BrokenPipeError("stdin is closed")
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                await self._writable()
                continue
            view = view[written:]

    async def _writable(self) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        fd = self._fd
        loop.add_writer(fd, _resolve, ready)
        try:
            await ready
        finally:
            loop.remove_writer(fd)

    async def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
        path, self._path = self._path, None
        if path is not None:
            await asyncio.to_thread(_unlink, path)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# --- blocking helpers (run in threads) -----------------------------------------------------------------------


def _listen(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    _unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(64)
    except BaseException:
        sock.close()
        raise
    return sock


def _open_exec_fifos(bundle: Path, exec_id: str, streams: list[str]) -> dict[str, tuple[int, Path]]:
    opened: dict[str, tuple[int, Path]] = {}
    try:
        for name in streams:
            path = p.exec_fifo(bundle, exec_id, name)
            _unlink(path)
            os.mkfifo(path, 0o600)
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.close(fd)
                raise errors.InternalError(f"{path} is not a FIFO")
            opened[name] = (fd, path)
    except BaseException:
        for fd, path in opened.values():
            os.close(fd)
            _unlink(path)
        raise
    return opened


def _open_fifo_writer(path: Path) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(0, f"{path} is not a FIFO")
    return fd


def _make_fifo_writer(path: Path) -> int:
    """A new FIFO, open read-write (so opening never waits for a reader) and non-blocking."""
    _unlink(path)
    os.mkfifo(path, 0o600)
    try:
        return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except BaseException:
        _unlink(path)
        raise


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _remove_bundle(bundle: Path) -> None:
    rootfs = bundle / p.ROOTFS_DIR
    unmount(rootfs)
    if rootfs.is_dir() and any(rootfs.iterdir()):
        raise errors.InternalError(f"refusing to remove {bundle}: rootfs is not empty after unmount")
    shutil.rmtree(bundle, ignore_errors=False)


def _read_exit(bundle: Path) -> p.ExitRecord | None:
    try:
        return p.ExitRecord.from_json(atomicfile.read_json(bundle / p.EXIT_FILE))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def _read_bundle_state(bundle: Path) -> tuple[p.Bootstrap | None, p.ExitRecord | None, int]:
    bootstrap: p.Bootstrap | None
    try:
        bootstrap = p.Bootstrap.from_json(atomicfile.read_json(bundle / p.BOOTSTRAP_FILE))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        bootstrap = None
    try:
        init_pid = int((bundle / p.INIT_PID_FILE).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        init_pid = 0
    return bootstrap, _read_exit(bundle), init_pid


async def _wait_gone(pid: int, start_time: int, timeout: float) -> bool:
    """Whether the process (pid and start time) is gone within ``timeout``: told by its pidfd becoming readable
    at its exit (no polling delay), or by polling /proc every 10 ms where pidfd_open is refused."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # gone already (ESRCH), or a kernel without pidfd
        pidfd = -1
    loop = asyncio.get_running_loop()
    try:
        if not p.process_alive(pid, start_time):  # after pidfd_open: the pidfd is of this very process
            return True
        if pidfd >= 0:
            exited: asyncio.Future[None] = loop.create_future()

            def readable() -> None:
                if not exited.done():
                    exited.set_result(None)

            loop.add_reader(pidfd, readable)
            try:
                await asyncio.wait_for(exited, timeout)
                return True
            except TimeoutError:
                return False
            finally:
                loop.remove_reader(pidfd)
        deadline = loop.time() + timeout
        while p.process_alive(pid, start_time):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def _kill_quietly(pid: int, start_time: int) -> None:
    if p.process_alive(pid, start_time):
        try:
            os.kill(pid, signals.SIGKILL)
        except ProcessLookupError:
            pass
