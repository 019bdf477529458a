"""containerd.services.tasks.v1.Tasks over the task manager.

Served: List, Get, Kill, ListPids, Delete, Wait, Pause, Resume, and exec processes the way `ctr tasks exec` uses
them: Exec (registers the process with the client's FIFO paths; events /tasks/exec-added), Start with an exec id
(/tasks/exec-started), Get/Wait/Kill with an exec id, ResizePty and CloseIO (init or exec), DeleteProcess; and
Metrics (one cgroup reading per task: io.containerd.cgroups.v1.Metrics, or v2 on a unified host).
Create, Start of an init process, Checkpoint and Update answer UNIMPLEMENTED (inherited from the generated base).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from aiodock._proto.containerd.services.tasks.v1 import (
    CloseIoRequest,
    DeleteProcessRequest,
    DeleteResponse,
    DeleteTaskRequest,
    ExecProcessRequest,
    GetRequest,
    GetResponse,
    KillRequest,
    ListPidsRequest,
    ListPidsResponse,
    ListTasksRequest,
    ListTasksResponse,
    MetricsRequest,
    MetricsResponse,
    PauseTaskRequest,
    ResizePtyRequest,
    ResumeTaskRequest,
    StartRequest,
    StartResponse,
    TasksBase,
    WaitRequest,
    WaitResponse,
)
from aiodock._proto.containerd.v1.types import ProcessInfo
from aiodock._proto.google.protobuf import Empty
from aiodock.core import events as ev
from aiodock.core.metadata import parse_filters
from aiodock.core.namespaces import namespace_from_context
from aiodock.core.runtime.tasks import ExecIO
from aiodock.errors import InvalidArgument, NotImplementedYet
from aiodock.grpc.convert import aware, metric_to_proto, process_spec_from_any, task_to_process
from aiodock.grpc.errors import grpc_service

METRICS_FILTER_FIELDS = frozenset({"id", "namespace"})


class TaskInfoLike(Protocol):
    """The fields of core.runtime.tasks.TaskInfo this adapter reads."""

    @property
    def namespace(self) -> str: ...
    @property
    def container_id(self) -> str: ...
    @property
    def pid(self) -> int: ...
    @property
    def status(self) -> str: ...  # "created" | "running" | "stopped" | "paused" | "unknown"
    @property
    def exit_status(self) -> int | None: ...
    @property
    def exited_at(self) -> datetime | None: ...
    @property
    def bundle(self) -> Path: ...


class TaskManagerLike(Protocol):
    """The slice of core.runtime.tasks.TaskManager the gRPC tasks service uses."""

    def list(self, ns: str, /) -> Sequence[TaskInfoLike]: ...
    def get(self, ns: str, container_id: str, /) -> TaskInfoLike: ...
    async def kill(self, ns: str, container_id: str, signal: int, all: bool = False, /) -> None: ...
    async def pids(self, ns: str, container_id: str, /) -> builtins.list[int]: ...
    async def wait(self, ns: str, container_id: str, /) -> ev.TaskExit: ...
    async def delete(self, ns: str, container_id: str, /) -> ev.TaskExit | None: ...
    async def pause(self, ns: str, container_id: str, /) -> None: ...
    async def resume(self, ns: str, container_id: str, /) -> None: ...
    async def resize(self, ns: str, container_id: str, width: int, height: int,
                     exec_id: str | None = None, /) -> None: ...
    async def close_stdin(self, ns: str, container_id: str, /) -> None: ...
    async def metrics(self, ns: str, container_id: str, /) -> tuple[int, dict[str, Any]] | None: ...
    async def exec_create(self, ns: str, container_id: str, exec_id: str, process: dict[str, Any],
                          io: ExecIO, /) -> None: ...
    async def exec_start(self, ns: str, container_id: str, exec_id: str, /) -> int: ...
    def exec_info(self, ns: str, container_id: str, exec_id: str, /) -> TaskInfoLike: ...
    async def wait_process(self, ns: str, container_id: str, exec_id: str, /) -> ev.TaskExit: ...
    async def exec_kill(self, ns: str, container_id: str, exec_id: str, signal: int, /) -> None: ...
    async def exec_close_stdin(self, ns: str, container_id: str, exec_id: str, /) -> None: ...
    async def exec_delete(self, ns: str, container_id: str, exec_id: str, /) -> ev.TaskExit | None: ...


def _delete_response(container_id: str, pid: int, exited: ev.TaskExit | None) -> DeleteResponse:
    if exited is None:
        return DeleteResponse(id=container_id, pid=pid)
    return DeleteResponse(
        id=container_id, pid=exited.pid or pid, exit_status=exited.exit_status & 0xFFFFFFFF,
        exited_at=aware(exited.exited_at),
    )


def _task_fields(ns: str, container_id: str) -> Callable[[tuple[str, ...]], str | None]:
    """The filter fields of a task (containerd's: id, namespace)."""
    fields = {"id": container_id, "namespace": ns}

    def adaptor(path: tuple[str, ...]) -> str | None:
        return fields.get(path[0]) if len(path) == 1 else None

    return adaptor


@grpc_service
class TasksService(TasksBase):
    def __init__(self, manager: TaskManagerLike) -> None:
        self._manager = manager

    async def list(self, message: ListTasksRequest) -> ListTasksResponse:
        return ListTasksResponse(tasks=[task_to_process(t) for t in self._manager.list(namespace_from_context())])

    async def get(self, message: GetRequest) -> GetResponse:
        ns = namespace_from_context()
        if message.exec_id:
            info = self._manager.exec_info(ns, message.container_id, message.exec_id)
            return GetResponse(process=task_to_process(info, message.exec_id))
        task = self._manager.get(ns, message.container_id)
        return GetResponse(process=task_to_process(task))

    async def kill(self, message: KillRequest) -> Empty:
        ns = namespace_from_context()
        if message.exec_id:
            await self._manager.exec_kill(ns, message.container_id, message.exec_id, message.signal)
        else:
            await self._manager.kill(ns, message.container_id, message.signal, message.all)
        return Empty()

    async def pause(self, message: PauseTaskRequest) -> Empty:
        await self._manager.pause(namespace_from_context(), message.container_id)
        return Empty()

    async def resume(self, message: ResumeTaskRequest) -> Empty:
        await self._manager.resume(namespace_from_context(), message.container_id)
        return Empty()

    async def list_pids(self, message: ListPidsRequest) -> ListPidsResponse:
        pids = await self._manager.pids(namespace_from_context(), message.container_id)
        return ListPidsResponse(processes=[ProcessInfo(pid=pid) for pid in pids])

    async def delete(self, message: DeleteTaskRequest) -> DeleteResponse:
        ns = namespace_from_context()
        pid = self._manager.get(ns, message.container_id).pid
        exited = await self._manager.delete(ns, message.container_id)
        return _delete_response(message.container_id, pid, exited)

    async def delete_process(self, message: DeleteProcessRequest) -> DeleteResponse:
        ns = namespace_from_context()
        pid = self._manager.exec_info(ns, message.container_id, message.exec_id).pid
        exited = await self._manager.exec_delete(ns, message.container_id, message.exec_id)
        return _delete_response(message.exec_id, pid, exited)

    async def wait(self, message: WaitRequest) -> WaitResponse:
        ns = namespace_from_context()
        if message.exec_id:
            exited = await self._manager.wait_process(ns, message.container_id, message.exec_id)
        else:
            exited = await self._manager.wait(ns, message.container_id)
        return WaitResponse(exit_status=exited.exit_status & 0xFFFFFFFF, exited_at=aware(exited.exited_at))

    async def exec(self, message: ExecProcessRequest) -> Empty:
        if not message.exec_id:
            raise InvalidArgument("exec id must not be empty: invalid argument")
        process = process_spec_from_any(message.spec)
        io = ExecIO(stdin=message.stdin, stdout=message.stdout, stderr=message.stderr, terminal=message.terminal)
        await self._manager.exec_create(namespace_from_context(), message.container_id, message.exec_id, process, io)
        return Empty()

    async def start(self, message: StartRequest) -> StartResponse:
        if not message.exec_id:
            raise NotImplementedYet("starting a task's init process through the Tasks API is not served: "
                                    "not implemented")
        pid = await self._manager.exec_start(namespace_from_context(), message.container_id, message.exec_id)
        return StartResponse(pid=pid & 0xFFFFFFFF)

    async def resize_pty(self, message: ResizePtyRequest) -> Empty:
        await self._manager.resize(namespace_from_context(), message.container_id, message.width, message.height,
                                   message.exec_id or None)
        return Empty()

    async def close_io(self, message: CloseIoRequest) -> Empty:
        if not message.stdin:
            return Empty()
        ns = namespace_from_context()
        if message.exec_id:
            await self._manager.exec_close_stdin(ns, message.container_id, message.exec_id)
        else:
            await self._manager.close_stdin(ns, message.container_id)
        return Empty()

    async def metrics(self, message: MetricsRequest) -> MetricsResponse:
        ns = namespace_from_context()
        selected = parse_filters(list(message.filters))
        unknown = selected.fields() - METRICS_FILTER_FIELDS
        if unknown:
            raise InvalidArgument(f"filters: unknown field {sorted(unknown)[0]!r}: invalid argument")
        response = MetricsResponse()
        for task in self._manager.list(ns):
            if not selected.match(_task_fields(ns, task.container_id)):
                continue
            reading = await self._manager.metrics(ns, task.container_id)
            if reading is not None:
                version, data = reading
                response.metrics.append(metric_to_proto(task.container_id, version, data, ev.utcnow()))
        return response
