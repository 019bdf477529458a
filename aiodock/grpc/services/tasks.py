"""containerd.services.tasks.v1.Tasks: List, Get, Kill, ListPids, Delete, Wait over the task manager.

Create/Start/Exec and the rest answer UNIMPLEMENTED (inherited from the generated base) until the runtime serves them.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from aiodock._proto.containerd.services.tasks.v1 import (
    DeleteResponse,
    DeleteTaskRequest,
    GetRequest,
    GetResponse,
    KillRequest,
    ListPidsRequest,
    ListPidsResponse,
    ListTasksRequest,
    ListTasksResponse,
    PauseTaskRequest,
    ResumeTaskRequest,
    TasksBase,
    WaitRequest,
    WaitResponse,
)
from aiodock._proto.containerd.v1.types import ProcessInfo
from aiodock._proto.google.protobuf import Empty
from aiodock.core import events as ev
from aiodock.core.namespaces import namespace_from_context
from aiodock.errors import NotImplementedYet
from aiodock.grpc.convert import aware, task_to_process
from aiodock.grpc.errors import grpc_service


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


def _init_process_only(exec_id: str) -> None:
    if exec_id:
        raise NotImplementedYet(f"exec process {exec_id!r}: exec processes are not served yet: not implemented")


@grpc_service
class TasksService(TasksBase):
    def __init__(self, manager: TaskManagerLike) -> None:
        self._manager = manager

    async def list(self, message: ListTasksRequest) -> ListTasksResponse:
        return ListTasksResponse(tasks=[task_to_process(t) for t in self._manager.list(namespace_from_context())])

    async def get(self, message: GetRequest) -> GetResponse:
        _init_process_only(message.exec_id)
        task = self._manager.get(namespace_from_context(), message.container_id)
        return GetResponse(process=task_to_process(task))

    async def kill(self, message: KillRequest) -> Empty:
        _init_process_only(message.exec_id)
        await self._manager.kill(namespace_from_context(), message.container_id, message.signal, message.all)
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
        if exited is None:
            return DeleteResponse(id=message.container_id, pid=pid)
        return DeleteResponse(
            id=message.container_id, pid=exited.pid or pid, exit_status=exited.exit_status & 0xFFFFFFFF,
            exited_at=aware(exited.exited_at),
        )

    async def wait(self, message: WaitRequest) -> WaitResponse:
        _init_process_only(message.exec_id)
        exited = await self._manager.wait(namespace_from_context(), message.container_id)
        return WaitResponse(exit_status=exited.exit_status & 0xFFFFFFFF, exited_at=aware(exited.exited_at))
