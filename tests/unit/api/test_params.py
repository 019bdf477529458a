"""Query parsing as Docker does it: filters in both JSON forms, booleans, timestamps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aiohttp.test_utils import TestClient, make_mocked_request

from aiodock.api import params
from aiodock.errors import InvalidArgument
from tests.unit.api.api_fakes import Containers


@pytest.mark.parametrize("raw", ['{"status": ["running", "paused"]}',
                                 '{"status": {"running": true, "paused": true}}'])
def test_filters_both_forms(raw: str) -> None:
    assert params.parse_filters(raw) == {"status": ["running", "paused"]}


def test_filters_legacy_false_values_dropped() -> None:
    assert params.parse_filters('{"label": {"a=b": true, "c": false}}') == {"label": ["a=b"]}


@pytest.mark.parametrize("raw", ["{", "[1]", '{"a": 1}', '{"a": [1]}'])
def test_filters_invalid(raw: str) -> None:
    with pytest.raises(InvalidArgument):
        params.parse_filters(raw)


@pytest.mark.parametrize(("value", "expected"), [
    ("1", True), ("true", True), ("True", True), ("yes", True),
    ("0", False), ("false", False), ("False", False), ("", False), ("none", False),
])
def test_booleans(value: str, expected: bool) -> None:
    request = make_mocked_request("GET", f"/containers/json?all={value}")
    assert params.boolean(request, "all") is expected


def test_boolean_default() -> None:
    request = make_mocked_request("GET", "/images/load")
    assert params.boolean(request, "quiet", default=True) is True


@pytest.mark.parametrize(("raw", "expected"), [
    ("1700000000", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
    ("1700000000.250000000", datetime(2023, 11, 14, 22, 13, 20, 250000, tzinfo=UTC)),
    ("2023-11-14T22:13:20Z", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
    ("2023-11-14T22:13:20.5+00:00", datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC)),
])
def test_timestamps(raw: str, expected: datetime) -> None:
    request = make_mocked_request("GET", f"/containers/c1/logs?since={raw.replace('+', '%2B')}")
    assert params.timestamp(request, "since") == expected


def test_bad_timestamp() -> None:
    with pytest.raises(InvalidArgument):
        params.timestamp(make_mocked_request("GET", "/x?since=yesterday"), "since")


@pytest.mark.parametrize(("raw", "expected"), [("all", None), ("10", 10), ("-1", None), ("x", None)])
def test_tail(raw: str, expected: int | None) -> None:
    assert params.tail(make_mocked_request("GET", f"/x?tail={raw}")) == expected


async def test_list_filters_reach_backend(client: TestClient, containers: Containers) -> None:
    resp = await client.get("/containers/json", params={
        "all": "1", "limit": "3", "size": "True", "filters": '{"label": {"a=b": true}}'})
    assert resp.status == 200
    assert containers.calls[-1] == ("list", {"all": True, "limit": 3, "size": True, "filters": {"label": ["a=b"]}})


async def test_list_bad_filters_is_400(client: TestClient) -> None:
    resp = await client.get("/containers/json", params={"filters": "{nope"})
    assert resp.status == 400
    assert "invalid filter" in (await resp.json())["message"]
