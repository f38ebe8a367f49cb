"""Roll a new image out the way operators do it today with flyctl: region by region, rolling.

This is the yardstick ``bench/rollout.py`` compares the orchestrator with. It uses the same
`FlyClient` (same rate limits, same retries) and follows flyctl's rolling strategy
(``../shared/ref/fly-notes.md`` §3) as an operator staging a release by hand would run it,
``fly deploy --regions <one region>`` after another:

- regions strictly one after another, in the order given;
- in each region, machines sorted by id; the first is the spearhead, updated alone; the rest
  go through a worker pool of ``ceil(max_unavailable * rest)`` (flyctl's ``--max-unavailable``
  default 0.33, rounded up);
- per machine: acquire the lease (13 s, refreshed every (ttl - 1) / 3 s in the background),
  update with the full config and the lease nonce, long-poll ``/wait`` for ``started`` at the
  new version, then ``GET`` the machine every 1-2 s (jittered, and scaled by the local Fly's time
  factor like every other duration) until at least one check result exists and all pass
  (flyctl's ``WaitForHealthchecksToPass``), then release the lease;
- the first failure cancels the pool and fails the rollout (flyctl never rolls back).

flyctl's smoke checks (a machine must stay up 10 s) are left out, which only makes the
baseline faster than the real thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import FlyWaitTimeout, OrchestratorError
from orchestrator.fly.client import FlyClient
from orchestrator.fly.models import Machine

__all__ = ["BaselineError", "BaselineResult", "MachineTiming", "rolling_deploy"]

LEASE_TTL_S = 13
# flyctl's default --wait-timeout.
WAIT_TIMEOUT_S = 300.0


class BaselineError(RuntimeError):
    """The baseline rollout failed (a machine did not update or become healthy)."""


@dataclass(frozen=True, slots=True)
class MachineTiming:
    """Where one machine's update spent its time (seconds, wall clock).

    Attributes:
        machine: the machine id.
        region: its region.
        lease_s: acquiring the lease.
        update_s: the update call.
        wait_s: ``/wait`` until started at the new version.
        health_s: polling until every check passed.
        total_s: from lease to lease released.
        polls: ``GET machine`` calls made while waiting for the checks.
    """

    machine: str
    region: str
    lease_s: float
    update_s: float
    wait_s: float
    health_s: float
    total_s: float
    polls: int


@dataclass(slots=True)
class BaselineResult:
    """How the baseline rollout went.

    Attributes:
        wall_s: from the first call to the last lease released.
        machines: machines updated.
        api_calls: requests the client sent (retries included).
        region_s: region → seconds it took, in rollout order.
        timings: one entry per machine.
        calls: requests by kind (``lease``, ``update``, ``wait``, ``get``, ``release``, ...).
    """

    wall_s: float = 0.0
    machines: int = 0
    api_calls: int = 0
    region_s: dict[str, float] = field(default_factory=dict)
    timings: list[MachineTiming] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        """Return the figures as JSON-ready values (per-machine timings averaged)."""
        n = max(1, len(self.timings))

        def mean(attr: str) -> float:
            total: float = sum(getattr(t, attr) for t in self.timings)
            return round(total / n, 3)

        return {
            "wall_s": round(self.wall_s, 3),
            "machines": self.machines,
            "api_calls": self.api_calls,
            "api_calls_per_machine": round(self.api_calls / max(1, self.machines), 2),
            "calls": dict(sorted(self.calls.items())),
            "region_s": {k: round(v, 3) for k, v in self.region_s.items()},
            "machine_mean_s": {
                "lease": mean("lease_s"),
                "update": mean("update_s"),
                "wait": mean("wait_s"),
                "health": mean("health_s"),
                "total": mean("total_s"),
                "polls": mean("polls"),
            },
        }


def pool_size(rest: int, max_unavailable: float) -> int:
    """Return flyctl's pool size for ``rest`` machines: a count, or a fraction rounded up."""
    if max_unavailable >= 1:
        return int(max_unavailable)
    return max(1, math.ceil(max_unavailable * rest))


def _with_image(machine: Machine, image: str) -> dict[str, Any]:
    config = dict(machine.config.raw) if machine.config.raw else machine.config.to_api()
    config["image"] = image
    return config


