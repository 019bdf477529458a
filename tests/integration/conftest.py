"""Fixtures of the integration tests beyond tests/conftest.py: the TaskManager tests' busybox rootfs and harness."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from aiodock.core.runtime.testing import RuntimeHarness, build_busybox_rootfs

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runc") is None or not os.path.exists("/bin/busybox"),
    reason="needs root, runc and /bin/busybox",
)


@pytest.fixture(scope="module")
def rootfs() -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix="adk-rootfs-", dir="/tmp"))
    try:
        yield build_busybox_rootfs(tmp / "rootfs")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
async def harness(rootfs: Path) -> AsyncIterator[RuntimeHarness]:
    h = RuntimeHarness(rootfs)
    try:
        yield h
    finally:
        problems = await h.cleanup()
        assert not problems, problems
