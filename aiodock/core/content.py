"""Content-addressed blob store (containerd's content store) at ``<root>/content``.

Layout: ``blobs/sha256/<hex>`` holds committed blobs, ``ingest/`` holds partial writes, ``labels/sha256/<hex>.json``
holds blob labels. Every blob is verified against its sha256 before the atomic rename into ``blobs``.
Blocking: async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, BinaryIO

from aiodock.errors import InvalidArgument, NotFound
from aiodock.util import atomicfile

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
CHUNK = 1 << 20


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is ``sha256:<64 hex>``, else raise InvalidArgument (never a path)."""
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise InvalidArgument(f"invalid digest {digest!r}: must be sha256:<64 lowercase hex>")
    return digest


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: str
    size: int
    created_at: datetime
    updated_at: datetime
    labels: dict[str, str] = field(default_factory=dict)


class IngestWriter:
    """A partial write under ``ingest/``: feed bytes with write(), then commit() or abort()."""

    def __init__(self, store: ContentStore) -> None:
        self._store = store
        self.path = store.ingest_dir / f"{secrets.token_hex(16)}.partial"
        self._fh: BinaryIO | None = open(self.path, "xb")  # noqa: SIM115 - closed in commit/abort
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        assert self._fh is not None, "ingest already finished"
        self._fh.write(data)
        self._hash.update(data)
        self.size += len(data)

    def reset(self) -> None:
        """Drop what was written so far (a resumed download the server answered from the start)."""
        assert self._fh is not None, "ingest already finished"
        self._fh.seek(0)
        self._fh.truncate()
        self._hash = hashlib.sha256()
        self.size = 0

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def commit(self, expected: str | None = None, expected_size: int | None = None) -> tuple[str, int]:
        """Verify, fsync and rename into blobs; on mismatch nothing is committed (InvalidArgument)."""
        assert self._fh is not None, "ingest already finished"
        digest = self.digest
        try:
            if expected is not None and validate_digest(expected) != digest:
                raise InvalidArgument(f"unexpected commit digest {digest}, expected {expected}: failed precondition")
            if expected_size is not None and expected_size != self.size:
                raise InvalidArgument(
                    f"unexpected commit size {self.size}, expected {expected_size}: failed precondition"
                )
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
            target = self._store.path(digest)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(self.path, 0o444)
            os.replace(self.path, target)
            atomicfile.fsync_dir(target.parent)
        except BaseException:
            self.abort()
            raise
        return digest, self.size

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class ContentStore:
    """Blobs addressed by sha256 digest, stored on disk under ``<root>/content``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "content"
        self.blobs_dir = self.root / "blobs" / "sha256"
        self.ingest_dir = self.root / "ingest"
        self.labels_dir = self.root / "labels" / "sha256"
        for d in (self.blobs_dir, self.ingest_dir, self.labels_dir):
            d.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.blobs_dir / validate_digest(digest)[len("sha256:"):]

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def info(self, digest: str) -> BlobInfo:
        try:
            st = os.stat(self.path(digest))
        except FileNotFoundError:
            raise NotFound(f"content digest {digest}: not found") from None
        created = datetime.fromtimestamp(st.st_mtime, UTC)
        labels: dict[str, str] = {}
        updated = created
        label_file = self._labels_path(digest)
        try:
            raw = atomicfile.read_json(label_file)
            labels = {str(k): str(v) for k, v in raw.get("labels", {}).items()}
            updated = datetime.fromtimestamp(os.stat(label_file).st_mtime, UTC)
        except (FileNotFoundError, ValueError):
            pass
        return BlobInfo(digest, st.st_size, created, updated, labels)

    def list(self) -> list[BlobInfo]:
        found = []
        for entry in sorted(os.listdir(self.blobs_dir)):
            digest = "sha256:" + entry
            if DIGEST_RE.match(digest):
                try:
                    found.append(self.info(digest))
                except NotFound:
                    continue  # deleted meanwhile
        return found

    def update_labels(self, digest: str, labels: dict[str, str]) -> BlobInfo:
        """Replace the labels of a blob (containerd's content Update with the labels field path)."""
        self.info(digest)
        atomicfile.write_json(self._labels_path(digest), {"labels": dict(labels)})
        return self.info(digest)

    def read(self, digest: str) -> bytes:
        with self.open(digest) as fh:
            return fh.read()

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"content digest {digest}: not found") from None

    def writer(self) -> IngestWriter:
        return IngestWriter(self)

    def write(self, data: bytes, expected: str | None = None) -> str:
        digest = sha256_digest(data)
        if expected is not None and validate_digest(expected) != digest:
            raise InvalidArgument(f"unexpected commit digest {digest}, expected {expected}: failed precondition")
        if self.exists(digest):
            return digest
        w = self.writer()
        w.write(data)
        return w.commit(digest)[0]

    def ingest_file(self, src: Path | IO[bytes], expected: str | None = None) -> tuple[str, int]:
        """Stream a file or reader into the store; the digest is verified before anything is committed."""
        if expected is not None:
            validate_digest(expected)
        w = self.writer()
        try:
            if isinstance(src, (str, Path)):
                with open(src, "rb") as fh:
                    _copy_into(fh, w)
            else:
                _copy_into(src, w)
        except BaseException:
            w.abort()
            raise
        if expected is not None and w.digest == expected and self.exists(expected):
            size = w.size
            w.abort()
            return expected, size
        return w.commit(expected)

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            raise NotFound(f"content digest {digest}: not found") from None
        try:
            os.unlink(self._labels_path(digest))
        except FileNotFoundError:
            pass

    def _labels_path(self, digest: str) -> Path:
        return self.labels_dir / (validate_digest(digest)[len("sha256:"):] + ".json")


def _copy_into(src: IO[bytes], w: IngestWriter) -> None:
    while chunk := src.read(CHUNK):
        w.write(chunk)
