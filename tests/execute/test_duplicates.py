"""A duplicate launch (two machines with one launch id) is destroyed through its lease.

A create retried after a lost answer can leave Fly with two machines carrying the same launch
id; one is kept, the other destroyed. Created with ``lease_ttl``, that duplicate carries a
lease whose nonce nobody saw, and Fly refuses to destroy a leased machine without it: the
step waits the lease out, takes it, and destroys the machine with it. Real local Fly, real
client, the executor's own step code.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator.execute.context import ExecuteOptions, RunState, StepContext
from orchestrator.execute.events import EventBus
from orchestrator.execute.journal import Journal
from orchestrator.execute.machines import _drop_duplicates
from orchestrator.fly.client import FlyClient
from orchestrator.fly.proxy import ProxyClient
from orchestrator.plan.steps import Step, StepKind

from .localfleet import APP, LocalFleet, copy_fleet

pytestmark = pytest.mark.timeout(120)
LEASE_TTL = 2


@pytest.fixture
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    root = copy_fleet(tmp_path_factory.mktemp("dups") / "fleet")
    fleet = LocalFleet.start(root)
    try:
        resp = fleet.api("POST", "/v1/apps", json={"name": APP, "org_slug": "personal"})
        assert resp.status_code in (200, 201), resp.text
        yield fleet
    finally:
        fleet.stop()


def _leased_machine(fleet: LocalFleet, launch: str) -> dict[str, Any]:
    config = {"image": "registry.fly.io/sample-app:v1", "metadata": {"orch_launch_id": launch}}
    body = {"config": config, "region": "syd", "lease_ttl": LEASE_TTL}
    resp = fleet.api("POST", f"/v1/apps/{APP}/machines", json=body)
    assert resp.status_code == 200, resp.text
    made: dict[str, Any] = resp.json()
    return made


async def _drop(fleet: LocalFleet, launch: str, keep: str) -> list[str]:
    step = Step(id="syd:machine.create:1", kind=StepKind.MACHINE_CREATE, region="syd", wave=1)
    bus = EventBus()
    notes: list[str] = []
    bus.subscribe(lambda event: notes.append(getattr(event, "message", "")))
    async with (
        FlyClient(fleet.endpoint.api_url, fleet.endpoint.token) as client,
        ProxyClient(fleet.endpoint.proxy_url, APP, host_header=True) as probe,
    ):
        with Journal.open(fleet.root) as journal:
            ctx = StepContext(
                client=client,
                app=APP,
                release="v1",
                run=1,
                journal=journal,
                bus=bus,
                probe=probe,
                options=ExecuteOptions(lease_ttl_s=LEASE_TTL, poll_s=0.2),
                state=RunState(),
            )
            await _drop_duplicates(ctx, step, launch, keep=keep)
            await ctx.state.settle()
    return notes


def test_a_leased_duplicate_launch_is_destroyed_once_its_lease_is_taken(
    fleet: LocalFleet,
) -> None:
    launch = str(uuid.uuid4())
    kept = _leased_machine(fleet, launch)
    duplicate = _leased_machine(fleet, launch)
    # Fly's answer to destroying it without the lease: refused, nothing destroyed.
    refused = fleet.api("DELETE", f"/v1/apps/{APP}/machines/{duplicate['id']}?force=true")
    assert refused.status_code == 409

    notes = asyncio.run(_drop(fleet, launch, kept["id"]))

    gone = fleet.api("GET", f"/v1/apps/{APP}/machines/{duplicate['id']}").json()
    assert gone["state"] == "destroyed"
    assert fleet.api("GET", f"/v1/apps/{APP}/machines/{kept['id']}").json()["state"] != "destroyed"
    assert any(duplicate["id"] in n and "duplicates" in n for n in notes), notes