class _Rollout:
    """One baseline rollout: the client, the knobs, and the tally."""

    def __init__(
        self,
        client: FlyClient,
        app: str,
        image: str,
        *,
        time_factor: float,
        rng: random.Random,
        result: BaselineResult,
    ) -> None:
        self.client = client
        self.app = app
        self.image = image
        self.time_factor = time_factor
        self.rng = rng
        self.result = result

    async def _refresh(self, machine_id: str, nonce: str) -> None:
        # flyctl: every (ttl - 1) / 3 seconds with ±20 ms of jitter. The lease TTL is real
        # seconds on the server too, so this is not time-scaled.
        every = (LEASE_TTL_S - 1) / 3
        while True:
            await asyncio.sleep(every + self.rng.uniform(-0.02, 0.02))
            with contextlib.suppress(OrchestratorError):
                self.result.calls["lease_refresh"] += 1
                await self.client.acquire_lease(self.app, machine_id, ttl=LEASE_TTL_S, nonce=nonce)

    async def _wait_started(self, machine_id: str, version: str) -> None:
        deadline = time.monotonic() + WAIT_TIMEOUT_S
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BaselineError(f"machine {machine_id} did not start within {WAIT_TIMEOUT_S}s")
            self.result.calls["wait"] += 1
            try:
                await self.client.wait_machine(
                    self.app, machine_id, state="started", version=version, timeout=min(60, left)
                )
                return
            except FlyWaitTimeout:
                continue

    async def _wait_checks(self, machine_id: str) -> int:
        deadline = time.monotonic() + WAIT_TIMEOUT_S
        polls = 0
        while True:
            polls += 1
            self.result.calls["get"] += 1
            machine = await self.client.get_machine(self.app, machine_id)
            if machine.checks and all(c.status == "passing" for c in machine.checks):
                return polls
            if machine.state in ("failed", "destroyed", "stopped"):
                raise BaselineError(f"machine {machine_id} is {machine.state}")
            if time.monotonic() > deadline:
                raise BaselineError(f"machine {machine_id}: checks not passing after the timeout")
            await asyncio.sleep(self.rng.uniform(1.0, 2.0) * self.time_factor)

    async def update(self, machine: Machine) -> None:
        """Update one machine: lease, update, wait started, wait for checks, release."""
        t0 = time.monotonic()
        self.result.calls["lease"] += 1
        lease = await self.client.acquire_lease(
            self.app, machine.id, ttl=LEASE_TTL_S, description="baseline rolling deploy"
        )
        nonce = lease.nonce or ""
        refresher = asyncio.create_task(self._refresh(machine.id, nonce))
        try:
            t1 = time.monotonic()
            self.result.calls["update"] += 1
            updated = await self.client.update_machine(
                self.app,
                machine.id,
                _with_image(machine, self.image),
                current_version=machine.version or None,
                nonce=nonce,
            )
            t2 = time.monotonic()
            await self._wait_started(machine.id, updated.version)
            t3 = time.monotonic()
            polls = await self._wait_checks(machine.id)
            t4 = time.monotonic()
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            self.result.calls["release"] += 1
            with contextlib.suppress(OrchestratorError):
                await self.client.release_lease(self.app, machine.id, nonce)
        self.result.timings.append(
            MachineTiming(
                machine=machine.id,
                region=machine.region,
                lease_s=t1 - t0,
                update_s=t2 - t1,
                wait_s=t3 - t2,
                health_s=t4 - t3,
                total_s=time.monotonic() - t0,
                polls=polls,
            )
        )
        self.result.machines += 1

    async def region(self, machines: Sequence[Machine], max_unavailable: float) -> None:
        """Roll one region: the spearhead alone, then the rest through a worker pool."""
        ordered = sorted(machines, key=lambda m: m.id)
        if not ordered:
            return
        await self.update(ordered[0])
        rest = ordered[1:]
        if not rest:
            return
        queue: asyncio.Queue[Machine] = asyncio.Queue()
        for m in rest:
            queue.put_nowait(m)

        async def worker() -> None:
            while True:
                try:
                    m = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await self.update(m)

        # A TaskGroup cancels the other workers on the first failure, as flyctl's pool does.
        async with asyncio.TaskGroup() as tg:
            for _ in range(min(len(rest), pool_size(len(rest), max_unavailable))):
                tg.create_task(worker())


async def rolling_deploy(
    client: FlyClient,
    app: str,
    image: str,
    regions: Sequence[str],
    *,
    time_factor: float = 1.0,
    max_unavailable: float = 0.33,
    seed: int = 0,
) -> BaselineResult:
    """Roll ``image`` out over ``regions`` one after another, flyctl-style; return the figures.

    Raises:
        BaselineError: a machine did not update, start or pass its checks (the rollout stops).
        OrchestratorError: an API call failed for good.
    """
    result = BaselineResult()
    calls_before = client.api_calls
    rollout = _Rollout(
        client, app, image, time_factor=time_factor, rng=random.Random(seed), result=result
    )
    start = time.monotonic()
    result.calls["list"] += 1
    machines = await client.list_machines(app)
    for region in regions:
        r0 = time.monotonic()
        in_region = [m for m in machines if m.region == region and m.state != "destroyed"]
        try:
            await rollout.region(in_region, max_unavailable)
        except* OrchestratorError as group:
            raise BaselineError(f"{region}: {group.exceptions[0]}") from group
        except* BaselineError as group:
            raise BaselineError(f"{region}: {group.exceptions[0]}") from group
        result.region_s[region] = time.monotonic() - r0
    result.wall_s = time.monotonic() - start
    result.api_calls = client.api_calls - calls_before
    return result
