"""In-process event exchange, containerd's events service in miniature.

Topics are containerd's (/tasks/exit, /tasks/start, /containers/create, ...). Events are frozen dataclasses of
this module; the gRPC adapter converts them to containerd's protobuf messages for `ctr events`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

# Topics (containerd core/runtime/events.go and friends)
TASK_CREATE = "/tasks/create"
TASK_START = "/tasks/start"
TASK_EXIT = "/tasks/exit"
TASK_DELETE = "/tasks/delete"
TASK_OOM = "/tasks/oom"
TASK_EXEC_ADDED = "/tasks/exec-added"
TASK_EXEC_STARTED = "/tasks/exec-started"
TASK_PAUSED = "/tasks/paused"
TASK_RESUMED = "/tasks/resumed"
CONTAINER_CREATE = "/containers/create"
CONTAINER_UPDATE = "/containers/update"
CONTAINER_DELETE = "/containers/delete"
IMAGE_CREATE = "/images/create"
IMAGE_UPDATE = "/images/update"
IMAGE_DELETE = "/images/delete"
NAMESPACE_CREATE = "/namespaces/create"
NAMESPACE_DELETE = "/namespaces/delete"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class TaskCreate:
    container_id: str
    bundle: str
    pid: int


@dataclass(frozen=True, slots=True)
class TaskStart:
    container_id: str
    pid: int


@dataclass(frozen=True, slots=True)
class TaskExit:
    container_id: str
    id: str  # process id: equal to container_id for the init process
    pid: int
    exit_status: int
    exited_at: datetime
    oom_killed: bool = False  # the cgroup's OOM killer ended it (aiodock's addition; not on containerd's wire)


@dataclass(frozen=True, slots=True)
class TaskDelete:
    container_id: str
    pid: int
    exit_status: int
    exited_at: datetime
    id: str = ""


@dataclass(frozen=True, slots=True)
class TaskOOM:
    container_id: str


@dataclass(frozen=True, slots=True)
class TaskExecAdded:
    container_id: str
    exec_id: str


@dataclass(frozen=True, slots=True)
class TaskExecStarted:
    container_id: str
    exec_id: str
    pid: int


@dataclass(frozen=True, slots=True)
class TaskPaused:
    container_id: str


@dataclass(frozen=True, slots=True)
class TaskResumed:
    container_id: str


@dataclass(frozen=True, slots=True)
class ContainerCreate:
    id: str
    image: str
    runtime: str


@dataclass(frozen=True, slots=True)
class ContainerDelete:
    id: str


@dataclass(frozen=True, slots=True)
class ImageEvent:
    name: str


@dataclass(frozen=True, slots=True)
class NamespaceEvent:
    name: str


@dataclass(frozen=True, slots=True)
class Envelope:
    timestamp: datetime
    namespace: str
    topic: str
    event: object


class EventExchange:
    """Fan-out of envelopes to subscribers. Each subscriber has its own bounded queue; a slow one drops oldest."""

    def __init__(self, queue_size: int = 1024) -> None:
        self._subscribers: set[asyncio.Queue[Envelope]] = set()
        self._queue_size = queue_size
        self._listeners: list[Callable[[Envelope], None]] = []

    def publish(self, namespace: str, topic: str, event: object, timestamp: datetime | None = None) -> Envelope:
        env = Envelope(timestamp or utcnow(), namespace, topic, event)
        for listener in list(self._listeners):
            listener(env)
        for queue in list(self._subscribers):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(env)
        return env

    def add_listener(self, listener: Callable[[Envelope], None]) -> None:
        """Synchronous in-process listener (called inside publish, must not block)."""
        self._listeners.append(listener)

    async def subscribe(self, *topic_prefixes: str, namespace: str | None = None) -> AsyncIterator[Envelope]:
        """Yield envelopes whose topic starts with one of the prefixes (all when none), until cancelled."""
        queue: asyncio.Queue[Envelope] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        try:
            while True:
                env = await queue.get()
                if namespace is not None and env.namespace != namespace:
                    continue
                if topic_prefixes and not env.topic.startswith(topic_prefixes):
                    continue
                yield env
        finally:
            self._subscribers.discard(queue)
