"""The per-container shim: an asyncio program in a process forked from the shim factory.

It is a child subreaper, so the container init is re-parented to it when `runc create` exits; one SIGCHLD
reaper owns wait(). It serves the JSON-lines control protocol of aiodock.shim.protocol on the socket the daemon
bound, writes the container's json-file log itself, and on init exit drains the output, fsyncs the log, writes
exit.json durably, and only then reports the exit to the daemon (Events/Forward, retried with backoff).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import stat
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from aiodock.shim import protocol as p
from aiodock.shim.io import ContainerIO, Pump, set_window_size
from aiodock.shim.reaper import Exit, Reaper, set_process_name, set_subreaper
from aiodock.shim.runc import Runc, RuncError
from aiodock.util import atomicfile

DRAIN_TIMEOUT = 2.0
DELETE_WAIT_TIMEOUT = 10.0
CREATE_TIMEOUT = 120.0  # a daemon that spawned us and died before `create`
CONSOLE_TIMEOUT = 10.0  # runc sends the pty master before `runc create` / `runc exec -d` returns


class ShimError(Exception):
    def __init__(self, message: str, kind: str = "InternalError") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{stamp} shim[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


class _ExecProcess:
    """One `runc exec -d` process of this container, reaped by the shim's reaper."""

    __slots__ = ("pid", "exit", "exited", "console_fd", "console", "stdio")

    def __init__(self, pid: int, console: _ExecConsole | None = None, stdio: _ClientStdio | None = None) -> None:
        self.pid = pid
        self.console = console
        self.console_fd = console.master if console is not None else -1  # resize
        self.stdio = stdio  # the client's FIFOs (ctr), when it passed their paths
        self.exit: p.ExitRecord | None = None
        self.exited = asyncio.Event()

    def close_io(self) -> None:
        if self.console is not None:
            self.console.close()
            self.console_fd = -1
        if self.stdio is not None:
            self.stdio.close()


