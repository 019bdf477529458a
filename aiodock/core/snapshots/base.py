"""The Snapshotter protocol, modelled on containerd's snapshots.Snapshotter. Synchronous (use a thread)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from aiodock.core.mount import Mount


class Kind(StrEnum):
    VIEW = "View"
    ACTIVE = "Active"
    COMMITTED = "Committed"


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    name: str
    parent: str
    kind: Kind
    created_at: datetime
    updated_at: datetime
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Usage:
    size: int  # bytes of file content (hardlinks counted once, directories not counted)
    inodes: int


class Snapshotter(Protocol):
    """Active snapshots are writable, views read-only, committed ones are parents for others."""

    def stat(self, key: str) -> SnapshotInfo:
        """NotFound when the key does not exist."""
        ...

    def update(self, key: str, labels: dict[str, str]) -> SnapshotInfo:
        """Replace the labels of a snapshot."""
        ...

    def usage(self, key: str) -> Usage: ...

    def mounts(self, key: str) -> list[Mount]:
        """Mounts of an active snapshot or view (FailedPrecondition for a committed one)."""
        ...

    def prepare(self, key: str, parent: str = "", labels: dict[str, str] | None = None) -> list[Mount]:
        """A new writable snapshot on top of the committed ``parent`` ("" for an empty one)."""
        ...

    def view(self, key: str, parent: str = "", labels: dict[str, str] | None = None) -> list[Mount]:
        """A new read-only snapshot of the committed ``parent``."""
        ...

    def commit(self, name: str, key: str, labels: dict[str, str] | None = None) -> None:
        """Turn the active snapshot ``key`` into the committed snapshot ``name``."""
        ...

    def remove(self, key: str) -> None:
        """Remove a snapshot; FailedPrecondition when it has children."""
        ...

    def list(self) -> list[SnapshotInfo]: ...
