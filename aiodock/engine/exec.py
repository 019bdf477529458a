"""Docker's exec: extra processes in a running container (POST /containers/{id}/exec, /exec/{id}/start, json).

Exec records live in memory (as in Docker, they do not survive a daemon restart). The process is Docker's:
the container's OCI process (from the task's config.json) with the exec's args, env merged over the
container's, its working dir, its user (resolved in the image layers) and, when privileged, every capability.
The shim runs it with `runc exec -d` and reaps it; output comes through per-exec FIFOs the daemon reads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from aiodock.core.oci.capabilities import host_capabilities
from aiodock.core.runtime.tasks import ExecOutput, TaskManager, TaskStdin
from aiodock.engine.backend import OutputChunk, StdinSink
from aiodock.engine.containers import NAMESPACE, ContainerService
from aiodock.engine.events import DockerEvents
from aiodock.engine.images import ImageService
from aiodock.engine.spec import replace_or_append_env, resolve_user_in_layers
from aiodock.engine.state import Container
from aiodock.errors import AiodockError, Conflict, InvalidArgument, NotFound, NotImplementedYet
from aiodock.log import get_logger
from aiodock.util.ids import new_id

log = get_logger("aiodock.engine.exec")

MAX_FINISHED = 1000  # finished exec records kept for inspect (Docker garbage-collects them too)
START_FAILED_EXIT_CODE = 126


@dataclass(frozen=True, slots=True)
class ExecRecord:
    id: str
    container_id: str
    entrypoint: str
    arguments: tuple[str, ...]
    env: tuple[str, ...]
    working_dir: str
    user: str
    privileged: bool
    tty: bool
    attach_stdin: bool
    attach_stdout: bool
    attach_stderr: bool
    detach_keys: str
    console_size: tuple[int, int] | None = None  # (height, width): the pty's size at start (Tty)
    running: bool = False
    started: bool = False
    exit_code: int | None = None
    pid: int = 0

    @property
    def command_line(self) -> str:
        return " ".join([self.entrypoint, *self.arguments])

    def to_docker(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "Running": self.running,
            "ExitCode": self.exit_code,
            "ProcessConfig": {
                "tty": self.tty, "entrypoint": self.entrypoint, "arguments": list(self.arguments),
                "privileged": self.privileged, "user": self.user,
            },
            "OpenStdin": self.attach_stdin,
            "OpenStderr": self.attach_stderr,
            "OpenStdout": self.attach_stdout,
            "CanRemove": False,
            "ContainerID": self.container_id,
            "DetachKeys": self.detach_keys,
            "Pid": self.pid,
        }


def _strings(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"invalid {key}: must be a list of strings")
    return list(value)


def _console_size(value: Any) -> tuple[int, int] | None:
    """ExecConfig.ConsoleSize [height, width] (the docker CLI sends the terminal's), when set."""
    if (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and 0 < v <= 0xFFFF for v in value)):
        return value[0], value[1]
    return None


class _ExecStream:
    """The attached output of one exec. As Docker does, the process starts only when the stream is first read,
    i.e. after the client got the 101 (clients that read the headers with a buffered reader would lose output
    that arrived with them). aclose() releases the FIFOs even when never iterated."""

    def __init__(self, service: ExecService, container: Container, record: ExecRecord,
                 done: asyncio.Event) -> None:
        self.stdin = _ExecStdin() if record.attach_stdin else None
        self._service = service
        self._container = container
        self._record = record
        self._done = done
        self._output: ExecOutput | None = None
        self._launched = False
        self._gen = self._run()

    def __aiter__(self) -> _ExecStream:
        return self

    async def __anext__(self) -> OutputChunk:
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        if self.stdin is not None:
            self.stdin.ready(None)
            await self.stdin.close()
        await self._gen.aclose()
        if self._output is not None:
            await self._output.close()
        if not self._launched:  # the client left before the process started: it never will
            self._service._finish(self._record, START_FAILED_EXIT_CODE, self._container)

    async def _run(self) -> AsyncGenerator[OutputChunk, None]:
        self._launched = True
        try:
            self._output = await self._service._launch(self._container, self._record, attach=True,
                                                       stdin=self.stdin)
        except AiodockError as exc:
            self._service._finish(self._record, START_FAILED_EXIT_CODE, self._container)
            yield OutputChunk("stdout", (exc.message + "\r\n").encode())
            return
        except BaseException:
            self._service._finish(self._record, START_FAILED_EXIT_CODE, self._container)
            raise
        finally:
            if self.stdin is not None:
                self.stdin.ready(None)  # no-op once the launch handed it the writer
        try:
            if self._output is not None:
                async for stream, data in self._output.chunks():
                    yield OutputChunk(stream, data)
            await self._done.wait()  # the exit code is recorded before the client reads the end of the stream
        finally:
            if self._output is not None:
                await self._output.close()


