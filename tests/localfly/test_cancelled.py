"""A call the client cancels mid-flight is a closed connection, not a server error.

The orchestrator cancels calls (a lease refresh, a ``/wait`` long-poll) by closing the
connection. The local Fly must count such a call as 499 ("client closed request") in
``/_localfly/stats`` and ``requests.log``, log no traceback, and stop waiting for a client that
is gone.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from orchestrator.localfly.control import Endpoint

from .helpers import await_for, unique_app

pytestmark = pytest.mark.anyio

# Long enough that a wait still held at the end of the test means it ignored the disconnect.
WAIT_TIMEOUT_S = 30


async def _fired(control: httpx.AsyncClient, rule: int) -> bool:
    faults = (await control.get("/_localfly/faults")).json()
    return bool(faults["rules"][rule]["fired"])


async def _cancel_mid_flight(
    endpoint: Endpoint, control: httpx.AsyncClient, rule: int, method: str, path: str, **kw: Any
) -> None:
    """Send one call on its own connection, then cancel it (closing the connection).

    The call is cancelled once the server holds it: fault rule number ``rule`` (one that
    matches only this call) has fired, so the handler is running.
    """
    async with httpx.AsyncClient(
        base_url=endpoint.api_url, headers=endpoint.headers, timeout=60
    ) as client:
        task = asyncio.ensure_future(client.request(method, path, **kw))
        await await_for(
            lambda: _fired(control, rule), timeout=10, what=f"the server to hold {method} {path}"
        )
        assert not task.done(), "the call answered before it could be cancelled"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def _counted(client: httpx.AsyncClient, operation: str) -> dict[str, int] | None:
    stats = (await client.get("/_localfly/stats")).json()
    counts: dict[str, int] = stats["operations"].get(operation, {})
    return counts or None


async def test_cancelled_calls_count_as_client_closed_without_a_traceback(
    own_localfly: Endpoint,
) -> None:
    ep = own_localfly
    app = unique_app()
    async with httpx.AsyncClient(base_url=ep.api_url, headers=ep.headers, timeout=30) as c:
        (await c.post("/v1/apps", json={"name": app})).raise_for_status()
        made = await c.post(
            f"/v1/apps/{app}/machines",
            json={"region": "syd", "config": {"image": "sleeper"}, "skip_launch": True},
        )
        made.raise_for_status()
        machine = f"/v1/apps/{app}/machines/{made.json()['id']}"
        # Lease calls are held before the handler reads their body, as a slow API would. The
        # one-millisecond rule on /wait changes nothing but says when the server has the call.
        rules = [
            {"operation": "Machines_wait", "delay_ms": 1},
            {"operation": "Machines_create_lease", "delay_ms": 1500},
        ]
        (await c.put("/_localfly/faults", json={"rules": rules})).raise_for_status()
        (await c.delete("/_localfly/stats")).raise_for_status()

        # A /wait long-poll for a state the machine never reaches, given up by the client.
        started = time.monotonic()
        await _cancel_mid_flight(
            ep,
            c,
            0,
            "GET",
            f"{machine}/wait",
            params={"state": "started", "timeout": WAIT_TIMEOUT_S},
        )
        waits = await await_for(
            lambda: _counted(c, "Machines_wait"), timeout=10, what="the cancelled /wait counted"
        )
        assert waits == {"499": 1}
        # The server stopped waiting when the client left, long before the wait's timeout.
        assert time.monotonic() - started < WAIT_TIMEOUT_S / 2

        # A lease refresh cancelled while the server holds it: the body is never read.
        await _cancel_mid_flight(ep, c, 1, "POST", f"{machine}/lease", json={"ttl": 10})
        leases = await await_for(
            lambda: _counted(c, "Machines_create_lease"),
            timeout=10,
            what="the cancelled lease call counted",
        )
        assert leases == {"499": 1}

        stats = (await c.get("/_localfly/stats")).json()
        assert "500" not in stats["by_status"]
        assert stats["by_status"]["499"] == 2

        # Nothing was left half-done: the machine takes a lease as usual.
        (await c.delete("/_localfly/faults")).raise_for_status()
        lease = await c.post(f"{machine}/lease", json={"ttl": 10})
        assert lease.status_code == 201, lease.text

    lines = [json.loads(x) for x in (ep.state_dir / "requests.log").read_text().splitlines()]
    cancelled = {x["operation"]: x["status"] for x in lines if x["status"] == 499}
    assert cancelled == {"Machines_wait": 499, "Machines_create_lease": 499}
    assert not [x for x in lines if x["status"] == 500]
    server_log = (ep.state_dir / "server.log").read_text(errors="replace")
    assert "Traceback" not in server_log
    assert "ClientDisconnect" not in server_log
