"""Domain records <-> generated containerd messages.

Events travel as ``google.protobuf.Any`` whose type_url is the bare full message name
(``containerd.events.TaskExit``), as containerd's typeurl writes it; ``unpack_event`` also accepts the
``type.googleapis.com/`` form.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any as AnyType
from typing import Protocol

import betterproto2

from aiodock._proto import message_pool
from aiodock._proto.containerd import events as pevents
from aiodock._proto.containerd.services.containers import v1 as containers_pb
from aiodock._proto.containerd.services.content import v1 as content_pb
from aiodock._proto.containerd.services.events import v1 as events_pb
from aiodock._proto.containerd.services.images import v1 as images_pb
from aiodock._proto.containerd.types import Descriptor as DescriptorPb
from aiodock._proto.containerd.types import Metric
from aiodock._proto.containerd.v1.types import Process, Status
from aiodock._proto.google.protobuf import Any
from aiodock._proto.io.containerd.cgroups import v1 as cgroups_v1
from aiodock._proto.io.containerd.cgroups import v2 as cgroups_v2
from aiodock.core import events as ev
from aiodock.core.content import BlobInfo
from aiodock.core.images.store import Descriptor, ImageRecord
from aiodock.core.metadata import ContainerRecord
from aiodock.errors import InvalidArgument

OCI_SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
_GOOGLE_PREFIX = "type.googleapis.com/"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def aware(moment: datetime | None) -> datetime | None:
    """Timestamps on the wire must be timezone-aware; naive datetimes are taken as UTC."""
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# ------------------------------------------------------------------------------------------------------ Any


def type_url_of(message: betterproto2.Message) -> str:
    """containerd's type_url for a generated message: its full proto name."""
    url = message_pool.default_message_pool.type_to_url[type(message)]
    return url.removeprefix(_GOOGLE_PREFIX)


def pack_event(message: betterproto2.Message) -> Any:
    return Any(type_url=type_url_of(message), value=bytes(message))


def unpack_event(packed: Any) -> betterproto2.Message:
    """Decode an Any into its generated message; InvalidArgument for unknown types."""
    url = packed.type_url
    if not url.startswith(_GOOGLE_PREFIX):
        url = _GOOGLE_PREFIX + url
    message_type = message_pool.default_message_pool.url_to_type.get(url)
    if message_type is None:
        raise InvalidArgument(f'type with url {packed.type_url}: not found: invalid argument')
    return message_type.parse(packed.value)


# --------------------------------------------------------------------------------------------------- events


def event_to_message(topic: str, event: object) -> betterproto2.Message | None:
    """core.events dataclass -> containerd.events message (None for objects with no protobuf form)."""
    if isinstance(event, betterproto2.Message):
        return event
    if isinstance(event, ev.TaskExit):
        return pevents.TaskExit(
            container_id=event.container_id, id=event.id, pid=event.pid,
            exit_status=event.exit_status & 0xFFFFFFFF, exited_at=aware(event.exited_at),
        )
    if isinstance(event, ev.TaskCreate):
        return pevents.TaskCreate(container_id=event.container_id, bundle=event.bundle, pid=event.pid)
    if isinstance(event, ev.TaskStart):
        return pevents.TaskStart(container_id=event.container_id, pid=event.pid)
    if isinstance(event, ev.TaskDelete):
        return pevents.TaskDelete(
            container_id=event.container_id, pid=event.pid, exit_status=event.exit_status & 0xFFFFFFFF,
            exited_at=aware(event.exited_at), id=event.id,
        )
    if isinstance(event, ev.TaskOOM):
        return pevents.TaskOom(container_id=event.container_id)
    if isinstance(event, ev.TaskExecAdded):
        return pevents.TaskExecAdded(container_id=event.container_id, exec_id=event.exec_id)
    if isinstance(event, ev.TaskExecStarted):
        return pevents.TaskExecStarted(container_id=event.container_id, exec_id=event.exec_id,
                                       pid=event.pid & 0xFFFFFFFF)
    if isinstance(event, ev.TaskPaused):
        return pevents.TaskPaused(container_id=event.container_id)
    if isinstance(event, ev.TaskResumed):
        return pevents.TaskResumed(container_id=event.container_id)
    if isinstance(event, ev.ContainerCreate):
        return pevents.ContainerCreate(
            id=event.id, image=event.image, runtime=pevents.ContainerCreateRuntime(name=event.runtime)
        )
    if isinstance(event, ev.ContainerDelete):
        return pevents.ContainerDelete(id=event.id)
    if isinstance(event, ev.ImageEvent):
        if topic == ev.IMAGE_CREATE:
            return images_pb.ImageCreate(name=event.name)
        if topic == ev.IMAGE_UPDATE:
            return images_pb.ImageUpdate(name=event.name)
        return images_pb.ImageDelete(name=event.name)
    if isinstance(event, ev.NamespaceEvent):
        if topic == ev.NAMESPACE_CREATE:
            return pevents.NamespaceCreate(name=event.name)
        return pevents.NamespaceDelete(name=event.name)
    return None


