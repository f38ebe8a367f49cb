"""The drill's first half: baseline, fault, detection, promotion, scale-up, verification.

`FailOver.run` runs under the runner's guard, which may cancel it at any await; what each phase
does and measures is told in docs/drills.md ("What a drill does to your fleet",
"What it measures").
"""

from __future__ import annotations

import asyncio

from orchestrator.drill.canary import canary_n
from orchestrator.drill.measure import RpoResult, compute_rpo
from orchestrator.drill.phases import Phase
from orchestrator.drill.plans import converge_plan, scale_up_plan, spread
from orchestrator.drill.preflight import choose_promotion
from orchestrator.drill.probes import fleet_health, read_records, region_writer
from orchestrator.drill.state import DrillState
from orchestrator.drill.steps import Drill
from orchestrator.errors import DrillError
from orchestrator.execute.failpoints import failpoint
from orchestrator.fleetconfig.regions import REGIONS, distance_km
from orchestrator.plan.fleet import observe

__all__ = ["STEADY_RUN", "FailOver"]

# Writes in a row that make the service "steadily" served again.
STEADY_RUN = 10


class FailOver:
    """Run the drill's first half, writing what it does and measures into ``state``."""

    def __init__(self, drill: Drill, state: DrillState) -> None:
        self.r = drill
        self.s = state

    async def run(self) -> None:
        """Measure the baseline, take the region down, fail over, and verify the recovery."""
        r, s = self.r, self.s
        r.canary.start()
        r.probes.start()
        async with r.phase(Phase.STEADY_STATE) as span:
            start = r.now()
            await asyncio.sleep(r.spec.drill.baseline_s)  # the baseline's measuring window
            if not r.canary.acks:
                raise DrillError(
                    f"the primary acknowledged none of {r.canary.attempted} canary writes"
                )
            s.baseline = r.probes.stats(start, r.now())
            span.detail = (
                f"{len(r.canary.acks)} writes acknowledged; reads: error rate "
                f"{s.baseline.error_rate:.3f}, p95 {s.baseline.p95_ms or 0:.0f} ms"
            )
        async with r.phase(Phase.FAULT) as span:
            s.t0 = r.now()
            s.fault_injected = True  # set first: a half-applied fault is still cleared
            span.detail = await r.fault.inject(r.region)
            s.fault_applied_at = r.now()
        t0 = s.t0
        async with r.phase(Phase.DETECT) as span:
            s.detected_at = await r.until(
                f"the probes to see {r.region} down",
                lambda: r.probes.region_down_at(r.region, t0),
            )
            span.detail = f"{r.region} seen down {s.detected_at - t0:.2f}s after T0"
        if r.region == r.primary:
            await self._promote()
        else:
            await r.skip(
                Phase.PROMOTE, f"{r.region} is a replica region; {r.primary} stays primary"
            )
        await self._scale_up()
        await self._verify(t0)

    async def _promote(self) -> None:
        r, s = self.r, self.s
        conn = r.conn
        async with r.phase(Phase.PROMOTE) as span:
            checks = await fleet_health(conn.client, conn.probe, conn.app, r.survivors)
            healthy = [h.region for h in checks.values() if h.healthy]
            target = choose_promotion(r.spec, r.region, r.request.promote, healthy)
            if target is None:
                raise DrillError("no surviving region to promote")
            # Saved before the first machine changes: a drill killed from here on is resumed
            # or aborted knowing which region may have taken writes.
            s.promoting = target
            r.save_state()
            failpoint("drill_promoting", target)
            # From now on the canary writes to the new primary: its first success is the RTO.
            r.canary.retarget(target)
            others = sorted((c for c in r.survivors if c != target), key=lambda c: _km(target, c))
            fleet = await observe(conn.client, conn.app)
            plan = converge_plan(r.spec, fleet, primary=target, order=[[target], others])

            def gate_passed(region: str, at: float) -> None:
                if region == target and s.promoted_at is None:
                    s.promoted_at = at

            await r.plans.run(plan, f"promote {target}", on_gate=gate_passed)
            if s.promoted_at is None:
                s.promoted_at = r.now()
            span.detail = (
                f"{target} promoted (PRIMARY_REGION={target} on every survivor); "
                f"{', '.join(others) or 'no other region'} follow it"
            )

    async def _scale_up(self) -> None:
        r, s = self.r, self.s
        if not r.spec.drill.scale_survivors:
            await r.skip(Phase.SCALE_UP, "[drill] scale_survivors is off")
            return
        primary = s.promoting or r.primary
        replicas = sorted((c for c in r.survivors if c != primary), key=lambda c: _km(r.region, c))
        extra = spread(r.spec.regions[r.region].count, replicas or [primary])
        async with r.phase(Phase.SCALE_UP) as span:
            fleet = await observe(r.conn.client, r.conn.app)
            plan = scale_up_plan(r.spec, fleet, extra=extra, primary=primary)
            s.scaled = dict(extra)
            await r.plans.run(plan, "scale up survivors")
            span.detail = "added " + ", ".join(f"{n} in {r}" for r, n in sorted(extra.items()))

    async def _verify(self, t0: float) -> None:
        r, s = self.r, self.s
        conn = r.conn
        target = s.promoting or r.primary
        async with r.phase(Phase.VERIFY) as span:
            first = await r.until(
                f"a write acknowledged by {target}",
                lambda: _acked_at(r.canary.first_ack_after(t0, region=target)),
            )
            if r.region != r.primary:
                # The primary never stopped: recovery is the lost region's users being served.
                served = await r.until(
                    f"the survivors to serve {r.region}'s traffic",
                    lambda: r.probes.served_elsewhere_at(r.region, t0),
                )
                first = max(first, served)
            s.first_write_at = first

            async def survivors_healthy() -> float | None:
                checks = await fleet_health(conn.client, conn.probe, conn.app, r.survivors)
                return r.now() if all(h.healthy for h in checks.values()) else None

            healthy_at = await r.until("the surviving regions to be healthy", survivors_healthy)
            steady = await r.until(
                f"{STEADY_RUN} writes in a row acknowledged by {target}",
                lambda: r.canary.steady_since(t0, run=STEADY_RUN, region=target),
            )
            s.steady_at = max(healthy_at, steady + STEADY_RUN * r.canary.interval_s)
            s.rpo = await self._measure_rpo(target)
            s.verified_at = r.now()
            s.during = r.probes.stats(t0, s.verified_at, targets=r.survivors)
            # Probes sent between T0 and the fault taking effect were still served by the
            # region itself; who served it *while down* counts from the fault's completion.
            s.served_by = r.probes.answered_by(r.region, s.fault_applied_at or t0)
            span.detail = (
                f"writes acknowledged by {target} {first - t0:.2f}s after T0; RPO "
                f"{s.rpo.records} record(s) / {s.rpo.seconds:.2f}s; {r.region}'s "
                f"traffic served by {', '.join(s.served_by) or 'nobody'}"
            )

    async def _measure_rpo(self, target: str) -> RpoResult:
        """Compare what the old primary acknowledged with what ``target`` holds now."""
        r, s = self.r, self.s
        conn = r.conn
        # The machine that acknowledged the newest write holds the history that counts; a
        # follower in the same region may be a pull behind.
        newest = next((a for a in reversed(r.canary.acks) if a.region == target), None)
        writer = newest.machine_id if newest is not None else None
        if writer is None:
            writer = await region_writer(conn.client, r.traffic, conn.app, target)
        # The acknowledged writes to account for, taken before the read: the canary goes on
        # writing, and a write acknowledged while the records are read may be newer than what
        # the read saw, which is not a loss.
        acked = r.canary.acks_from(r.primary)
        records = await read_records(r.traffic, writer)
        present = {
            int(rec["seq"]): canary_n(rec.get("data"), s.drill_id)
            for rec in records
            if isinstance(rec.get("seq"), int)
        }
        return compute_rpo(acked, present)


def _km(a: str, b: str) -> float:
    return distance_km(REGIONS[a], REGIONS[b])


def _acked_at(ack: object) -> float | None:
    return getattr(ack, "acked_at", None)
