"""Docker's event stream (GET /events): a bounded in-memory journal plus live subscribers.

The engine calls ``record(...)`` where an action happens; readers get Docker-shaped messages
{"status", "id", "from", "Type", "Action", "Actor": {"ID", "Attributes"}, "scope", "time", "timeNano"}.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiodock.engine.images import ImageService
from aiodock.errors import AiodockError, InvalidArgument

JOURNAL_SIZE = 1024
QUEUE_SIZE = 4096
FILTER_KEYS = frozenset({"type", "event", "container", "image", "label", "network", "volume", "daemon",
                         "plugin", "node", "service", "secret", "config", "scope"})
_FUZZY_ACTIONS = ("health_status", "exec_create", "exec_start")


@dataclass(frozen=True, slots=True)
class DockerEvent:
    type: str  # "container" | "image" | ...
    action: str
    actor_id: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    time_nano: int = 0

    def to_json(self) -> dict[str, Any]:
        message: dict[str, Any] = {}
        if self.type in ("container", "image"):
            message["status"] = self.action
            message["id"] = self.actor_id
            if self.type == "container" and self.attributes.get("image"):
                message["from"] = self.attributes["image"]
        message.update({
            "Type": self.type,
            "Action": self.action,
            "Actor": {"ID": self.actor_id, "Attributes": dict(self.attributes)},
            "scope": "local",
            "time": self.time_nano // 1_000_000_000,
            "timeNano": self.time_nano,
        })
        return message


def parse_time(raw: str | None, name: str) -> int | None:
    """Docker's since/until: unix seconds with an optional fraction ("1700000000.000000001"), or RFC 3339.
    Returns nanoseconds."""
    if raw is None or raw == "":
        return None
    secs, dot, frac = raw.partition(".")
    if secs.lstrip("-").isdigit() and (not dot or frac.isdigit()):
        return int(secs) * 1_000_000_000 + int((frac + "000000000")[:9] if dot else 0)
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {raw}") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def _strip_tag(ref: str) -> str:
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return ref[:colon] if colon > slash else ref


class EventFilter:
    def __init__(self, filters: Mapping[str, list[str]] | None) -> None:
        self.filters = {k: list(v) for k, v in (filters or {}).items()}
        for key in self.filters:
            if key not in FILTER_KEYS:
                raise InvalidArgument(f"invalid filter '{key}'")

    def _values(self, key: str) -> list[str]:
        return self.filters.get(key) or []

    def matches(self, event: DockerEvent) -> bool:
        types = self._values("type")
        if types and event.type not in types:
            return False
        actions = self._values("event")
        if actions:
            if any(a in _FUZZY_ACTIONS for a in actions):
                if not any(event.action.startswith(a) for a in actions):
                    return False
            elif event.action not in actions:
                return False
        containers = self._values("container")
        if containers:
            if event.type != "container":
                return False
            name = event.attributes.get("name", "")
            if not any(c == name or (c and event.actor_id.startswith(c)) for c in containers):
                return False
        images = self._values("image")
        if images:
            if event.type == "container":
                candidates = {event.attributes.get("image", "")}
            elif event.type == "image":
                candidates = {event.actor_id, event.attributes.get("name", "")}
            else:
                return False
            candidates |= {_strip_tag(c) for c in candidates}
            if not any(i in candidates or _strip_tag(i) in candidates for i in images):
                return False
        for key in ("network", "volume"):  # Docker's fuzzy name match: the actor's id or name, or a prefix
            wanted = self._values(key)
            if wanted and not any(
                    event.actor_id.startswith(w) or str(event.attributes.get("name", "")).startswith(w)
                    for w in wanted if w):
                return False
        for want in self._values("label"):
            key, sep, value = want.partition("=")
            if key not in event.attributes or (sep and event.attributes[key] != value):
                return False
        scopes = self._values("scope")
        return not scopes or "local" in scopes


class DockerEvents:
    def __init__(self, journal_size: int = JOURNAL_SIZE) -> None:
        self._journal: deque[DockerEvent] = deque(maxlen=journal_size)
        self._subscribers: set[asyncio.Queue[DockerEvent | None]] = set()
        self._last_ns = 0

    def record(self, type: str, action: str, actor_id: str,
               attributes: Mapping[str, Any] | None = None) -> DockerEvent:
        now = max(time.time_ns(), self._last_ns + 1)  # strictly increasing: since/until stay exact
        self._last_ns = now
        attrs = {str(k): str(v) for k, v in (attributes or {}).items() if v is not None}
        event = DockerEvent(type, action, actor_id, attrs, now)
        self._journal.append(event)
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:  # a reader that does not keep up is cut off, like Docker's
                self._subscribers.discard(queue)
                queue.get_nowait()
                queue.put_nowait(None)
        return event

    def container(self, action: str, container_id: str, name: str, image: str,
                  labels: Mapping[str, str] | None = None, **extra: Any) -> DockerEvent:
        attributes: dict[str, Any] = dict(labels or {})
        attributes.update(image=image, name=name)
        attributes.update(extra)
        return self.record("container", action, container_id, attributes)

    def image(self, action: str, image_id: str, name: str = "",
              labels: Mapping[str, str] | None = None) -> DockerEvent:
        attributes: dict[str, Any] = dict(labels or {})
        attributes["name"] = name or image_id
        return self.record("image", action, image_id, attributes)

    def recent(self) -> list[DockerEvent]:
        return list(self._journal)

    async def stream(self, since: int | None = None, until: int | None = None,
                     filters: Mapping[str, list[str]] | None = None) -> AsyncIterator[DockerEvent]:
        """Past events from ``since`` (ns), then live ones; ends at ``until`` (ns) when given."""
        matcher = EventFilter(filters)
        if since is not None and until is not None and since > until:
            raise InvalidArgument("`since` time must be before `until` time")
        return self._stream(matcher, since, until)

    async def _stream(self, matcher: EventFilter, since: int | None,
                      until: int | None) -> AsyncIterator[DockerEvent]:
        queue: asyncio.Queue[DockerEvent | None] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(queue)  # before the replay: nothing falls between the two
        try:
            last = 0
            if since is not None:
                for event in list(self._journal):
                    if event.time_nano < since:
                        continue
                    if until is not None and event.time_nano > until:
                        return
                    last = event.time_nano
                    if matcher.matches(event):
                        yield event
            while True:
                if until is not None:
                    remaining = (until - time.time_ns()) / 1e9
                    if remaining <= 0:
                        return
                    try:
                        async with asyncio.timeout(remaining):
                            item = await queue.get()
                    except TimeoutError:
                        return
                else:
                    item = await queue.get()
                if item is None:
                    return
                if item.time_nano <= last:
                    continue  # already replayed from the journal
                if until is not None and item.time_nano > until:
                    return
                if matcher.matches(item):
                    yield item
        finally:
            self._subscribers.discard(queue)


class EventedImages:
    """The ImageBackend with Docker's image events (import, load, save, tag, untag, delete) recorded around the
    ImageService's calls, so the image service itself needs no hooks; other methods pass through."""

    def __init__(self, images: ImageService, events: DockerEvents) -> None:
        self._images = images
        self._events = events

    def __getattr__(self, name: str) -> Any:  # every other ImageBackend method, as the service has it
        return getattr(self._images, name)

    async def _labels(self, ref: str) -> tuple[str, dict[str, str]]:
        image = await self._images.resolve(ref)
        return image.id, dict(image.container_config.get("Labels") or {})

    async def _record(self, action: str, ref: str, name: str = "") -> None:
        try:
            image_id, labels = await self._labels(ref)
        except AiodockError:
            return
        self._events.image(action, image_id, name or image_id, labels)

    async def import_tar(self, src: Path, repo: str | None, tag: str | None, changes: list[str],
                         message: str = "") -> str:
        image_id = await self._images.import_tar(src, repo, tag, changes, message)
        await self._record("import", image_id)
        return image_id

    async def load(self, src: Path) -> list[str]:
        lines = await self._images.load(src)
        seen: set[str] = set()
        for line in lines:
            for prefix in ("Loaded image ID: ", "Loaded image: "):
                if line.startswith(prefix):
                    try:
                        image_id, labels = await self._labels(line[len(prefix):])
                    except AiodockError:
                        break
                    if image_id not in seen:
                        seen.add(image_id)
                        self._events.image("load", image_id, image_id, labels)
                    break
        return lines

    async def save(self, refs: list[str], dest: Path) -> None:
        await self._images.save(refs, dest)
        for ref in refs:
            await self._record("save", ref)

    async def tag(self, ref: str, repo: str, tag: str | None) -> None:
        await self._images.tag(ref, repo, tag)
        name = f"{repo}:{tag or 'latest'}" if "@" not in repo else repo
        await self._record("tag", name, _familiar(name))

    async def pull(self, image: str, tag: str | None, platform: str | None = None,
                   auth_header: str | None = None) -> AsyncGenerator[dict[str, Any], None]:
        progress = await self._images.pull(image, tag, platform, auth_header)
        return self._then_record(progress, "pull", _reference(image, tag))

    async def push(self, image: str, tag: str | None,
                   auth_header: str | None = None) -> AsyncGenerator[dict[str, Any], None]:
        progress = await self._images.push(image, tag, auth_header)
        return self._then_record(progress, "push", _reference(image, tag))

    async def _then_record(self, progress: AsyncGenerator[dict[str, Any], None], action: str,
                           reference: str) -> AsyncGenerator[dict[str, Any], None]:
        """Pass the progress through; once it ends without an error, record Docker's pull/push event, whose id is
        the reference ("busybox:latest"), not the image id."""
        failed = False
        async for message in progress:
            failed = failed or "error" in message
            yield message
        if not failed:
            try:
                _, labels = await self._labels(reference)
            except AiodockError:
                labels = {}
            self._events.image(action, reference, _repository(reference), labels)

    async def remove(self, ref: str, force: bool = False, prune: bool = True) -> list[dict[str, Any]]:
        try:
            image_id, labels = await self._labels(ref)
        except AiodockError:
            image_id, labels = "", {}
        records = await self._images.remove(ref, force, prune)
        for record in records:
            if "Untagged" in record and image_id:
                self._events.image("untag", image_id, image_id, labels)
            elif record.get("Deleted") == image_id and image_id:
                self._events.image("delete", image_id, image_id, labels)
        return records


def _reference(image: str, tag: str | None) -> str:
    if tag and tag.startswith("sha256:"):
        return f"{image}@{tag}"
    return f"{image}:{tag}" if tag else image


def _repository(reference: str) -> str:
    """"localhost:5000/busybox:1" -> "localhost:5000/busybox" (a port is not a tag)."""
    name = reference.split("@", 1)[0]
    head, sep, tail = name.rpartition(":")
    return head if sep and "/" not in tail else name


def _familiar(name: str) -> str:
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name
