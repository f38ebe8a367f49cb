"""The client spaces requests to Fly's documented limits, measured on a fake clock.

Fly (fly-notes.md §4): 1 request/s per action per machine (or app), burst 3; get machine 5/s,
burst 10. A burst beyond that must be spaced, never sent to provoke a 429.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from orchestrator.fly.client import FlyClient
from orchestrator.fly.ratelimit import Limit, RateLimiter

from . import samples
from .conftest import BASE_URL, TOKEN, FakeClock
from .openapi import FlyAPI, Recorded, json_response

pytestmark = pytest.mark.anyio

APP = "demo"
OK = json_response(200, {"ok": True})


def _stamp(api: FlyAPI, operation: str, clock: FakeClock, times: list[float]) -> None:
    """Answer ``operation`` with 200, noting the (fake) time each request reached Fly."""

    def answer(call: Recorded) -> httpx.Response:
        times.append(clock.now)
        if operation == "Machines_show":
            return json_response(200, samples.machine(call.path_params["machine_id"]))
        return OK

    api.on(operation, answer)


async def test_a_burst_on_one_machine_and_action_is_spaced_one_per_second(
    api: FlyAPI, fly: FlyClient, clock: FakeClock
) -> None:
    times: list[float] = []
    _stamp(api, "Machines_start", clock, times)
    for _ in range(6):
        await fly.start_machine(APP, "m1")
    assert times == [0.0, 0.0, 0.0, 1.0, 2.0, 3.0]


async def test_get_machine_has_its_own_faster_budget(
    api: FlyAPI, fly: FlyClient, clock: FakeClock
) -> None:
    times: list[float] = []
    _stamp(api, "Machines_show", clock, times)
    for _ in range(12):
        await fly.get_machine(APP, "m1")
    assert times[:10] == [0.0] * 10
    assert times[10:] == pytest.approx([0.2, 0.4])


async def test_other_machines_and_other_actions_do_not_wait(
    api: FlyAPI, fly: FlyClient, clock: FakeClock
) -> None:
    times: list[float] = []
    _stamp(api, "Machines_start", clock, times)
    _stamp(api, "Machines_stop", clock, times)
    for machine_id in ("m1", "m2", "m3"):
        for _ in range(3):
            await fly.start_machine(APP, machine_id)
            await fly.stop_machine(APP, machine_id)
    assert times == [0.0] * 18
    assert clock.sleeps == []


async def test_a_quiet_spell_refills_the_burst(
    api: FlyAPI, fly: FlyClient, clock: FakeClock
) -> None:
    times: list[float] = []
    _stamp(api, "Machines_cordon", clock, times)
    for _ in range(3):
        await fly.cordon_machine(APP, "m1")
    clock.now += 10
    for _ in range(4):
        await fly.cordon_machine(APP, "m1")
    assert times == [0.0, 0.0, 0.0, 10.0, 10.0, 10.0, 11.0]


async def test_app_scoped_calls_share_the_app_bucket(
    api: FlyAPI, fly: FlyClient, clock: FakeClock
) -> None:
    times: list[float] = []

    def answer(call: Recorded) -> httpx.Response:
        times.append(clock.now)
        return json_response(200, samples.machine())

    api.on("Machines_create", answer)
    for _ in range(4):
        await fly.create_machine(APP, {"image": "x"}, region="syd")
    assert times == [0.0, 0.0, 0.0, 1.0]


async def test_concurrent_callers_are_spaced_in_call_order() -> None:
    clock = FakeClock()
    delays: list[float] = []

    async def one() -> None:
        delays.append(limiter.reserve("machine.update", APP, "m1"))

    limiter = RateLimiter(clock=clock)
    await asyncio.gather(*(one() for _ in range(6)))
    assert delays == [0.0, 0.0, 0.0, 1.0, 2.0, 3.0]


async def test_a_long_poll_wait_does_not_hold_up_other_actions_on_the_machine(
    api: FlyAPI, fly: FlyClient
) -> None:
    wait_arrived = asyncio.Event()
    release_wait = asyncio.Event()

    async def slow_wait(call: Recorded) -> httpx.Response:
        wait_arrived.set()
        await release_wait.wait()
        return json_response(200, {"ok": True, "state": "stopped"})

    api.on("Machines_wait", slow_wait)
    api.on("Machines_stop", OK)
    api.on("Machines_show", json_response(200, samples.machine()))
    waiting = asyncio.ensure_future(fly.wait_machine(APP, "m1", state="stopped"))
    await asyncio.wait_for(wait_arrived.wait(), timeout=5)
    # While the wait is parked at Fly, the same machine can still be stopped and read.
    await asyncio.wait_for(fly.stop_machine(APP, "m1"), timeout=5)
    await asyncio.wait_for(fly.get_machine(APP, "m1"), timeout=5)
    assert not waiting.done()
    release_wait.set()
    assert (await asyncio.wait_for(waiting, timeout=5)).state == "stopped"


async def test_waits_count_against_their_own_bucket(
    api: FlyAPI, fly: FlyClient, clock: FakeClock
) -> None:
    times: list[float] = []

    def answer(call: Recorded) -> httpx.Response:
        times.append(clock.now)
        return json_response(200, {"ok": True, "state": "started"})

    api.on("Machines_wait", answer)
    for _ in range(4):
        await fly.wait_machine(APP, "m1")
    assert times == [0.0, 0.0, 0.0, 1.0]


async def test_rate_limit_false_sends_as_fast_as_asked(api: FlyAPI) -> None:
    clock = FakeClock()
    api.on("Machines_start", OK)
    async with FlyClient(
        BASE_URL, TOKEN, transport=api.transport(), rate_limit=False, clock=clock
    ) as fly:
        for _ in range(20):
            await fly.start_machine(APP, "m1")
    assert len(api.calls) == 20
    assert clock.sleeps == []


async def test_a_shared_limiter_spaces_two_clients_together(api: FlyAPI) -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock, default=Limit(rate=2.0, burst=1))
    api.on("Machines_restart", OK)
    async with (
        FlyClient(BASE_URL, TOKEN, transport=api.transport(), rate_limit=limiter) as a,
        FlyClient(BASE_URL, TOKEN, transport=api.transport(), rate_limit=limiter) as b,
    ):
        await a.restart_machine(APP, "m1")
        await b.restart_machine(APP, "m1")
        await a.restart_machine(APP, "m1")
    assert clock.sleeps == [0.5, 0.5]
    assert a.api_calls == 2
    assert b.api_calls == 1