def event_from_message(message: betterproto2.Message) -> object:
    """containerd.events message -> core.events dataclass; messages with no core form are returned as they are."""
    if isinstance(message, pevents.TaskExit):
        return ev.TaskExit(
            container_id=message.container_id, id=message.id, pid=message.pid,
            exit_status=message.exit_status, exited_at=aware(message.exited_at) or EPOCH,
        )
    if isinstance(message, pevents.TaskCreate):
        return ev.TaskCreate(container_id=message.container_id, bundle=message.bundle, pid=message.pid)
    if isinstance(message, pevents.TaskStart):
        return ev.TaskStart(container_id=message.container_id, pid=message.pid)
    if isinstance(message, pevents.TaskDelete):
        return ev.TaskDelete(
            container_id=message.container_id, pid=message.pid, exit_status=message.exit_status,
            exited_at=aware(message.exited_at) or EPOCH, id=message.id,
        )
    if isinstance(message, pevents.TaskOom):
        return ev.TaskOOM(container_id=message.container_id)
    if isinstance(message, pevents.TaskExecAdded):
        return ev.TaskExecAdded(container_id=message.container_id, exec_id=message.exec_id)
    if isinstance(message, pevents.TaskExecStarted):
        return ev.TaskExecStarted(container_id=message.container_id, exec_id=message.exec_id, pid=message.pid)
    if isinstance(message, pevents.TaskPaused):
        return ev.TaskPaused(container_id=message.container_id)
    if isinstance(message, pevents.TaskResumed):
        return ev.TaskResumed(container_id=message.container_id)
    if isinstance(message, pevents.ContainerCreate):
        runtime = message.runtime.name if message.runtime else ""
        return ev.ContainerCreate(id=message.id, image=message.image, runtime=runtime)
    if isinstance(message, pevents.ContainerDelete):
        return ev.ContainerDelete(id=message.id)
    if isinstance(message, (images_pb.ImageCreate, images_pb.ImageUpdate, images_pb.ImageDelete)):
        return ev.ImageEvent(name=message.name)
    if isinstance(message, (pevents.NamespaceCreate, pevents.NamespaceDelete)):
        return ev.NamespaceEvent(name=message.name)
    return message


def envelope_to_proto(envelope: ev.Envelope) -> events_pb.Envelope | None:
    """None when the event has no protobuf form (it is then not sent to subscribers)."""
    if isinstance(envelope.event, Any):
        packed: Any | None = envelope.event
    else:
        message = event_to_message(envelope.topic, envelope.event)
        packed = pack_event(message) if message is not None else None
    if packed is None:
        return None
    return events_pb.Envelope(
        timestamp=aware(envelope.timestamp), namespace=envelope.namespace, topic=envelope.topic, event=packed
    )


def envelope_from_proto(envelope: events_pb.Envelope) -> ev.Envelope:
    if envelope.event is None:
        raise InvalidArgument("envelope event must be set: invalid argument")
    try:
        event = event_from_message(unpack_event(envelope.event))
    except InvalidArgument:
        event = envelope.event  # unknown type: forwarded as it is
    return ev.Envelope(
        timestamp=aware(envelope.timestamp) or ev.utcnow(), namespace=envelope.namespace,
        topic=envelope.topic, event=event,
    )


# ----------------------------------------------------------------------------------------------- containers


def container_to_proto(record: ContainerRecord) -> containers_pb.Container:
    spec = (
        Any(type_url=OCI_SPEC_TYPE_URL, value=json.dumps(record.spec, separators=(",", ":")).encode())
        if record.spec is not None else None
    )
    return containers_pb.Container(
        id=record.id,
        labels=dict(record.labels),
        image=record.image,
        runtime=containers_pb.ContainerRuntime(name=record.runtime_name),
        spec=spec,
        snapshotter=record.snapshotter,
        snapshot_key=record.snapshot_key,
        created_at=aware(record.created_at),
        updated_at=aware(record.updated_at),
        extensions={key: Any.parse(raw) for key, raw in record.extensions.items()},
    )


