"""A small containerd gRPC client for ``aiodock ctr`` (grpclib over the daemon's containerd socket)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from grpclib.client import Channel
from grpclib.exceptions import GRPCError

from aiodock._proto.containerd.services.containers import v1 as containers_v1
from aiodock._proto.containerd.services.namespaces import v1 as namespaces_v1
from aiodock._proto.containerd.services.tasks import v1 as tasks_v1

DEFAULT_ADDRESS = "/run/aiodock/containerd/containerd.sock"
NAMESPACE_HEADER = "containerd-namespace"


@dataclass(frozen=True, slots=True)
class NamespaceInfo:
    name: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    id: str
    image: str
    runtime: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TaskInfo:
    id: str
    pid: int
    status: str  # UNKNOWN, CREATED, RUNNING, STOPPED, PAUSED, PAUSING


class CtrError(Exception):
    """A gRPC failure, worded like ctr does (``<message>: <code>``)."""


class ContainerdClient:
    def __init__(self, address: str | Path = DEFAULT_ADDRESS, namespace: str = "default", timeout: float = 30) -> None:
        self.address = str(address)
        self.namespace = namespace
        self.timeout = timeout
        self._channel = Channel(path=self.address)

    async def __aenter__(self) -> ContainerdClient:
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _md(self) -> dict[str, str]:
        return {NAMESPACE_HEADER: self.namespace}

    async def namespaces(self) -> list[NamespaceInfo]:
        stub = namespaces_v1.NamespacesStub(self._channel)
        try:
            resp = await stub.list(namespaces_v1.ListNamespacesRequest(), timeout=self.timeout)
        except GRPCError as exc:
            raise CtrError(_describe(exc)) from exc
        return sorted((NamespaceInfo(ns.name, dict(ns.labels)) for ns in resp.namespaces), key=lambda n: n.name)

    async def containers(self, filters: list[str] | None = None) -> list[ContainerInfo]:
        stub = containers_v1.ContainersStub(self._channel)
        try:
            resp = await stub.list(containers_v1.ListContainersRequest(filters=list(filters or [])),
                                   timeout=self.timeout, metadata=self._md())
        except GRPCError as exc:
            raise CtrError(_describe(exc)) from exc
        return [
            ContainerInfo(c.id, c.image, c.runtime.name if c.runtime else "", dict(c.labels))
            for c in resp.containers
        ]

    async def tasks(self) -> list[TaskInfo]:
        stub = tasks_v1.TasksStub(self._channel)
        try:
            resp = await stub.list(tasks_v1.ListTasksRequest(), timeout=self.timeout, metadata=self._md())
        except GRPCError as exc:
            raise CtrError(_describe(exc)) from exc
        return [TaskInfo(t.id or t.container_id, int(t.pid), _status_name(t.status)) for t in resp.tasks]


def _status_name(status: object) -> str:
    name = getattr(status, "name", None)
    return str(name) if name else "UNKNOWN"


def _describe(exc: GRPCError) -> str:
    code = exc.status.name.replace("_", " ").title().replace(" ", "")
    return f"rpc error: code = {code} desc = {exc.message or ''}"
