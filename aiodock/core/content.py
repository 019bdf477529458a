"""Content-addressed blob store (containerd's content store) at ``<root>/content``.

Layout: ``blobs/sha256/<hex>`` holds committed blobs, ``ingest/`` holds partial writes, ``labels/sha256/<hex>.json``
holds blob labels. Every blob is verified against its sha256 before the atomic rename into ``blobs``.
Blocking: async callers use ``asyncio.to_thread``.

Compressed variants: a gzip blob made from an uncompressed one (a layer compressed for push) carries containerd's
``containerd.io/uncompressed`` label (the uncompressed digest, i.e. the layer's diff id) and the uncompressed blob
carries ``aiodock.io/compressed.gzip`` (the gzip digest), so the next push finds and reuses the gzip blob.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, BinaryIO

from aiodock.errors import InvalidArgument, NotFound
from aiodock.util import atomicfile

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
CHUNK = 1 << 20
UNCOMPRESSED_LABEL = "containerd.io/uncompressed"  # on a compressed blob: the digest of its uncompressed form
GZIP_VARIANT_LABEL = "aiodock.io/compressed.gzip"  # on an uncompressed blob: the digest of its gzip form


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


class GzipIngest:
    """Gzip a blob while it streams, the gzip bytes going into an ingest (and back to the caller to send on).

    compress() and finish() return the gzip bytes they produced; commit() stores the blob and links it to the
    uncompressed one. zlib releases the GIL while it compresses, so several run at once in worker threads. The
    gzip header is zlib's (mtime 0, no file name): the same input and level always give the same blob."""

    def __init__(self, store: ContentStore, level: int) -> None:
        self._store = store
        self._zlib = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        self._writer = store.writer()
        self.finished = False

    def compress(self, data: bytes) -> bytes:
        out = self._zlib.compress(data)
        if out:
            self._writer.write(out)
        return out

    def finish(self) -> bytes:
        out = self._zlib.flush()
        self._writer.write(out)
        self.finished = True
        return out

    @property
    def digest(self) -> str:
        assert self.finished, "gzip stream not finished"
        return self._writer.digest

    @property
    def size(self) -> int:
        return self._writer.size

    def commit(self, uncompressed: str) -> tuple[str, int]:
        digest, size = self._writer.commit()
        self._store.link_compressed(uncompressed, digest)
        return digest, size

    def abort(self) -> None:
        self._writer.abort()


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

    def add_labels(self, digest: str, labels: dict[str, str]) -> BlobInfo:
        """Set these labels, keeping the others."""
        return self.update_labels(digest, {**self.info(digest).labels, **labels})

    def link_compressed(self, uncompressed: str, compressed: str) -> None:
        """Record that ``compressed`` is the gzip form of ``uncompressed`` (both must be stored)."""
        self.add_labels(compressed, {UNCOMPRESSED_LABEL: uncompressed})
        self.add_labels(uncompressed, {GZIP_VARIANT_LABEL: compressed})

    def gzip_variant(self, uncompressed: str) -> BlobInfo | None:
        """The stored gzip form of a blob, when one was made and is still there (and links back)."""
        try:
            compressed = self.info(uncompressed).labels.get(GZIP_VARIANT_LABEL, "")
            if not DIGEST_RE.match(compressed):
                return None
            info = self.info(compressed)
        except NotFound:
            return None
        return info if info.labels.get(UNCOMPRESSED_LABEL) == uncompressed else None

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
