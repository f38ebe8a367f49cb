"""Watch the app through the proxy and the fleet through the Machines API during a drill.

- `ProbeLoop` reads ``GET /`` through the edge proxy, steered to each region in turn with
  ``fly-prefer-region``, a few times a second. Its samples give the baseline and the survivors'
  error rate and latency, tell when the region under test stops answering for itself (the
  proxy hands its traffic to another region: ``fly-region``), and feed the guard.
- `region_health` is the survivors' health gate: every machine started, checks passing, and
  the app answering ``/status`` 200 from that region.
- `read_records` and `machine_status` ask one machine directly (``fly-force-instance-id``),
  for the RPO and the integrity check.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.drill.measure import Sample, TrafficStats, traffic_stats
from orchestrator.errors import DrillError, FlyAPIError, FlyTransportError
from orchestrator.fly.client import FlyClient
from orchestrator.fly.models import Machine
from orchestrator.fly.proxy import ProxyAnswer, ProxyClient

__all__ = [
    "ProbeLoop",
    "RegionHealth",
    "fleet_health",
    "live_machines",
    "machine_status",
    "read_records",
    "region_health",
    "region_writer",
]

_GONE = frozenset({"destroyed", "destroying"})
PAGE = 1000


class ProbeLoop:
    """Probe every region's user-facing reads in the background.

    Args:
        probe: the app through the proxy (short timeout).
        regions: the regions to probe, in turn.
        interval_s: seconds between two probes (of any region).
        path: what to read (``/``, the app's user-facing page).
        now: the wall clock.
    """

    def __init__(
        self,
        probe: ProxyClient,
        regions: Sequence[str],
        *,
        interval_s: float = 0.05,
        path: str = "/",
        now: Callable[[], float] = time.time,
    ) -> None:
        self.probe = probe
        self.regions = tuple(regions)
        self.interval_s = interval_s
        self.path = path
        self.now = now
        self.samples: list[Sample] = []
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Start probing in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="drill-probes")

    async def stop(self) -> None:
        """Stop probing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._inflight):
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _run(self) -> None:
        turn = 0
        while True:
            region = self.regions[turn % len(self.regions)]
            turn += 1
            # Each region gets its own request in flight: a frozen region must not slow the
            # probes of the others down.
            task = asyncio.create_task(self._probe(region))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            await asyncio.sleep(self.interval_s)  # a pacing timer

    async def _probe(self, region: str) -> None:
        sent = self.now()
        answer = await self.probe.request("GET", self.path, region=region)
        done = self.now()
        self.samples.append(
            Sample(
                kind="read",
                target=region,
                answered_by=answer.region,
                at=sent,
                latency_s=done - sent,
                status=answer.status_code,
                ok=answer.status_code is not None and 200 <= answer.status_code < 300,
            )
        )

    def between(
        self, start: float, end: float | None = None, *, targets: Iterable[str] | None = None
    ) -> list[Sample]:
        """Return the samples sent in ``[start, end)`` (steered to ``targets``, if given)."""
        wanted = None if targets is None else set(targets)
        return [
            s
            for s in self.samples
            if s.at >= start
            and (end is None or s.at < end)
            and (wanted is None or s.target in wanted)
        ]

    def stats(
        self, start: float, end: float | None = None, *, targets: Iterable[str] | None = None
    ) -> TrafficStats:
        """Return error rate and latency of the samples in the window."""
        return traffic_stats(self.between(start, end, targets=targets))

    def region_down_at(self, region: str, since: float, *, run: int = 2) -> float | None:
        """Return when probes steered to ``region`` stopped being served from it.

        That is the first of ``run`` probes in a row, sent after ``since``, that failed or were
        answered by another region (the proxy no longer has a healthy machine there).
        """
        streak_start: float | None = None
        streak = 0
        for s in sorted(self.between(since, targets=[region]), key=lambda s: s.at):
            if not s.ok or s.answered_by != region:
                if streak == 0:
                    streak_start = s.at
                streak += 1
                if streak >= run:
                    return streak_start
            else:
                streak = 0
        return None

    def served_elsewhere_at(self, region: str, since: float) -> float | None:
        """Return when a probe steered to ``region`` was first served 200 by another region."""
        for s in sorted(self.between(since, targets=[region]), key=lambda s: s.at):
            if s.ok and s.answered_by not in (None, region):
                return s.at
        return None

    def answered_by(self, region: str, since: float) -> dict[str, int]:
        """Return region → how many probes steered to ``region`` it served since ``since``."""
        out: dict[str, int] = {}
        for s in self.between(since, targets=[region]):
            if s.ok and s.answered_by:
                out[s.answered_by] = out.get(s.answered_by, 0) + 1
        return dict(sorted(out.items()))


