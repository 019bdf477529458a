"""containerd-style container records (namespaced metadata, not running processes) and containerd's filters.

Records are persisted per namespace in ``<root>/metadata/containers/<ns>.json`` with atomic writes. The engine
writes one record per Docker container in namespace "moby"; ctr users create their own. Plain synchronous code:
async callers use ``asyncio.to_thread``.

The filter language is containerd's (``pkg/filters``): a filter is comma-separated selectors that must all match,
a list of filters matches when any filter matches. Selectors are ``field``, ``field==value``, ``field!=value``,
``field~=regexp``; values may be quoted with ``"..."`` or ``/.../``; field paths are dot-separated
(``labels."com.example.key"``).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from aiodock.core.namespaces import validate_identifier, validate_labels
from aiodock.errors import AlreadyExists, InvalidArgument, NotFound
from aiodock.util import atomicfile

# ---------------------------------------------------------------------------------------------------- filters


@dataclass(frozen=True, slots=True)
class Selector:
    """One ``fieldpath op value`` term. ``operator`` is "" (field present), "==", "!=" or "~="."""

    fieldpath: tuple[str, ...]
    operator: str
    value: str


# Resolves a field path of an object to its value, or None when the object has no such field.
FieldAdaptor = Callable[[tuple[str, ...]], str | None]


@dataclass(frozen=True, slots=True)
class Filter:
    """Filters OR-ed together; each is a conjunction of selectors. No filters match everything."""

    alternatives: tuple[tuple[Selector, ...], ...] = ()

    def match(self, adaptor: FieldAdaptor) -> bool:
        if not self.alternatives:
            return True
        return any(all(_selector_matches(sel, adaptor) for sel in conj) for conj in self.alternatives)

    def fields(self) -> set[str]:
        """The first element of every field path used (to reject unknown fields)."""
        return {sel.fieldpath[0] for conj in self.alternatives for sel in conj}


def _selector_matches(selector: Selector, adaptor: FieldAdaptor) -> bool:
    value = adaptor(selector.fieldpath)
    if selector.operator == "":
        return value is not None
    if selector.operator == "==":
        return value is not None and value == selector.value
    if selector.operator == "!=":
        return value is None or value != selector.value
    return value is not None and re.search(selector.value, value) is not None


def _parse_error(text: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"filters: parse error: [{text}]: {why}: invalid argument")


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quote = ""
    escaped = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
            continue
        if quote:
            current.append(char)
            if char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
            continue
        if char in "\"/" and (char == '"' or not current or current[-1] in "=~!."):
            quote = char
            current.append(char)
            continue
        if char == separator:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quote:
        raise _parse_error(text, "unterminated quoted string")
    parts.append("".join(current))
    return parts


def _unquote(token: str, text: str) -> str:
    token = token.strip()
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "\"/":
        inner = token[1:-1]
        if token[0] == '"':
            try:
                return str(json.loads(token))
            except json.JSONDecodeError as exc:
                raise _parse_error(text, f"invalid quoted string {token}") from exc
        return inner.replace("\\/", "/")
    return token


_SELECTOR_RE = re.compile(r"^(?P<field>.+?)(?:(?P<op>==|!=|~=)(?P<value>.*))?$", re.DOTALL)


def parse_filters(filters: Sequence[str]) -> Filter:
    """Parse containerd filter strings; syntax errors raise InvalidArgument."""
    alternatives: list[tuple[Selector, ...]] = []
    for text in filters:
        if not text.strip():
            continue
        selectors: list[Selector] = []
        for term in _split_outside_quotes(text, ","):
            term = term.strip()
            if not term:
                raise _parse_error(text, "expected a selector")
            found = _SELECTOR_RE.match(term)
            if found is None:
                raise _parse_error(text, f"invalid selector {term!r}")
            raw_field = found.group("field").strip()
            operator = found.group("op") or ""
            value = _unquote(found.group("value") or "", text) if operator else ""
            path = tuple(_unquote(p, text) for p in _split_outside_quotes(raw_field, "."))
            if not raw_field or any(not p for p in path):
                raise _parse_error(text, f"invalid field path {raw_field!r}")
            if operator == "~=":
                try:
                    re.compile(value)
                except re.error as exc:
                    raise _parse_error(text, f"invalid regular expression {value!r}") from exc
            selectors.append(Selector(path, operator, value))
        alternatives.append(tuple(selectors))
    return Filter(tuple(alternatives))


# ---------------------------------------------------------------------------------------------------- records


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ContainerRecord:
    """A containerd container: what to run (spec, image, runtime), not whether it runs."""

    id: str
    image: str
    runtime_name: str
    spec: dict[str, Any] | None  # OCI runtime spec JSON
    snapshotter: str
    snapshot_key: str
    labels: dict[str, str]
    created_at: datetime
    updated_at: datetime
    extensions: dict[str, bytes] = field(default_factory=dict)


_UPDATABLE = ("labels", "spec", "extensions", "image", "snapshotkey")
CONTAINER_FILTER_FIELDS = frozenset({"id", "image", "runtime", "snapshotter", "labels"})


def _container_field(record: ContainerRecord, path: tuple[str, ...]) -> str | None:
    head, rest = path[0], path[1:]
    if head == "id" and not rest:
        return record.id
    if head == "image" and not rest:
        return record.image
    if head == "runtime" and rest in (("name",), ()):
        return record.runtime_name if rest else None
    if head == "snapshotter" and not rest:
        return record.snapshotter
    if head == "labels" and rest:
        return record.labels.get(".".join(rest))
    return None


def _container_adaptor(record: ContainerRecord) -> FieldAdaptor:
    return lambda path: _container_field(record, path)


def _to_json(record: ContainerRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "image": record.image,
        "runtime_name": record.runtime_name,
        "spec": record.spec,
        "snapshotter": record.snapshotter,
        "snapshot_key": record.snapshot_key,
        "labels": record.labels,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "extensions": {k: base64.b64encode(v).decode() for k, v in record.extensions.items()},
    }


def _from_json(raw: dict[str, Any]) -> ContainerRecord:
    return ContainerRecord(
        id=raw["id"],
        image=raw.get("image", ""),
        runtime_name=raw.get("runtime_name", ""),
        spec=raw.get("spec"),
        snapshotter=raw.get("snapshotter", ""),
        snapshot_key=raw.get("snapshot_key", ""),
        labels=dict(raw.get("labels") or {}),
        created_at=datetime.fromisoformat(raw["created_at"]),
        updated_at=datetime.fromisoformat(raw["updated_at"]),
        extensions={k: base64.b64decode(v) for k, v in (raw.get("extensions") or {}).items()},
    )


V = TypeVar("V")


def update_map(current: Mapping[str, V], wanted: Mapping[str, V], path: str, field: str) -> dict[str, V] | None:
    """containerd's field-path rule for a map field: "field" replaces it, "field.<key>" sets the key (or removes
    it when ``wanted`` lacks it); None when the path names another field."""
    if path == field:
        return dict(wanted)
    if not path.startswith(field + "."):
        return None
    key = path[len(field) + 1:]
    result = dict(current)
    if key in wanted:
        result[key] = wanted[key]
    else:
        result.pop(key, None)
    return result


class ContainerStore:
    """Container records by namespace, one JSON file per namespace under ``<root>/metadata/containers/``."""

    def __init__(self, root: Path) -> None:
        self._dir = Path(root) / "metadata" / "containers"
        self._lock = threading.Lock()

    def _path(self, ns: str) -> Path:
        validate_identifier(ns)
        return self._dir / f"{ns}.json"

    def _load(self, ns: str) -> dict[str, ContainerRecord]:
        try:
            raw = atomicfile.read_json(self._path(ns))
        except FileNotFoundError:
            return {}
        return {entry["id"]: _from_json(entry) for entry in raw.get("containers", [])}

    def _save(self, ns: str, records: dict[str, ContainerRecord]) -> None:
        path = self._path(ns)
        if not records:
            path.unlink(missing_ok=True)
            return
        atomicfile.write_json(path, {"containers": [_to_json(records[k]) for k in sorted(records)]}, mode=0o600)

    @staticmethod
    def _not_found(ns: str, container_id: str) -> NotFound:
        return NotFound(f'container "{container_id}" in namespace "{ns}": not found')

    def namespaces(self) -> list[str]:
        """Namespaces that hold at least one container record."""
        if not self._dir.is_dir():
            return []
        return sorted(p.stem for p in self._dir.glob("*.json"))

    def get(self, ns: str, container_id: str) -> ContainerRecord:
        with self._lock:
            records = self._load(ns)
        try:
            return records[container_id]
        except KeyError:
            raise self._not_found(ns, container_id) from None

    def list(self, ns: str, filters: Sequence[str] = ()) -> list[ContainerRecord]:
        parsed = parse_filters(filters)
        unknown = parsed.fields() - CONTAINER_FILTER_FIELDS
        if unknown:
            raise InvalidArgument(
                f"filters: unknown field {min(unknown)!r} for containers "
                f"(supported: {', '.join(sorted(CONTAINER_FILTER_FIELDS))}): invalid argument"
            )
        with self._lock:
            records = self._load(ns)
        return [rec for _, rec in sorted(records.items()) if parsed.match(_container_adaptor(rec))]

    def create(self, ns: str, record: ContainerRecord) -> ContainerRecord:
        """Store a new record; created_at and updated_at are set to now (as containerd does)."""
        validate_identifier(record.id)
        if not record.runtime_name:
            raise InvalidArgument("container.Runtime.Name must be set: invalid argument")
        validate_labels(record.labels)
        now = _utcnow()
        stored = replace(record, created_at=now, updated_at=now)
        with self._lock:
            records = self._load(ns)
            if record.id in records:
                raise AlreadyExists(f'container "{record.id}": already exists')
            records[record.id] = stored
            self._save(ns, records)
        return stored

    def update(self, ns: str, record: ContainerRecord, fieldpaths: Sequence[str] = ()) -> ContainerRecord:
        """Apply containerd's update rules: with no paths, replace the mutable fields and refuse immutable changes;
        "labels.<k>" / "extensions.<k>" set or remove one key."""
        with self._lock:
            records = self._load(ns)
            if record.id not in records:
                raise self._not_found(ns, record.id)
            current = records[record.id]
            paths = list(fieldpaths)
            if not paths:
                paths = list(_UPDATABLE)
                if record.runtime_name != current.runtime_name:
                    raise InvalidArgument("container.Runtime.Name field is immutable: invalid argument")
                if record.snapshotter != current.snapshotter:
                    raise InvalidArgument("container.Snapshotter field is immutable: invalid argument")
            labels = dict(current.labels)
            extensions = dict(current.extensions)
            updated = current
            for path in paths:
                if (new_labels := update_map(labels, record.labels, path, "labels")) is not None:
                    labels = new_labels
                elif (new_extensions := update_map(extensions, record.extensions, path, "extensions")) is not None:
                    extensions = new_extensions
                elif path == "spec":
                    updated = replace(updated, spec=record.spec)
                elif path == "image":
                    updated = replace(updated, image=record.image)
                elif path in ("snapshotkey", "snapshot_key"):
                    updated = replace(updated, snapshot_key=record.snapshot_key)
                else:
                    raise InvalidArgument(f'cannot update "{path}" field on "{record.id}": invalid argument')
            validate_labels(labels)
            updated = replace(updated, labels=labels, extensions=extensions, updated_at=_utcnow())
            records[record.id] = updated
            self._save(ns, records)
        return updated

    def delete(self, ns: str, container_id: str) -> None:
        with self._lock:
            records = self._load(ns)
            if container_id not in records:
                raise self._not_found(ns, container_id)
            del records[container_id]
            self._save(ns, records)