class _ExecStdin:
    """The client's stdin for an attached exec: held until the process is launched (its FIFO exists), then
    written to it; close() gives the process EOF (a stdin that ends before the launch: EOF right away)."""

    def __init__(self) -> None:
        self._writer: TaskStdin | None = None
        self._ready = asyncio.Event()
        self._closed = False

    def ready(self, writer: TaskStdin | None) -> None:
        if self._ready.is_set():
            return
        self._writer = writer
        self._ready.set()

    async def write(self, data: bytes) -> None:
        await self._ready.wait()
        if self._writer is None or self._closed:
            raise BrokenPipeError("the exec's stdin is closed")
        await self._writer.write(data)

    async def close(self) -> None:
        self._closed = True
        if self._ready.is_set() and self._writer is not None:
            writer, self._writer = self._writer, None
            await writer.close()


class ExecService:
    """The engine's ExecBackend (aiodock.engine.backend)."""

    def __init__(self, *, containers: ContainerService, images: ImageService, tasks: TaskManager,
                 events: DockerEvents | None = None, namespace: str = NAMESPACE) -> None:
        self._containers = containers
        self._images = images
        self._tasks = tasks
        self._events = events
        self._ns = namespace
        self._execs: OrderedDict[str, ExecRecord] = OrderedDict()
        self._done: dict[str, asyncio.Event] = {}
        self._watchers: set[asyncio.Task[None]] = set()

    # ---- look-ups ---------------------------------------------------------------------------------------------

    def _get(self, exec_id: str) -> ExecRecord:
        record = self._execs.get(exec_id)
        if record is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return record

    def exec_ids(self, container_id: str) -> list[str]:
        """Exec ids of a container, for its inspect's ExecIDs."""
        return [r.id for r in self._execs.values() if r.container_id == container_id]

    def _running_container(self, ref: str) -> Container:
        container = self._containers.get(ref)
        status = container.state.status
        if status == "paused":
            raise Conflict(f"Container {container.id} is paused, unpause the container before exec")
        if status == "restarting":
            raise Conflict(f"Container {container.id} is restarting, wait until the container is running")
        if status != "running":
            raise Conflict(f"container {container.id} is not running")
        return container

    def _event(self, container: Container, action: str, **extra: Any) -> None:
        if self._events is not None:
            self._events.container(action, container.id, container.name, str(container.config.get("Image", "")),
                                   container.config.get("Labels") or {}, **extra)

    async def resize(self, exec_id: str, height: int, width: int) -> None:
        record = self._get(exec_id)
        if not record.tty:
            raise NotImplementedYet("exec with a TTY (-t) is not supported yet")
        await self._tasks.resize(self._ns, record.container_id, width, height, exec_id=record.id)

    # ---- create -----------------------------------------------------------------------------------------------

    async def create(self, ref: str, body: dict[str, Any]) -> str:
        if not isinstance(body, dict):
            raise InvalidArgument("exec config must be a JSON object")
        container = self._running_container(ref)
        cmd = _strings(body, "Cmd")
        if not cmd:
            raise InvalidArgument("No exec command specified")
        user = body.get("User") or ""
        working_dir = body.get("WorkingDir") or ""
        detach_keys = body.get("DetachKeys") or ""
        if not isinstance(user, str) or not isinstance(working_dir, str) or not isinstance(detach_keys, str):
            raise InvalidArgument("User, WorkingDir and DetachKeys must be strings")
        if working_dir and not working_dir.startswith("/"):
            raise InvalidArgument(f"the working directory '{working_dir}' is invalid, it needs to be an "
                                  "absolute path")
        record = ExecRecord(
            id=new_id(), container_id=container.id, entrypoint=cmd[0], arguments=tuple(cmd[1:]),
            env=tuple(_strings(body, "Env")), working_dir=working_dir, user=user,
            privileged=bool(body.get("Privileged")), tty=bool(body.get("Tty")),
            attach_stdin=bool(body.get("AttachStdin")),
            attach_stdout=bool(body.get("AttachStdout")), attach_stderr=bool(body.get("AttachStderr")),
            detach_keys=detach_keys, console_size=_console_size(body.get("ConsoleSize")),
        )
        self._execs[record.id] = record
        self._trim()
        self._event(container, f"exec_create: {record.command_line}", execID=record.id)
        return record.id

    def _trim(self) -> None:
        finished = [r.id for r in self._execs.values() if r.exit_code is not None]
        for exec_id in finished[:max(0, len(finished) - MAX_FINISHED)]:
            self._execs.pop(exec_id, None)
            self._done.pop(exec_id, None)

    # ---- start ------------------------------------------------------------------------------------------------

    async def start(self, exec_id: str, detach: bool = False
                    ) -> tuple[bool, AsyncIterator[OutputChunk], StdinSink | None] | None:
        """Start the exec. Detached: None once it runs. Attached: its output until it exits (the exit code is
        recorded before the stream ends); a process that cannot start yields the error and records 126."""
        record = self._get(exec_id)
        if record.exit_code is not None:
            raise Conflict(f"Error: Exec command {exec_id} has already run")
        if record.running or record.started:
            raise Conflict(f"Error: Exec command {exec_id} is already running")
        container = self._running_container(record.container_id)
        record = replace(record, started=True)
        self._execs[exec_id] = record
        done = asyncio.Event()
        self._done[exec_id] = done
        if not detach:
            stream = _ExecStream(self, container, record, done)
            return record.tty, stream, stream.stdin
        try:
            await self._launch(container, record, attach=False)
        except BaseException:
            self._finish(record, START_FAILED_EXIT_CODE, container)
            raise
        return None

    async def _launch(self, container: Container, record: ExecRecord, attach: bool,
                      stdin: _ExecStdin | None = None) -> ExecOutput | None:
        """Run the exec's process; with attach, its output FIFOs are returned (the caller closes them) and the
        client's stdin (when attached) is handed its FIFO."""
        process = await self._process(container, record)
        output: ExecOutput | None = None
        writer: TaskStdin | None = None
        # With a TTY, stdout and stderr are the one pty: its output comes as stdout.
        want_stdout = record.attach_stdout or (record.tty and record.attach_stderr)
        want_stderr = record.attach_stderr and not record.tty
        if attach and (want_stdout or want_stderr):
            output = await self._tasks.exec_output(self._ns, container.id, record.id,
                                                   stdout=want_stdout, stderr=want_stderr)
        try:
            if attach and stdin is not None:
                writer = await self._tasks.exec_stdin(self._ns, container.id, record.id)
            pid = await self._tasks.exec(self._ns, container.id, record.id, process,
                                         stdout=bool(output and want_stdout),
                                         stderr=bool(output and want_stderr), stdin=writer is not None)
        except BaseException:
            if output is not None:
                await output.close()
            if writer is not None:
                await writer.close()
            raise
        if stdin is not None and writer is not None:
            stdin.ready(writer)
            if stdin._closed:  # the client's stdin ended before the launch
                await stdin.close()
        record = replace(self._execs.get(record.id, record), running=True, pid=pid)
        self._execs[record.id] = record
        self._event(container, f"exec_start: {record.command_line}", execID=record.id)
        watcher = asyncio.create_task(self._watch(container, record))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return output

    async def _process(self, container: Container, record: ExecRecord) -> dict[str, Any]:
        spec = await self._tasks.task_spec(self._ns, container.id)
        base: dict[str, Any] = dict(spec.get("process") or {})
        process = dict(base)
        process["terminal"] = record.tty
        process["args"] = [record.entrypoint, *record.arguments]
        process["env"] = replace_or_append_env(list(base.get("env") or []), list(record.env))
        process["cwd"] = record.working_dir or base.get("cwd") or "/"
        if record.user:
            mounts = await self._images.rootfs_mounts(container.id)
            uid, gid, groups = await asyncio.to_thread(resolve_user_in_layers, mounts, record.user)
            user: dict[str, Any] = {"uid": uid, "gid": gid}
            if groups:
                user["additionalGids"] = groups
            if isinstance(base.get("user"), dict) and "umask" in base["user"]:
                user["umask"] = base["user"]["umask"]
            process["user"] = user
        if record.privileged:
            caps = list(host_capabilities())
            process["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
        process.pop("consoleSize", None)
        if record.tty and record.console_size:
            process["consoleSize"] = {"height": record.console_size[0], "width": record.console_size[1]}
        return process

    async def _watch(self, container: Container, record: ExecRecord) -> None:
        try:
            code = await self._tasks.exec_wait(self._ns, container.id, record.id)
        except asyncio.CancelledError:
            raise
        except NotFound:
            code = 137
        except Exception as exc:  # noqa: BLE001 - the shim is gone: the process went with it
            log.warning("exec wait failed", exec_id=record.id, error=str(exc))
            code = 137
        self._finish(record, code, container)

    def _finish(self, record: ExecRecord, code: int, container: Container) -> None:
        current = self._execs.get(record.id, record)
        self._execs[record.id] = replace(current, running=False, exit_code=code)
        if current.running:
            self._event(container, "exec_die", execID=record.id, exitCode=str(code))
        done = self._done.get(record.id)
        if done is not None:
            done.set()

    # ---- inspect ----------------------------------------------------------------------------------------------

    async def inspect(self, exec_id: str) -> dict[str, Any]:
        return self._get(exec_id).to_docker()

    async def close(self) -> None:
        for watcher in list(self._watchers):
            watcher.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._watchers, return_exceptions=True)