def container_from_proto(message: containers_pb.Container) -> ContainerRecord:
    """Extensions are kept as serialized Any messages (type_url and value round-trip exactly)."""
    spec: dict[str, AnyType] | None = None
    if message.spec is not None and message.spec.value:
        try:
            decoded = json.loads(message.spec.value)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidArgument(f"container.Spec is not a JSON runtime spec: {exc}: invalid argument") from exc
        if not isinstance(decoded, dict):
            raise InvalidArgument("container.Spec must be a JSON object: invalid argument")
        spec = decoded
    now = ev.utcnow()
    return ContainerRecord(
        id=message.id,
        image=message.image,
        runtime_name=message.runtime.name if message.runtime else "",
        spec=spec,
        snapshotter=message.snapshotter,
        snapshot_key=message.snapshot_key,
        labels=dict(message.labels),
        created_at=aware(message.created_at) or now,
        updated_at=aware(message.updated_at) or now,
        extensions={key: bytes(value) for key, value in message.extensions.items()},
    )


# --------------------------------------------------------------------------------------------------- images


def descriptor_to_proto(descriptor: Descriptor) -> DescriptorPb:
    return DescriptorPb(media_type=descriptor.media_type, digest=descriptor.digest, size=descriptor.size)


def descriptor_from_proto(message: DescriptorPb | None) -> Descriptor:
    if message is None:
        return Descriptor(media_type="", digest="", size=0)
    return Descriptor(media_type=message.media_type, digest=message.digest, size=message.size)


def image_to_proto(record: ImageRecord) -> images_pb.Image:
    return images_pb.Image(
        name=record.name,
        labels=dict(record.labels),
        target=descriptor_to_proto(record.target),
        created_at=aware(record.created_at),
        updated_at=aware(record.updated_at),
    )


def image_from_proto(message: images_pb.Image) -> ImageRecord:
    now = ev.utcnow()
    return ImageRecord(
        name=message.name,
        target=descriptor_from_proto(message.target),
        created_at=aware(message.created_at) or now,
        updated_at=aware(message.updated_at) or now,
        labels=dict(message.labels),
    )


# -------------------------------------------------------------------------------------------------- content


def blob_info_to_proto(info: BlobInfo) -> content_pb.Info:
    return content_pb.Info(
        digest=info.digest, size=info.size, created_at=aware(info.created_at),
        updated_at=aware(info.updated_at), labels=dict(info.labels),
    )


# ---------------------------------------------------------------------------------------------------- tasks


class TaskView(Protocol):
    """What a task listing needs of the task manager's TaskInfo."""

    @property
    def container_id(self) -> str: ...
    @property
    def pid(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def exit_status(self) -> int | None: ...
    @property
    def exited_at(self) -> datetime | None: ...


_TASK_STATUS: Mapping[str, Status] = {
    "created": Status.CREATED,
    "running": Status.RUNNING,
    "stopped": Status.STOPPED,
    "paused": Status.PAUSED,
    "pausing": Status.PAUSING,
    "unknown": Status.UNKNOWN,
}


def task_to_process(task: TaskView, exec_id: str = "") -> Process:
    """A task's init process, or (exec_id given) one of its exec processes."""
    return Process(
        container_id=task.container_id,
        id=exec_id or task.container_id,
        pid=task.pid & 0xFFFFFFFF,
        status=_TASK_STATUS.get(task.status, Status.UNKNOWN),
        exit_status=(task.exit_status or 0) & 0xFFFFFFFF,
        exited_at=aware(task.exited_at),
    )


OCI_PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"


def process_spec_from_any(packed: Any | None) -> dict[str, AnyType]:
    """The OCI runtime-spec Process of an ExecProcessRequest (JSON in an Any, as containerd's typeurl packs it)."""
    if packed is None or not packed.value:
        raise InvalidArgument("exec process spec must be set: invalid argument")
    try:
        spec = json.loads(packed.value)
    except ValueError as exc:
        raise InvalidArgument(f"invalid exec process spec: {exc}: invalid argument") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("args"), list) or not spec["args"]:
        raise InvalidArgument("exec process spec must have args: invalid argument")
    return spec


def metric_to_proto(container_id: str, version: int, data: Mapping[str, AnyType], timestamp: datetime) -> Metric:
    """One task's cgroup reading as containerd's Metric: data is io.containerd.cgroups.v1.Metrics (or v2)."""
    message: betterproto2.Message = cgroups_v2.Metrics.from_dict(dict(data)) if version == 2 \
        else cgroups_v1.Metrics.from_dict(dict(data))
    return Metric(timestamp=aware(timestamp), id=container_id, data=pack_event(message))
