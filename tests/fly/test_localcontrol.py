"""The local Fly's outage switch: what the client sends and how it reports a refusal."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from orchestrator.errors import LocalFlyError
from orchestrator.fly.localcontrol import LocalFlyControl
from orchestrator.settings import Token


def test_an_outage_is_asked_with_the_bearer_token_and_its_body_returned() -> None:
    seen: list[tuple[str, str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.headers["authorization"]))
        return httpx.Response(200, json={"machines": ["m1", "m2"]})

    control = LocalFlyControl(
        "http://127.0.0.1:1/", Token("s3cret"), transport=httpx.MockTransport(answer)
    )
    body = asyncio.run(control.outage("POST", "syd"))
    assert body == {"machines": ["m1", "m2"]}
    asyncio.run(control.outage("DELETE", "syd"))
    assert seen == [
        ("POST", "/_localfly/outage/syd", "Bearer s3cret"),
        ("DELETE", "/_localfly/outage/syd", "Bearer s3cret"),
    ]


def test_a_refusal_names_the_request_and_the_status() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="no region 'xyz'")

    control = LocalFlyControl(
        "http://127.0.0.1:1", Token("t"), transport=httpx.MockTransport(answer)
    )
    with pytest.raises(LocalFlyError) as err:
        asyncio.run(control.outage("POST", "xyz"))
    assert str(err.value) == "POST /_localfly/outage/xyz answered 404: no region 'xyz'"


def test_no_answer_is_a_local_fly_error_without_the_token() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    control = LocalFlyControl(
        "http://127.0.0.1:1", Token("s3cret"), transport=httpx.MockTransport(answer)
    )
    with pytest.raises(LocalFlyError, match="outage control did not answer") as err:
        asyncio.run(control.outage("DELETE", "syd"))
    assert "s3cret" not in str(err.value)
