"""Typed application keys under which the daemon hands the backends to the routes."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from aiodock.engine.backend import ContainerBackend, ImageBackend, SystemBackend

CONTAINERS = web.AppKey("containers", ContainerBackend)
IMAGES = web.AppKey("images", ImageBackend)
SYSTEM = web.AppKey("system", SystemBackend)
# Optional: where request bodies (import/load) and save tarballs are staged; default the system temp dir.
TMP_DIR = web.AppKey("tmp_dir", Path)
