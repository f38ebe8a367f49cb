"""Fly's error answers are mapped once to the orchestrator's error tree, with what support needs."""

from __future__ import annotations

import httpx
import pytest

from orchestrator.errors import (
    FlyAPIError,
    FlyAuthError,
    FlyBadRequest,
    FlyConflict,
    FlyLeaseHeld,
    FlyNotFound,
    FlyPreconditionFailed,
    FlyRateLimited,
    FlyServerError,
    FlyWaitTimeout,
    OrchestratorError,
)
from orchestrator.fly.client import FlyClient
from orchestrator.fly.wire import error_from_response

from .openapi import FlyAPI, json_response

APP = "demo"
MID = "148ed193b95e89"


def _error(status: int, body: object = None, **headers: str) -> FlyAPIError:
    if isinstance(body, str):
        response = httpx.Response(status, text=body, headers=headers)
    else:
        response = json_response(status, body, **headers)
    return error_from_response("POST", f"/v1/apps/{APP}/machines/{MID}/start", response)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, FlyBadRequest),
        (401, FlyAuthError),
        (403, FlyAuthError),
        (404, FlyNotFound),
        (408, FlyWaitTimeout),
        (409, FlyConflict),
        (412, FlyPreconditionFailed),
        (422, FlyBadRequest),
        (429, FlyRateLimited),
        (500, FlyServerError),
        (503, FlyServerError),
    ],
)
def test_each_status_maps_to_its_error(status: int, expected: type[FlyAPIError]) -> None:
    error = _error(status, {"error": "boom"})
    assert type(error) is expected
    assert isinstance(error, OrchestratorError)
    assert error.status_code == status


def test_the_message_names_the_call_the_status_fly_text_and_request_id() -> None:
    error = _error(
        422,
        {"error": "could not reserve resource for machine", "status": "insufficient_capacity"},
        fly_request_id="01J8X-req",
    )
    assert str(error) == (
        f"POST /v1/apps/{APP}/machines/{MID}/start: 422 could not reserve resource for machine "
        "(fly-request-id 01J8X-req)"
    )
    assert error.fly_status == "insufficient_capacity"
    assert error.request_id == "01J8X-req"
    assert (error.method, error.path) == ("POST", f"/v1/apps/{APP}/machines/{MID}/start")


def test_fly_go_message_field_is_read_too() -> None:
    assert _error(400, {"message": "invalid config"}).message == "invalid config"


def test_a_non_json_error_body_is_kept_as_text() -> None:
    error = _error(502, "<html>bad gateway</html>")
    assert isinstance(error, FlyServerError)
    assert error.message == "<html>bad gateway</html>"


def test_an_empty_error_body_falls_back_to_the_reason() -> None:
    assert _error(404).message == "Not Found"


def test_a_held_lease_is_told_by_the_request_not_by_the_word_lease() -> None:
    # A 409 to taking a lease is a held lease, whatever its text says.
    held = error_from_response(
        "POST", f"/v1/apps/{APP}/machines/{MID}/lease", json_response(409, {"error": "conflict"})
    )
    assert isinstance(held, FlyLeaseHeld)
    # A 409 elsewhere is a conflict, even when its text speaks of a lease.
    other = _error(409, {"error": "lease currently held by x"})
    assert isinstance(other, FlyConflict)
    assert not isinstance(other, FlyLeaseHeld)


def test_rate_limited_carries_retry_after() -> None:
    error = _error(429, {"error": "rate limited"}, retry_after="2")
    assert isinstance(error, FlyRateLimited)
    assert error.retry_after == 2.0


@pytest.mark.anyio
async def test_a_2xx_answer_that_is_not_json_is_an_api_error(api: FlyAPI, fly: FlyClient) -> None:
    api.on("Machines_show", httpx.Response(200, text="<html>captive portal</html>"))
    with pytest.raises(FlyAPIError, match="expected JSON"):
        await fly.get_machine(APP, MID)


@pytest.mark.anyio
async def test_a_2xx_answer_of_the_wrong_shape_is_an_api_error(api: FlyAPI, fly: FlyClient) -> None:
    api.on("Machines_list", json_response(200, {"machines": []}))
    with pytest.raises(FlyAPIError, match="expected a JSON array"):
        await fly.list_machines(APP)
