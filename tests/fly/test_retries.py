"""Transient failures are retried (stamina, instant in tests), the rest are raised at once.

tests/conftest.py switches stamina to test mode (5 attempts, no backoff). ``Retry-After`` waits go
through the client's clock, so the fake clock records them and nothing really sleeps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from orchestrator.errors import (
    FlyAPIError,
    FlyAuthError,
    FlyBadRequest,
    FlyConflict,
    FlyNotFound,
    FlyRateLimited,
    FlyServerError,
    FlyTransportError,
    FlyWaitTimeout,
)
from orchestrator.fly.client import FlyClient
from orchestrator.fly.wire import RETRY_POLICY, parse_retry_after

from . import samples
from .conftest import FakeClock
from .openapi import FlyAPI, json_response

pytestmark = pytest.mark.anyio

APP = "demo"
MID = "148ed193b95e89"
OK = json_response(200, samples.machine())


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_are_retried_until_an_answer(
    api: FlyAPI, fly: FlyClient, status: int
) -> None:
    api.on("Machines_show", json_response(status, {"error": "flaps hiccup"}), OK)
    machine = await fly.get_machine(APP, MID)
    assert machine.id == MID
    assert len(api.calls) == 2
    assert fly.api_calls == 2


async def test_persistent_server_errors_give_up_after_the_attempts(
    api: FlyAPI, fly: FlyClient
) -> None:
    api.on(
        "Machines_show",
        json_response(503, {"error": "unavailable", "status": "unknown"}, fly_request_id="r-5"),
    )
    with pytest.raises(FlyServerError) as info:
        await fly.get_machine(APP, MID)
    assert len(api.calls) == 5  # stamina's test mode: 5 attempts
    assert info.value.status_code == 503
    assert info.value.request_id == "r-5"


async def test_rate_limited_calls_wait_at_least_retry_after_then_succeed(
    api: FlyAPI, fly: FlyClient, clock: FakeClock
) -> None:
    api.on("Machines_show", json_response(429, {"error": "slow down"}, retry_after="7"), OK)
    await fly.get_machine(APP, MID)
    assert len(api.calls) == 2
    assert clock.sleeps == [7.0]


async def test_retry_after_as_an_http_date_is_honoured(
    api: FlyAPI, fly: FlyClient, clock: FakeClock
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    api.on("Machines_show", json_response(429, {"error": "slow down"}, retry_after=when), OK)
    await fly.get_machine(APP, MID)
    (waited,) = clock.sleeps
    assert 25 <= waited <= 30


async def test_a_retry_after_beyond_the_retry_budget_is_raised_at_once(
    api: FlyAPI, fly: FlyClient, clock: FakeClock
) -> None:
    too_long = str(int(RETRY_POLICY.timeout) + 60)
    api.on("Machines_show", json_response(429, {"error": "slow down"}, retry_after=too_long))
    with pytest.raises(FlyRateLimited) as info:
        await fly.get_machine(APP, MID)
    assert info.value.retry_after == float(too_long)
    assert len(api.calls) == 1
    assert clock.sleeps == []


async def test_rate_limited_without_retry_after_is_retried_with_backoff_only(
    api: FlyAPI, fly: FlyClient, clock: FakeClock
) -> None:
    api.on("Machines_show", json_response(429, {"error": "slow down"}), OK)
    await fly.get_machine(APP, MID)
    assert len(api.calls) == 2
    assert clock.sleeps == []


async def test_transport_errors_are_retried(api: FlyAPI, fly: FlyClient) -> None:
    api.on(
        "Machines_show",
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
        OK,
    )
    assert (await fly.get_machine(APP, MID)).id == MID
    assert len(api.calls) == 3


async def test_persistent_transport_errors_become_fly_transport_error_from_httpx(
    api: FlyAPI, fly: FlyClient
) -> None:
    api.on("Machines_show", httpx.ConnectError("connection refused"))
    with pytest.raises(FlyTransportError, match="ConnectError: connection refused") as info:
        await fly.get_machine(APP, MID)
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert len(api.calls) == 5


async def test_a_request_timeout_408_is_retried_outside_wait(api: FlyAPI, fly: FlyClient) -> None:
    api.on("Machines_show", json_response(408, {"error": "request timed out"}), OK)
    await fly.get_machine(APP, MID)
    assert len(api.calls) == 2


async def test_a_wait_that_runs_out_is_raised_not_retried(api: FlyAPI, fly: FlyClient) -> None:
    api.on("Machines_wait", json_response(408, {"error": "deadline exceeded"}))
    with pytest.raises(FlyWaitTimeout):
        await fly.wait_machine(APP, MID, state="started", timeout=5)
    assert len(api.calls) == 1


async def test_a_wait_is_retried_on_server_errors(api: FlyAPI, fly: FlyClient) -> None:
    api.on(
        "Machines_wait",
        json_response(502, {"error": "bad gateway"}),
        json_response(200, {"ok": True, "state": "started"}),
    )
    assert (await fly.wait_machine(APP, MID)).state == "started"
    assert len(api.calls) == 2


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, FlyBadRequest),
        (401, FlyAuthError),
        (403, FlyAuthError),
        (404, FlyNotFound),
        (409, FlyConflict),
        (422, FlyBadRequest),
    ],
)
async def test_client_errors_are_not_retried(
    api: FlyAPI, fly: FlyClient, status: int, error: type[FlyAPIError]
) -> None:
    api.on("Machines_start", json_response(status, {"error": "no"}))
    with pytest.raises(error):
        await fly.start_machine(APP, MID)
    assert len(api.calls) == 1


async def test_creates_are_retried_with_the_same_request(api: FlyAPI, fly: FlyClient) -> None:
    # Ambiguous: the first create may have happened. The executor tags creates with a launch
    # id in metadata so it can find such a machine; the client just retries the same body.
    api.on(
        "Machines_create",
        json_response(503, {"error": "unavailable"}),
        json_response(200, samples.machine()),
    )
    body = {"image": "nginx:1", "metadata": {"orch_launch_id": "L-1"}}
    await fly.create_machine(APP, body, region="syd")
    first, second = api.calls
    assert first.body == second.body
    assert second.body["config"]["metadata"]["orch_launch_id"] == "L-1"


def test_parse_retry_after() -> None:
    now = datetime(2026, 8, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("Sat, 01 Aug 2026 12:00:10 GMT", now=now) == 10.0
    assert parse_retry_after("Sat, 01 Aug 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None
