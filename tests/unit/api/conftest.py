"""Fixtures: the real app over in-test backends (api_fakes), served by aiohttp's test server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from aiodock.api import create_app
from tests.unit.api.api_fakes import Containers, Images, System


@pytest.fixture
def containers() -> Containers:
    return Containers()


@pytest.fixture
def images() -> Images:
    return Images()


@pytest.fixture
def app(containers: Containers, images: Images, tmp_path: Path) -> web.Application:
    return create_app(containers=containers, images=images, system=System(), tmp_dir=tmp_path)


@pytest.fixture
async def client(app: web.Application) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