class Shim:
    def __init__(self, request: p.SpawnRequest, listen_fd: int) -> None:
        self.request = request
        self.bundle = request.bundle
        self.container_id = request.container_id
        self.listen_fd = listen_fd
        self.status = "new"
        self.init_pid = 0
        self.exit: p.ExitRecord | None = None
        self.io: ContainerIO | None = None
        self.runc: Runc | None = None
        self._loop = asyncio.get_running_loop()
        self._reaper = Reaper(self._loop)
        self._exited = asyncio.Event()
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._forwarder: asyncio.Task[None] | None = None
        self._runc_deleted: asyncio.Task[None] | None = None
        self._execs: dict[str, _ExecProcess] = {}

    # --- lifecycle -------------------------------------------------------------------------------------------

    async def serve(self) -> int:
        self._reaper.install()
        start_time = p.process_start_time(os.getpid()) or 0
        bootstrap = p.Bootstrap(p.BOOTSTRAP_VERSION, self.request.socket_path, p.PROTOCOL, os.getpid(), start_time)
        atomicfile.write_json(Path(self.bundle) / p.BOOTSTRAP_FILE, bootstrap.to_json())
        listener = socket.socket(fileno=self.listen_fd)
        server = await asyncio.start_unix_server(self._connection, sock=listener, limit=p.MAX_LINE)
        log(f"serving {self.request.namespace}/{self.container_id} on {self.request.socket_path}")
        self._loop.call_later(CREATE_TIMEOUT, self._give_up_without_create)
        await self._stop.wait()
        server.close()
        if self._forwarder is not None:
            self._forwarder.cancel()
        if self.io is not None:
            self.io.close()
        try:
            os.unlink(self.request.socket_path)
        except FileNotFoundError:
            pass
        log("exiting")
        return 0

    def _give_up_without_create(self) -> None:
        if self.status == "new":
            log(f"no create request within {CREATE_TIMEOUT:.0f} s: exiting")
            self._stop.set()

    def _spawn_background(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # --- connections -----------------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while not reader.at_eof():
                line = await reader.readline()
                if not line:
                    break
                response = await self._dispatch(line)
                writer.write(p.encode(response))
                await writer.drain()
                if response.get("_stop"):
                    self._stop.set()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            raise
        finally:
            writer.close()

    async def _dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            request = p.decode(line)
            op = request.get("op")
            handler = self._handlers().get(str(op))
            if handler is None:
                raise ShimError(f"unknown shim op {op!r}", "InvalidArgument")
            response: dict[str, Any] = await handler(request)
            return response
        except ShimError as exc:
            return p.error_response(exc.message, exc.kind)
        except (ValueError, KeyError, TypeError) as exc:
            return p.error_response(f"bad shim request: {exc}", "InvalidArgument")
        except Exception as exc:  # noqa: BLE001 - report, never kill the shim
            log(f"op failed: {exc!r}")
            return p.error_response(str(exc) or repr(exc), "InternalError")

    def _handlers(self) -> dict[str, Any]:
        return {
            p.OP_CREATE: self.create,
            p.OP_START: self.start,
            p.OP_STATE: self.state,
            p.OP_KILL: self.kill,
            p.OP_PIDS: self.pids,
            p.OP_WAIT: self.wait,
            p.OP_DELETE: self.delete,
            p.OP_SHUTDOWN: self.shutdown,
            p.OP_CLOSE_STDIN: self.close_stdin,
            p.OP_PAUSE: self.pause,
            p.OP_RESUME: self.resume,
            p.OP_EXEC: self.exec,
            p.OP_EXEC_STATE: self.exec_state,
            p.OP_EXEC_WAIT: self.exec_wait,
            p.OP_EXEC_DELETE: self.exec_delete,
            p.OP_RESIZE: self.resize,
            p.OP_UPDATE: self.update,
        }

    # --- ops -------------------------------------------------------------------------------------------------

    async def create(self, request: dict[str, Any]) -> dict[str, Any]:
        async with self._lock:
            if self.status != "new":
                raise ShimError(f"task {self.container_id}: already exists", "AlreadyExists")
            self.runc = Runc(
                binary=str(request["runtime"]),
                root=str(request["runc_root"]),
                log_path=os.path.join(self.bundle, p.RUNC_LOG_FILE),
            )
            max_size = request.get("log_max_size")
            self.io = ContainerIO(
                self._loop, self.bundle, request.get("log_path") or None,
                int(max_size) if max_size else None, int(request.get("log_max_files") or 1),
                bool(request.get("stdin")), bool(request.get("terminal")),
            )
            self.io.prepare()
            pid_file = os.path.join(self.bundle, p.INIT_PID_FILE)
            console = _ConsoleSocket(p.console_socket_path(self.request.socket_path, "c")) \
                if self.io.terminal else None
            master = -1
            try:
                args = ["create", "--bundle", self.bundle, "--pid-file", pid_file]
                if console is not None:
                    args += ["--console-socket", console.path]
                await self.runc.run(
                    self._reaper, args + [self.container_id],
                    stdin=self.io.child_stdin, stdout=self.io.child_stdout, stderr=self.io.child_stderr,
                )
                if console is not None:
                    master = await console.master()
            except (RuncError, OSError, TimeoutError) as exc:
                self.io.abandon()
                self.io = None
                await self._force_delete_quietly()
                self.status = "failed"
                message = exc.message if isinstance(exc, RuncError) else f"console socket: {exc!r}"
                raise ShimError(f"OCI runtime create failed: {message}: unknown", "RuntimeFailure") from exc
            finally:
                if console is not None:
                    console.close()
            self.io.start(master)
            with open(pid_file) as fh:
                self.init_pid = int(fh.read().strip())
            self.status = p.STATUS_CREATED
            self._spawn_background(self._monitor_init(self._reaper.watch(self.init_pid)))
            log(f"created, init pid {self.init_pid}")
            return {"pid": self.init_pid}

    async def start(self, request: dict[str, Any]) -> dict[str, Any]:
        async with self._lock:
            if self.status != p.STATUS_CREATED or self.runc is None:
                if self.status == p.STATUS_STOPPED:
                    raise ShimError("process already finished", "Conflict")
                raise ShimError(f"cannot start a task in state {self.status}", "FailedPrecondition")
            try:
                await self.runc.run(self._reaper, ["start", self.container_id])
            except RuncError as exc:
                raise ShimError(f"OCI runtime start failed: {exc.message}: unknown", "RuntimeFailure") from exc
            if self.status == p.STATUS_CREATED:
                self.status = p.STATUS_RUNNING
            return {"pid": self.init_pid}

    async def state(self, request: dict[str, Any]) -> dict[str, Any]:
        status = self.status if self.status in (p.STATUS_CREATED, p.STATUS_RUNNING, p.STATUS_STOPPED) \
            else p.STATUS_UNKNOWN
        if status == p.STATUS_RUNNING and self.runc is not None:
            status = await self._runc_status() or status
        return {
            "pid": self.init_pid,
            "status": status,
            "exit_status": self.exit.exit_status if self.exit else None,
            "exited_at": self.exit.exited_at if self.exit else None,
        }

    async def _runc_status(self) -> str | None:
        assert self.runc is not None
        try:
            out = await self.runc.run(self._reaper, ["state", self.container_id], capture=True)
            value = json.loads(out).get("status")
        except (RuncError, ValueError):
            return None
        if self.exit is not None:
            return p.STATUS_STOPPED
        return str(value) if value in (p.STATUS_RUNNING, p.STATUS_PAUSED, p.STATUS_CREATED) else None

    async def kill(self, request: dict[str, Any]) -> dict[str, Any]:
        sig = int(request.get("signal") or signal.SIGTERM)
        kill_all = bool(request.get("all"))
        if request.get("exec_id"):  # an exec process: signalled directly, as containerd's shim does
            proc = self._exec(request)
            if proc.exit is not None:
                raise ShimError("process already finished: not found", "NotFound")
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError as exc:
                raise ShimError("process already finished: not found", "NotFound") from exc
            return {}
        if self.runc is None or self.status not in (p.STATUS_CREATED, p.STATUS_RUNNING):
            if self.status == p.STATUS_STOPPED and not kill_all:
                raise ShimError("process already finished", "Conflict")
            if self.status != p.STATUS_STOPPED:
                raise ShimError(f"no running task found: task {self.container_id} not found", "NotFound")
        assert self.runc is not None
        args = ["kill"] + (["--all"] if kill_all else []) + [self.container_id, str(sig)]
        try:
            await self.runc.run(self._reaper, args)
        except RuncError as exc:
            if self._exited.is_set() or "not running" in exc.message:
                raise ShimError("process already finished", "Conflict") from exc
            raise ShimError(exc.message, "InternalError") from exc
        return {}

    async def pids(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.runc is None or self.status not in (p.STATUS_CREATED, p.STATUS_RUNNING, p.STATUS_STOPPED):
            raise ShimError(f"no running task found: task {self.container_id} not found", "NotFound")
        try:
            out = await self.runc.run(self._reaper, ["ps", "--format", "json", self.container_id], capture=True)
        except RuncError as exc:
            if self._exited.is_set():
                return {"pids": []}
            raise ShimError(exc.message, "InternalError") from exc
        pids = json.loads(out or b"[]") or []
        return {"pids": [int(x) for x in pids]}

    async def wait(self, request: dict[str, Any]) -> dict[str, Any]:
        await self._exited.wait()
        assert self.exit is not None
        return self.exit.to_json()

    async def pause(self, request: dict[str, Any]) -> dict[str, Any]:
        await self._freezer("pause")
        return {}

    async def resume(self, request: dict[str, Any]) -> dict[str, Any]:
        await self._freezer("resume")
        return {}

    async def _freezer(self, command: str) -> None:
        if self.runc is None or self.status != p.STATUS_RUNNING or self._exited.is_set():
            raise ShimError(f"container {self.container_id} is not running", "FailedPrecondition")
        try:
            await self.runc.run(self._reaper, [command, self.container_id])
        except RuncError as exc:
            raise ShimError(f"OCI runtime {command} failed: {exc.message}: unknown", "RuntimeFailure") from exc

    async def update(self, request: dict[str, Any]) -> dict[str, Any]:
        """`runc update --resources <file>`: the cgroup limits of the live container (paused ones too)."""
        resources = request["resources"]
        if not isinstance(resources, dict):
            raise ShimError("update: resources must be a JSON object", "InvalidArgument")
        if self.runc is None or self.status not in (p.STATUS_CREATED, p.STATUS_RUNNING) or self._exited.is_set():
            raise ShimError(f"container {self.container_id} is not running", "FailedPrecondition")
        path = os.path.join(self.bundle, p.UPDATE_RESOURCES_FILE)
        async with self._lock:  # one update at a time: they share the file
            atomicfile.write_json(Path(path), resources)  # small; the shim may block
            try:
                await self.runc.run(self._reaper, ["update", "--resources", path, self.container_id])
            except RuncError as exc:
                raise ShimError(f"OCI runtime update failed: {exc.message}: unknown", "RuntimeFailure") from exc
            finally:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        return {}

    async def exec(self, request: dict[str, Any]) -> dict[str, Any]:
        """`runc exec -d`. Its stdio: the daemon's FIFOs in the bundle (stdout/stderr/stdin flags, Docker's exec),
        or the client's own FIFOs when their paths are given (stdin_path/stdout_path/stderr_path, ctr's exec)."""
        exec_id = str(request["exec_id"])
        if not p.valid_exec_id(exec_id):
            raise ShimError(f"invalid exec id {exec_id!r}", "InvalidArgument")
        process = request["process"]
        if not isinstance(process, dict):
            raise ShimError("exec: process must be a JSON object", "InvalidArgument")
        if self.runc is None or self.status != p.STATUS_RUNNING or self._exited.is_set():
            raise ShimError(f"container {self.container_id} is not running", "FailedPrecondition")
        if exec_id in self._execs:
            raise ShimError(f"id {exec_id}: already exists", "AlreadyExists")
        base = os.path.join(self.bundle, f"{p.EXEC_PREFIX}{exec_id}")
        process_path, pid_path = base + ".json", base + ".pid"
        terminal = bool(process.get("terminal"))
        client_paths = {name: str(request.get(f"{name}_path") or "") for name in ("stdin", "stdout", "stderr")}
        stdio = _ClientStdio(self._loop, exec_id, client_paths, terminal) if any(client_paths.values()) else None
        atomicfile.write_json(Path(process_path), process)  # small; the shim may block
        fds: dict[str, int] = {}
        console_socket = _ConsoleSocket(p.console_socket_path(self.request.socket_path, f"e{next(_SEQ)}")) \
            if terminal else None
        console: _ExecConsole | None = None
        out_fd = in_fd = -1
        try:
            args = ["exec", "--process", process_path, "--pid-file", pid_path, "--detach"]
            if terminal:
                # runc's own stdio is /dev/null; the process gets the pty slave. The shim copies the master to
                # the stdout FIFO and the stdin FIFO to the master.
                assert console_socket is not None
                args += ["--tty", "--console-socket", console_socket.path]
                for stream in ("stdin", "stdout", "stderr"):
                    fds[stream] = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                if stdio is not None:
                    out_fd, in_fd = stdio.take_for_console()
                else:
                    out_fd = _open_exec_output(self.bundle, exec_id, "stdout", bool(request.get("stdout")),
                                               blocking=False)
                    in_fd = _open_exec_input(self.bundle, exec_id, bool(request.get("stdin")), blocking=False)
            elif stdio is not None:
                fds, stdio.child = stdio.child, {}
            else:
                for stream in ("stdout", "stderr"):
                    fds[stream] = _open_exec_output(self.bundle, exec_id, stream, bool(request.get(stream)))
                fds["stdin"] = _open_exec_input(self.bundle, exec_id, bool(request.get("stdin")))
            try:
                await self.runc.run(self._reaper, args + [self.container_id],
                                    stdin=fds["stdin"], stdout=fds["stdout"], stderr=fds["stderr"])
                if console_socket is not None:
                    master = await console_socket.master()
                    console, out_fd, in_fd = _ExecConsole(self._loop, master, out_fd, in_fd), -1, -1
            except RuncError as exc:
                raise ShimError(f"OCI runtime exec failed: {exc.message}: unknown", "RuntimeFailure") from exc
            except (OSError, TimeoutError) as exc:
                raise ShimError(f"OCI runtime exec failed: console socket: {exc!r}: unknown",
                                "RuntimeFailure") from exc
            with open(pid_path) as fh:
                pid = int(fh.read().strip())
        except BaseException:
            if console is not None:
                console.close()
            if stdio is not None:
                stdio.close()
            raise
        finally:
            if console_socket is not None:
                console_socket.close()
            for fd in [*fds.values(), out_fd, in_fd]:
                if fd >= 0:
                    os.close(fd)
            for path in (process_path, pid_path):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        if stdio is not None and not terminal:
            stdio.start()
        proc = _ExecProcess(pid, console, stdio)
        self._execs[exec_id] = proc
        self._spawn_background(self._monitor_exec(proc, self._reaper.watch(pid)))
        log(f"exec {exec_id}: pid {pid}")
        return {"pid": pid}

    async def _monitor_exec(self, proc: _ExecProcess, exited: asyncio.Future[Exit]) -> None:
        result = await exited
        if proc.console is not None:  # the rest of the pty's output first (bounded: a daemonised child may
            await proc.console.drained(DRAIN_TIMEOUT)  # hold the slave open)
        if proc.stdio is not None:
            await proc.stdio.drained(DRAIN_TIMEOUT)
        proc.close_io()
        proc.exit = p.ExitRecord(result.pid, result.status, p.format_timestamp(result.ns))
        proc.exited.set()

    def _exec(self, request: dict[str, Any]) -> _ExecProcess:
        exec_id = str(request["exec_id"])
        proc = self._execs.get(exec_id)
        if proc is None:
            raise ShimError(f"process {exec_id} does not exist: not found", "NotFound")
        return proc

    async def exec_state(self, request: dict[str, Any]) -> dict[str, Any]:
        proc = self._exec(request)
        return {
            "pid": proc.pid,
            "status": p.STATUS_STOPPED if proc.exit else p.STATUS_RUNNING,
            "exit_status": proc.exit.exit_status if proc.exit else None,
            "exited_at": proc.exit.exited_at if proc.exit else None,
        }

    async def exec_wait(self, request: dict[str, Any]) -> dict[str, Any]:
        proc = self._exec(request)
        await proc.exited.wait()
        assert proc.exit is not None
        return proc.exit.to_json()

    async def exec_delete(self, request: dict[str, Any]) -> dict[str, Any]:
        """Forget an exited exec process (containerd's DeleteProcess), closing what is left of its stdio."""
        exec_id = str(request["exec_id"])
        proc = self._exec(request)
        if proc.exit is None:
            raise ShimError(f"process {exec_id} must be stopped before deletion: running", "FailedPrecondition")
        proc.close_io()
        del self._execs[exec_id]
        return proc.exit.to_json()

    async def resize(self, request: dict[str, Any]) -> dict[str, Any]:
        width, height = int(request["width"]), int(request["height"])
        if not (0 <= width <= 0xFFFF and 0 <= height <= 0xFFFF):
            raise ShimError("bad window size", "InvalidArgument")
        exec_id = request.get("exec_id")
        try:
            if exec_id:
                proc = self._exec(request)
                if proc.console_fd < 0:
                    raise ShimError(f"exec {exec_id} has no terminal", "FailedPrecondition")
                set_window_size(proc.console_fd, width, height)
            elif self.io is not None:
                self.io.resize(width, height)
            else:
                raise ShimError(f"no running task found: task {self.container_id} not found", "NotFound")
        except OSError as exc:
            raise ShimError(f"resize: {exc.strerror}", "FailedPrecondition") from exc
        return {}

    async def close_stdin(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("exec_id"):
            proc = self._exec(request)
            if proc.stdio is not None:
                proc.stdio.close_stdin()
            return {}
        if self.io is not None:
            self.io.close_stdin()
        return {}

    async def delete(self, request: dict[str, Any]) -> dict[str, Any]:
        force = bool(request.get("force"))
        async with self._lock:
            if self.status == p.STATUS_RUNNING and not force:
                raise ShimError("task must be stopped before deletion: running", "FailedPrecondition")
            if self._forwarder is not None:
                self._forwarder.cancel()
            if self.runc is not None and self.status in (p.STATUS_CREATED, p.STATUS_RUNNING):
                try:
                    await self.runc.run(self._reaper, ["delete", "--force", self.container_id])
                except RuncError as exc:
                    raise ShimError(exc.message, "InternalError") from exc
                try:
                    async with asyncio.timeout(DELETE_WAIT_TIMEOUT):
                        await self._exited.wait()
                except TimeoutError as exc:
                    raise ShimError("timed out waiting for the init process to exit", "InternalError") from exc
            elif self.runc is not None and self.status == p.STATUS_STOPPED:
                if self._runc_deleted is not None:
                    await self._runc_deleted  # started as soon as the init exited
                else:
                    await self._delete_stopped()
            response: dict[str, Any] = (
                self.exit.to_json() if self.exit is not None
                else {"pid": self.init_pid, "exit_status": 0, "exited_at": p.format_timestamp(time.time_ns())}
            )
            self.status = "deleted"
            return {**response, "_stop": True}

    async def shutdown(self, request: dict[str, Any]) -> dict[str, Any]:
        async with self._lock:
            if self.status in (p.STATUS_CREATED, p.STATUS_RUNNING):
                if not request.get("now"):
                    raise ShimError("shim has a live task; delete it first", "FailedPrecondition")
                await self._force_delete_quietly()
            return {"_stop": True}

    # --- exit path -------------------------------------------------------------------------------------------

    async def _force_delete_quietly(self) -> None:
        if self.runc is None:
            return
        try:
            await self.runc.run(self._reaper, ["delete", "--force", self.container_id])
        except RuncError as exc:
            if "does not exist" not in exc.message:
                log(f"runc delete --force: {exc.message}")

    async def _delete_stopped(self) -> None:
        """`runc delete` of the stopped container (its state dir and cgroup)."""
        assert self.runc is not None
        try:
            await self.runc.run(self._reaper, ["delete", self.container_id])
        except RuncError as exc:
            if "does not exist" not in exc.message:
                await self._force_delete_quietly()

    async def _monitor_init(self, exited: asyncio.Future[Exit]) -> None:
        result = await exited
        log(f"init {result.pid} exited with status {result.status}")
        if self.io is not None:
            await self.io.drained(DRAIN_TIMEOUT)
            try:
                self.io.sync()
            except OSError as exc:
                log(f"fsync log: {exc}")
        record = p.ExitRecord(result.pid, result.status, p.format_timestamp(result.ns), p.oom_killed(self.bundle))
        atomicfile.write_json(Path(self.bundle) / p.EXIT_FILE, record.to_json())  # small; the shim may block
        self.exit = record
        if self.status in (p.STATUS_CREATED, p.STATUS_RUNNING):
            self.status = p.STATUS_STOPPED
        self._exited.set()
        if self.status != "deleted" and self.request.grpc_address:
            from aiodock.shim.publisher import forward_exit

            self._forwarder = self._spawn_background(
                forward_exit(self.request.grpc_address, self.request.namespace, self.container_id, record, log)
            )
        if self.runc is not None and self.status == p.STATUS_STOPPED:
            # The daemon deletes every exited task: run `runc delete` now, beside the exit report, so that the
            # delete the daemon sends next (on the stop/rm path) finds it done.
            self._runc_deleted = self._spawn_background(self._delete_stopped())


class _ConsoleSocket:
    """runc's --console-socket: runc connects and sends the pty master with SCM_RIGHTS."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            self._sock.bind(path)
            self._sock.listen(1)
        except BaseException:
            self._sock.close()
            raise
        self._sock.setblocking(False)

    async def master(self) -> int:
        """The received master fd (runc has connected by the time its create/exec returned)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(CONSOLE_TIMEOUT):
            conn, _ = await loop.sock_accept(self._sock)
            with conn:
                conn.setblocking(False)
                while True:
                    try:
                        _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
                        break
                    except BlockingIOError:
                        ready = loop.create_future()
                        loop.add_reader(conn.fileno(), _resolve, ready)
                        try:
                            await ready
                        finally:
                            loop.remove_reader(conn.fileno())
        if not fds:
            raise OSError("runc sent no pty master")
        for extra in fds[1:]:
            os.close(extra)
        os.set_inheritable(fds[0], False)
        return fds[0]

    def close(self) -> None:
        self._sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _ExecConsole:
    """The pty master of a --tty exec: its output to the exec's stdout FIFO, the exec's stdin FIFO to it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, master: int, out_fd: int, in_fd: int) -> None:
        self.master = master
        self._out_fd = out_fd
        self._in_fd = in_fd
        self._in_master = os.dup(master) if in_fd >= 0 else -1
        self._output_done = asyncio.Event()
        self._output = Pump(loop, master, out_fd, self._output_done.set) if out_fd >= 0 else None
        self._input = Pump(loop, in_fd, self._in_master, lambda: None) if in_fd >= 0 else None
        if self._output is None:
            self._output_done.set()

    async def drained(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self._output_done.wait()
        except TimeoutError:
            pass

    def close(self) -> None:
        for pump in (self._output, self._input):
            if pump is not None:
                pump.finish()
        for fd in (self.master, self._out_fd, self._in_fd, self._in_master):
            if fd >= 0:
                os.close(fd)
        self.master = self._out_fd = self._in_fd = self._in_master = -1


_SEQ = itertools.count(1)


def _open_client_fifo(path: str, flags: int, exec_id: str, stream: str) -> int:
    """One of the client's FIFOs (never created here: a path that is not a FIFO is refused)."""
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ShimError(f"exec {exec_id}: open {stream} {path}: {exc.strerror}", "FailedPrecondition") from exc
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        os.close(fd)
        raise ShimError(f"exec {exec_id}: {stream} {path} is not a FIFO", "InvalidArgument")
    return fd


class _ClientStdio:
    """An exec's stdio through the client's FIFOs (containerd's convention, used by ctr).

    stdout/stderr FIFOs are opened read-write, so a missing reader never gives EPIPE; without a terminal the
    process writes pipes that the shim copies into them (back-pressure: a full FIFO stops the copy), and the FIFO
    is closed when the process's end of the pipe is: the client sees EOF. The stdin FIFO is opened read-only and
    copied to the process's stdin pipe; the process gets EOF when the client's writers are all closed (a FIFO
    signals that only once a writer has come), or at CloseIO once what the FIFO holds has been passed on (ctr
    sends CloseIO at its stdin's EOF, when all it wrote is in the FIFO)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, exec_id: str, paths: dict[str, str], terminal: bool) -> None:
        self._loop = loop
        self.child: dict[str, int] = {}  # the process's ends (runc's stdio) without a terminal
        self._fifos: dict[str, int] = {}
        self._pipes: dict[str, int] = {}  # our ends of the pipes
        self._pumps: list[Pump] = []
        self._done: list[asyncio.Event] = []
        self._stdin_pump: Pump | None = None
        try:
            for stream in ("stdout", "stderr"):
                if paths.get(stream) and not (terminal and stream == "stderr"):
                    self._fifos[stream] = _open_client_fifo(paths[stream], os.O_RDWR, exec_id, stream)
            if paths.get("stdin"):
                self._fifos["stdin"] = _open_client_fifo(paths["stdin"], os.O_RDONLY, exec_id, "stdin")
            if terminal:
                return
            for stream in ("stdin", "stdout", "stderr"):
                if stream not in self._fifos:
                    self.child[stream] = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                    continue
                read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
                ours, theirs = (write_fd, read_fd) if stream == "stdin" else (read_fd, write_fd)
                self._pipes[stream] = ours
                self.child[stream] = theirs
        except BaseException:
            self.close_child()
            self.close()
            raise

    def take_for_console(self) -> tuple[int, int]:
        """The stdout and stdin FIFO fds (or -1) for a terminal exec's console, which owns them from now on."""
        out_fd, in_fd = self._fifos.pop("stdout", -1), self._fifos.pop("stdin", -1)
        return out_fd, in_fd

    def close_child(self) -> None:
        for fd in self.child.values():
            os.close(fd)
        self.child = {}

    def start(self) -> None:
        for stream, ours in self._pipes.items():
            fifo = self._fifos[stream]
            if stream == "stdin":
                self._stdin_pump = Pump(self._loop, fifo, ours, self._closer(stream))
                self._pumps.append(self._stdin_pump)
            else:
                done = asyncio.Event()
                self._done.append(done)
                self._pumps.append(Pump(self._loop, ours, fifo, self._closer(stream, done)))

    def _closer(self, stream: str, done: asyncio.Event | None = None) -> Any:
        def close() -> None:
            for table in (self._pipes, self._fifos):
                fd = table.pop(stream, -1)
                if fd >= 0:
                    os.close(fd)
            if done is not None:
                done.set()
        return close

    async def drained(self, timeout: float) -> None:
        """Wait until the output pipes reached EOF (bounded: a daemonised child may hold them)."""
        if self._done:
            waits = [asyncio.ensure_future(done.wait()) for done in self._done]
            _, pending = await asyncio.wait(waits, timeout=timeout)
            for task in pending:
                task.cancel()

    def close_stdin(self) -> None:
        if self._stdin_pump is not None:
            self._stdin_pump.end_input()

    def close(self) -> None:
        for pump in self._pumps:
            pump.finish()
        self._pumps = []
        self._stdin_pump = None
        for table in (self._pipes, self._fifos):
            for fd in table.values():
                os.close(fd)
            table.clear()


def _open_exec_input(bundle: str, exec_id: str, wanted: bool, blocking: bool = True) -> int:
    """The fd an exec's stdin comes from: the daemon's FIFO (it holds it open for writing) or /dev/null."""
    if not wanted:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC) if blocking else -1
    try:
        fd = os.open(p.exec_fifo(bundle, exec_id, "stdin"), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ShimError(f"exec {exec_id}: open stdin: {exc.strerror}", "FailedPrecondition") from exc
    os.set_blocking(fd, blocking)
    return fd


def _open_exec_output(bundle: str, exec_id: str, stream: str, wanted: bool, blocking: bool = True) -> int:
    """The fd an exec's stdout/stderr goes to: the daemon's FIFO (it holds the read end open) or /dev/null."""
    if not wanted:
        return os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    try:
        fd = os.open(p.exec_fifo(bundle, exec_id, stream), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:  # ENXIO: nobody reads it; ENOENT: not made
        raise ShimError(f"exec {exec_id}: open {stream}: {exc.strerror}", "FailedPrecondition") from exc
    os.set_blocking(fd, blocking)  # the process writes blocking, like to a pipe
    return fd


def _close_inherited_fds(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd in keep:
            continue
        try:
            os.close(fd)
        except OSError:
            pass


def run_shim(request: p.SpawnRequest, listen_fd: int) -> NoReturn:
    """Become the shim (in the forked grandchild): never returns into the factory's code."""
    code = 1
    try:
        _close_inherited_fds({0, 1, 2, listen_fd})
        devnull = os.open(os.devnull, os.O_RDWR)
        shim_log = os.open(os.path.join(request.bundle, p.SHIM_LOG_FILE),
                           os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(shim_log, 2)
        os.close(devnull)
        os.close(shim_log)
        os.set_inheritable(listen_fd, False)
        os.chdir(request.bundle)
        set_subreaper()
        set_process_name("aiodock-shim")
        for sig in (signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        code = asyncio.run(_main(request, listen_fd))
    except BaseException as exc:  # noqa: BLE001 - last words go to shim.log
        try:
            log(f"fatal: {exc!r}")
        except Exception:  # noqa: BLE001
            pass
    finally:
        try:
            sys.stderr.flush()
        finally:
            os._exit(code)


async def _main(request: p.SpawnRequest, listen_fd: int) -> int:
    shim = Shim(request, listen_fd)
    return await shim.serve()
