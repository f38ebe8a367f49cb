"""The drill's second half: restore the region, re-seed it, scale back, fail back, check integrity.

An old primary that another region took writes from is replaced on fresh forks of the new
primary's volume (its own volumes kept); a replica region, or an old primary nothing reached,
is simply brought back. Why, and what each phase does: docs/drills.md ("What a drill does to
your fleet").
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from orchestrator.drill.fault import fence
from orchestrator.drill.measure import record_digest
from orchestrator.drill.phases import Phase
from orchestrator.drill.plans import converge_plan, reseed_plan
from orchestrator.drill.probes import (
    live_machines,
    machine_status,
    read_records,
    region_health,
)
from orchestrator.drill.report import Integrity
from orchestrator.drill.state import DrillState
from orchestrator.drill.steps import Drill
from orchestrator.errors import DrillError, FlyNotFound
from orchestrator.fleetconfig.model import DeploySpec
from orchestrator.plan.fleet import Fleet, observe
from orchestrator.plan.graph import build_plan, spec_waves

__all__ = ["FailBack"]


class FailBack:
    """Run the drill's second half, writing what it does into ``state``."""

    def __init__(self, drill: Drill, state: DrillState) -> None:
        self.r = drill
        self.s = state

    @property
    def _app(self) -> str:
        return self.r.conn.app

    async def _fleet(self) -> Fleet:
        return await observe(self.r.conn.client, self._app)

    async def run(self) -> str | None:
        """Restore the fleet; return the region that is primary afterwards (``None``: untouched)."""
        r, s = self.r, self.s
        if not s.fault_injected:
            return None
        new = s.promoting
        replace = new is not None and (bool(r.canary.acks_from(new)) or s.new_primary_wrote)
        if new is not None and not replace:
            # Nothing reached the new primary: the old one keeps its data and takes writes again.
            r.canary.retarget(r.primary)
        # A resumed drill skips what its stopped run finished (`Drill.done`).
        if not r.done(Phase.RESTORE):
            await self._restore(replace)
        if replace and new is not None:
            if not r.done(Phase.RESEED):
                await self._reseed(new)
            # The region is back: the extra machines that carried its load can go first, so
            # the switch-back does not update machines only to destroy them.
            await self._scale_back(new)
            if not r.request.failback:
                await r.skip(Phase.FAILBACK, f"--no-failback: the primary stays in {new}")
                return new
            if r.done(Phase.FAILBACK):
                return r.region
            return await self._switch_back(new)
        await r.skip(Phase.RESEED, self._why_no_reseed())
        final = await self._revert()
        await self._scale_back(final)
        return final

    def _why_no_reseed(self) -> str:
        r, s = self.r, self.s
        if s.promoting is None:
            return (
                f"{r.region} was a replica: its data is a prefix of the primary's, and "
                "replication catches it up"
            )
        return f"no write reached {s.promoting}: {r.region} kept every record and stays primary"

    async def _restore(self, replace: bool) -> None:
        r, s = self.r, self.s
        async with r.phase(Phase.RESTORE) as span:
            if replace and r.fault.kind == "stop-and-cordon":
                span.detail = f"{r.region}'s machines stay stopped and cordoned until replaced"
                return
            parts = (
                [f"{r.region} already back"]
                if s.fault_cleared
                else [await r.fault.clear(r.region, fenced=replace)]
            )
            s.fault_cleared = True
            if replace:
                fenced = await fence(r.conn.client, self._app, r.region)
                parts.append(
                    f"fenced {len(fenced)} old-primary machine(s) (cordoned) before any "
                    "request could reach them"
                )
            else:
                conn = r.conn

                async def healthy() -> float | None:
                    h = await region_health(conn.client, conn.probe, self._app, r.region)
                    return r.now() if h.healthy else None

                await r.until(f"{r.region} to be healthy again", healthy)
                parts.append(f"{r.region} healthy again")
            span.detail = "; ".join(parts)

    async def _reseed(self, new: str) -> None:
        r, s = self.r, self.s
        async with r.phase(Phase.RESEED) as span:
            fleet = await self._fleet()
            old = sorted({m.volume_id for m in fleet.machines_in(r.region) if m.volume_id})
            plan = reseed_plan(r.spec, fleet, region=r.region, primary=new)
            await r.plans.run(plan, f"re-seed {r.region}")
            s.extra_details["old_volumes"] = old
            s.extra_details["old_volumes_destroyed"] = r.request.destroy_old_volumes
            fate = "kept (they hold the writes the new primary never got)"
            if r.request.destroy_old_volumes:
                for vid in old:
                    try:
                        await r.conn.client.destroy_volume(self._app, vid)
                    except FlyNotFound:
                        continue
                fate = "destroyed (--destroy-old-volumes)"
            span.detail = (
                f"{len(fleet.machines_in(r.region))} machine(s) in {r.region} replaced by "
                f"machines on fresh forks of {new}'s volume; old volume(s) "
                f"{', '.join(old) or 'none'} {fate}"
            )

    async def _switch_back(self, new: str) -> str:
        r = self.r
        async with r.phase(Phase.FAILBACK) as span:
            await r.canary.pause()
            try:
                target = await self._last_seq(new)
                await r.until(
                    f"{r.region} to catch up with {new} (last_seq {target})",
                    lambda: self._caught_up(r.region, target),
                )
                fleet = await self._fleet()
                others = [c for c in r.survivors if c != new]
                plan = converge_plan(
                    r.spec,
                    fleet,
                    primary=r.region,
                    order=[[new], [r.region], others],
                )
                await r.plans.run(plan, f"fail back to {r.region}")
                r.canary.retarget(r.region)
            finally:
                r.canary.resume()
            span.detail = (
                f"{r.region} caught up with {new} (last_seq {target}); {new} demoted first, "
                f"then {r.region} promoted; writes paused meanwhile"
            )
        return r.region

    async def _revert(self) -> str:
        r, s = self.r, self.s
        if s.promoting is None:
            await r.skip(Phase.FAILBACK, f"the primary never moved from {r.primary}")
            return r.primary
        async with r.phase(Phase.FAILBACK) as span:
            fleet = await self._fleet()
            order = [list(w.regions) for w in spec_waves(r.spec)]
            # The spec's counts: machines added while the region was down go in the same plan.
            plan = converge_plan(r.spec, fleet, primary=r.primary, order=order)
            await r.plans.run(plan, f"revert to {r.primary}")
            span.detail = f"{s.promoting} demoted; every survivor follows {r.primary} again"
        return r.primary

    async def _scale_back(self, primary: str) -> None:
        r = self.r
        fleet = await self._fleet()
        extra = {
            code: sorted(s for s in fleet.managed_in(code) if s > spec.count)
            for code, spec in r.spec.regions.items()
        }
        extra = {code: slots for code, slots in extra.items() if slots}
        if not extra:
            await r.skip(Phase.SCALE_BACK, "no machine above the spec's count")
            return
        async with r.phase(Phase.SCALE_BACK) as span:
            plan = converge_plan(r.spec, fleet, primary=primary, order=[sorted(extra)])
            await r.plans.run(plan, "scale back")
            span.detail = (
                "destroyed "
                + ", ".join(
                    f"slot(s) {', '.join(map(str, s))} in {c}" for c, s in sorted(extra.items())
                )
                + " (volumes kept)"
            )

    async def _last_seq(self, region: str) -> int:
        """Return the newest seq any machine of ``region`` holds (its writer has the most)."""
        machines = await live_machines(self.r.conn.client, self._app, region=region)
        answers = await asyncio.gather(*(machine_status(self.r.traffic, m.id) for m in machines))
        seqs = [a.body.get("last_seq") for a in answers if a.ok]
        known = [s for s in seqs if isinstance(s, int)]
        if not known:
            raise DrillError(f"cannot read {region}'s last_seq from any of its machines")
        return max(known)

    async def _caught_up(self, region: str, target: int) -> float | None:
        machines = await live_machines(self.r.conn.client, self._app, region=region)
        answers = await asyncio.gather(*(machine_status(self.r.traffic, m.id) for m in machines))
        seqs = [a.body.get("last_seq") for a in answers if a.ok]
        done = len(seqs) == len(machines) and all(isinstance(s, int) and s >= target for s in seqs)
        return self.r.now() if done else None

    # -- integrity --------------------------------------------------------------------------

    async def integrity(self, final: str | None) -> Integrity:
        """Check the fleet: one primary, replicas holding its records, at the spec."""
        r = self.r
        if final is None:
            return Integrity()
        async with r.phase(Phase.INTEGRITY) as span:
            await r.canary.stop()
            await r.probes.stop()
            result = await self._integrity(final)
            span.detail = (
                f"primary {', '.join(result.primaries) or 'none'}, last_seq {result.last_seq}; "
                + ("every replica matches" if result.ok else "; ".join(result.problems()))
            )
            if not result.ok or (self._expect_spec() and not result.at_spec):
                span.outcome = "failed"
        return result

    def _expect_spec(self) -> bool:
        r, s = self.r, self.s
        return r.request.failback or s.promoting is None

    async def _integrity(self, final: str) -> Integrity:
        r, s = self.r, self.s
        machines = await live_machines(r.conn.client, self._app)
        answers = await asyncio.gather(*(machine_status(r.traffic, m.id) for m in machines))
        status = {m.id: a for m, a in zip(machines, answers, strict=True)}
        primaries = tuple(mid for mid, a in status.items() if a.body.get("role") == "primary")
        regions = {m.region for m in machines if m.id in primaries}
        in_final = [m for m in machines if m.id in primaries and m.region == final]
        lead = min(
            in_final or [m for m in machines if m.id in primaries] or machines,
            key=lambda m: (_slot(m.config.metadata), m.id),
        )
        lead_seq = status[lead.id].body.get("last_seq")
        replicas = [m for m in machines if m.id != lead.id and m.id not in primaries]

        async def caught_up() -> float | None:
            seqs = await asyncio.gather(*(machine_status(r.traffic, m.id) for m in replicas))
            ok = all(a.ok and a.body.get("last_seq") == lead_seq for a in seqs)
            return r.now() if ok else None

        try:
            await r.until(f"the replicas to reach the primary's last_seq {lead_seq}", caught_up)
        except DrillError as exc:
            r.bus.note(str(exc), "warning")
        lead_digest = record_digest(await read_records(r.traffic, lead.id))
        mismatched: dict[str, str] = {}
        orphaned: dict[str, Any] = {}
        for m in machines:
            if m.id == lead.id:
                continue
            answer = await machine_status(r.traffic, m.id)
            if answer.body.get("orphaned_records"):
                orphaned[m.id] = answer.body.get("orphaned_records")
            seq = answer.body.get("last_seq")
            if seq != lead_seq:
                mismatched[m.id] = f"last_seq {seq}, the primary has {lead_seq}"
                continue
            digest = record_digest(await read_records(r.traffic, m.id))
            if digest != lead_digest:
                mismatched[m.id] = f"records differ from the primary's (digest {digest[:12]})"
        if orphaned:
            s.extra_details["orphaned_records"] = orphaned
        fleet = await self._fleet()
        problems = (
            _spec_problems(r.spec, fleet)
            if self._expect_spec()
            else (
                f"the primary was left in {final} (--no-failback); fly.toml still says "
                f"{r.spec.primary_region}",
            )
        )
        return Integrity(
            primaries=primaries,
            primary_region=next(iter(regions)) if len(regions) == 1 else None,
            last_seq=lead_seq if isinstance(lead_seq, int) else None,
            digest=lead_digest,
            mismatched=mismatched,
            at_spec=not problems,
            spec_problems=tuple(problems),
            checked=True,
        )


def _spec_problems(spec: DeploySpec, fleet: Fleet) -> tuple[str, ...]:
    plan = build_plan(spec, fleet)
    return tuple(f"{s.id} pending" for s in plan.mutating_steps)


def _slot(metadata: Mapping[str, str]) -> int:
    value = metadata.get("orch_slot", "")
    return int(value) if value.isdigit() else 1_000_000