@dataclass(frozen=True, slots=True)
class RegionHealth:
    """A region's health, as the survivors' gate sees it.

    Attributes:
        region: the region.
        healthy: every machine started with its checks passing, and ``/status`` answers 200.
        machines: how many live machines it has.
        problem: what is wrong, one line, or ``None``.
    """

    region: str
    healthy: bool
    machines: int
    problem: str | None = None


async def live_machines(client: FlyClient, app: str, *, region: str | None = None) -> list[Machine]:
    """Return the app's machines that are not destroyed (of ``region``), by id."""
    machines = await client.list_machines(app, region=region)
    return sorted((m for m in machines if m.state not in _GONE), key=lambda m: m.id)


async def region_health(
    client: FlyClient, probe: ProxyClient, app: str, region: str
) -> RegionHealth:
    """Check one region: machines started, checks passing, the app answering from there."""
    return (await fleet_health(client, probe, app, [region]))[region]


async def fleet_health(
    client: FlyClient, probe: ProxyClient, app: str, regions: Sequence[str]
) -> dict[str, RegionHealth]:
    """Check several regions with one machine list (Fly allows one a second)."""
    try:
        machines = await live_machines(client, app)
    except (FlyAPIError, FlyTransportError) as exc:
        return {r: RegionHealth(r, False, 0, f"cannot list machines: {exc}") for r in regions}
    checks = await asyncio.gather(
        *(_region_health(probe, r, [m for m in machines if m.region == r]) for r in regions)
    )
    return {h.region: h for h in checks}


async def _region_health(probe: ProxyClient, region: str, machines: list[Machine]) -> RegionHealth:
    if not machines:
        return RegionHealth(region, False, 0, f"no machines in {region}")
    for m in machines:
        if m.state != "started":
            return RegionHealth(region, False, len(machines), f"machine {m.id} is {m.state}")
        if m.config.all_checks and not m.checks_passing:
            bad = ", ".join(f"{c.name} {c.status}" for c in m.checks if not c.passing)
            return RegionHealth(
                region, False, len(machines), f"machine {m.id}: checks {bad or 'not reported'}"
            )
        if m.host_status not in ("ok", ""):
            return RegionHealth(
                region, False, len(machines), f"machine {m.id}: host {m.host_status}"
            )
    answer = await probe.status(region=region)
    if not answer.ok:
        return RegionHealth(region, False, len(machines), f"/status: {answer.describe()}")
    if answer.region not in (None, region):
        return RegionHealth(
            region, False, len(machines), f"/status answered from {answer.region}, not {region}"
        )
    return RegionHealth(region, True, len(machines))


async def region_writer(client: FlyClient, probe: ProxyClient, app: str, region: str) -> str:
    """Return the machine of ``region`` that takes writes (``/status`` role ``primary``).

    In a region of replicas (or one still electing) it is the lowest machine id.

    Raises:
        DrillError: the region has no machine.
    """
    machines = await live_machines(client, app, region=region)
    if not machines:
        raise DrillError(f"no machine in {region}")
    answers = await asyncio.gather(*(machine_status(probe, m.id) for m in machines))
    for m, answer in zip(machines, answers, strict=True):
        if answer.ok and answer.body.get("role") == "primary":
            return m.id
    return machines[0].id


async def machine_status(probe: ProxyClient, machine_id: str) -> ProxyAnswer:
    """Return one machine's ``/status``, asked directly through the proxy."""
    return await probe.status(machine_id=machine_id)


async def read_records(probe: ProxyClient, machine_id: str) -> list[Mapping[str, Any]]:
    """Return every record one machine holds, oldest first, paging ``GET /records``.

    Raises:
        DrillError: the machine did not answer.
    """
    out: list[Mapping[str, Any]] = []
    after = 0
    while True:
        answer = await probe.request(
            "GET", f"/records?after={after}&limit={PAGE}", machine_id=machine_id
        )
        if not answer.ok:
            raise DrillError(
                f"cannot read the records of machine {machine_id}: {answer.describe()}"
            )
        page = answer.body.get("records")
        if not isinstance(page, list):
            raise DrillError(f"machine {machine_id} answered /records without a records list")
        records = [r for r in page if isinstance(r, Mapping)]
        out.extend(records)
        if len(records) < PAGE:
            return out
        after = int(records[-1].get("seq", after + len(records)))
