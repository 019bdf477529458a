"""Namespaces: containerd's tenancy unit. Every container, image and task lives in exactly one.

The store is plain synchronous code (one JSON file, atomic writes); async callers use ``asyncio.to_thread``.
The namespace of the current request travels in the ``current_namespace`` ContextVar (the gRPC adapter sets it
from the ``containerd-namespace`` metadata).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path

from aiodock.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from aiodock.util import atomicfile

DEFAULT_NAMESPACE = "default"

current_namespace: ContextVar[str] = ContextVar("current_namespace", default=DEFAULT_NAMESPACE)

# containerd identifiers: alphanumeric runs joined by single '.', '_' or '-', at most 76 characters.
IDENTIFIER_MAX_LENGTH = 76
_IDENTIFIER_RE = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")
LABEL_MAX_SIZE = 4096

# Tells which kinds of objects ("containers", "images", ...) a namespace still holds; empty when it holds none.
NamespaceUsage = Callable[[str], list[str]]


def namespace_from_context() -> str:
    """The namespace of the request being served ("default" when the caller sent none)."""
    return current_namespace.get()


def validate_identifier(value: str) -> None:
    """Raise InvalidArgument unless ``value`` is a valid containerd identifier (namespace, container id, ...)."""
    if not value:
        raise InvalidArgument("identifier must not be empty: invalid argument")
    if len(value) > IDENTIFIER_MAX_LENGTH:
        raise InvalidArgument(
            f'identifier "{value}" greater than maximum length ({IDENTIFIER_MAX_LENGTH} characters): '
            "invalid argument"
        )
    if not _IDENTIFIER_RE.fullmatch(value):
        raise InvalidArgument(f'identifier "{value}" must match {_IDENTIFIER_RE.pattern}: invalid argument')


def validate_labels(labels: Mapping[str, str]) -> None:
    """containerd caps each label (key plus value) at 4096 bytes."""
    for key, value in labels.items():
        if len(key.encode()) + len(value.encode()) > LABEL_MAX_SIZE:
            raise InvalidArgument(
                f"label key and value greater than maximum size ({LABEL_MAX_SIZE} bytes), key: {key[:64]}: "
                "invalid argument"
            )


def _no_usage(name: str) -> list[str]:
    return []


class NamespaceStore:
    """Namespaces and their labels, persisted in ``<root>/metadata/namespaces.json``.

    ``usage`` says which kinds of objects a namespace still holds; delete refuses non-empty namespaces.
    """

    def __init__(self, root: Path, usage: NamespaceUsage | None = None) -> None:
        self._path = Path(root) / "metadata" / "namespaces.json"
        self._lock = threading.Lock()
        self.usage: NamespaceUsage = usage or _no_usage

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            raw = atomicfile.read_json(self._path)
        except FileNotFoundError:
            return {}
        return {name: dict(entry.get("labels", {})) for name, entry in raw.get("namespaces", {}).items()}

    def _save(self, namespaces: dict[str, dict[str, str]]) -> None:
        doc = {"namespaces": {name: {"labels": namespaces[name]} for name in sorted(namespaces)}}
        atomicfile.write_json(self._path, doc, mode=0o600)

    def list(self) -> list[str]:
        with self._lock:
            return sorted(self._load())

    def exists(self, name: str) -> bool:
        with self._lock:
            return name in self._load()

    def get(self, name: str) -> dict[str, str]:
        """The labels of namespace ``name``."""
        with self._lock:
            namespaces = self._load()
        if name not in namespaces:
            raise NotFound(f'namespace "{name}": not found')
        return dict(namespaces[name])

    def create(self, name: str, labels: Mapping[str, str] | None = None) -> dict[str, str]:
        validate_identifier(name)
        labels = dict(labels or {})
        validate_labels(labels)
        with self._lock:
            namespaces = self._load()
            if name in namespaces:
                raise AlreadyExists(f'namespace "{name}": already exists')
            namespaces[name] = labels
            self._save(namespaces)
        return dict(labels)

    def ensure(self, name: str) -> None:
        """Create ``name`` without labels if it does not exist yet (containerd does this on first use)."""
        validate_identifier(name)
        with self._lock:
            namespaces = self._load()
            if name not in namespaces:
                namespaces[name] = {}
                self._save(namespaces)

    def update(
        self, name: str, labels: Mapping[str, str], fieldpaths: Sequence[str] = ()
    ) -> dict[str, str]:
        """Update labels like containerd: no paths or "labels" replaces them all, "labels.<k>" sets or removes k."""
        with self._lock:
            namespaces = self._load()
            if name not in namespaces:
                raise NotFound(f'namespace "{name}": not found')
            current = dict(namespaces[name])
            for path in fieldpaths or ["labels"]:
                if path == "labels":
                    current = dict(labels)
                elif path.startswith("labels."):
                    key = path[len("labels."):]
                    if key in labels:
                        current[key] = labels[key]
                    else:
                        current.pop(key, None)
                else:
                    raise InvalidArgument(f'cannot update "{path}" field on namespace "{name}": invalid argument')
            validate_labels(current)
            namespaces[name] = current
            self._save(namespaces)
        return dict(current)

    def delete(self, name: str) -> None:
        held = self.usage(name)
        if held:
            raise FailedPrecondition(
                f'namespace "{name}" must be empty, but it still has {", ".join(held)}: failed precondition'
            )
        with self._lock:
            namespaces = self._load()
            if name not in namespaces:
                raise NotFound(f'namespace "{name}": not found')
            del namespaces[name]
            self._save(namespaces)
