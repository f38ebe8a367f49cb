"""The OpenAPI-checking handler refuses what Fly's document does not allow.

Every client test leans on these checks, so they are tested on their own: a handler that let
everything through would make the request tests pass for a broken client.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .openapi import FlyAPI, SpecViolation

BASE = "https://api.machines.dev"
AUTH = {"authorization": "Bearer fm2_0123456789"}


def _request(
    method: str, path: str, *, json: Any = None, headers: dict[str, str] | None = None
) -> httpx.Request:
    return httpx.Request(method, BASE + path, json=json, headers={**AUTH, **(headers or {})})


@pytest.mark.parametrize(
    ("request_", "complaint"),
    [
        (_request("GET", "/v1/apps/demo/gadgets"), "no such path"),
        (_request("PATCH", "/v1/apps/demo/machines/m1/start"), "method not allowed"),
        (_request("DELETE", "/v1/apps/demo/machines/m1?purge=true"), "'purge' is not declared"),
        (_request("DELETE", "/v1/apps/demo/machines/m1?kill=maybe"), "is not a valid boolean"),
        (_request("GET", "/v1/apps/demo/machines?limit=many"), "is not a valid integer"),
        (_request("GET", "/v1/apps/demo/machines?summary=1"), "is not a valid boolean"),
        (_request("GET", "/v1/apps/demo/machines/m1/wait?state=running"), "is not one of"),
        (_request("GET", "/v1/apps/demo/machines?region=syd&region=dfw"), "sent twice"),
        (_request("GET", "/v1/apps?app_role=x"), "required query parameter 'org_slug'"),
        (_request("DELETE", "/v1/apps/demo/machines/m1/lease"), "'fly-machine-lease-nonce'"),
        (_request("POST", "/v1/apps/demo/machines/m1/lease"), "request body is required"),
        (
            _request("POST", "/v1/apps/demo/machines/m1/lease", json={"ttl": "13s"}),
            "is not of type 'integer'",
        ),
        (
            _request("POST", "/v1/apps/demo/machines/m1/lease", json={"ttl": 13, "kill": 1}),
            "['kill'] are not in the schema",
        ),
        (
            _request(
                "POST",
                "/v1/apps/demo/machines",
                json={"region": "syd", "config": {"guest": {"cpus": "2"}}},
            ),
            "config/guest/cpus",
        ),
        (_request("POST", "/v1/apps/demo/machines/m1/start", json={"x": 1}), "does not take"),
        (
            httpx.Request("GET", BASE + "/v1/apps/demo"),
            "no bearer token",
        ),
    ],
)
def test_requests_outside_the_document_are_refused(request_: httpx.Request, complaint: str) -> None:
    with pytest.raises(SpecViolation) as info:
        FlyAPI().check(request_)
    assert complaint in str(info.value)


def test_a_request_inside_the_document_is_read() -> None:
    call = FlyAPI().check(
        _request(
            "GET",
            "/v1/apps/demo/machines?metadata.fly_release_id=v2&metadata.orch_slot=1&limit=10",
        )
    )
    assert call.operation_id == "Machines_list"
    assert call.path_params == {"app_name": "demo"}
    assert call.query_value("metadata.orch_slot") == "1"


def test_literal_paths_win_over_templates() -> None:
    call = FlyAPI().check(_request("GET", "/v1/apps/demo/machines/m1/metadata"))
    assert call.operation_id == "Machines_show_metadata"


def test_unanswered_operations_fail_the_test() -> None:
    api = FlyAPI()
    with pytest.raises(SpecViolation, match="no answer for Apps_show"):
        api(_request("GET", "/v1/apps/demo"))
