"""Check that a drill may start: the input, the fleet, the data, and a recent snapshot.

`check_request` is pure and runs before any network call: a region the fleet does not have,
a ``--promote`` equal to the region, or a promotion when the region is a replica, is bad
input (exit 2). `preflight` then looks at the live fleet and says what it found; any
``problems`` stop the drill before it changes anything (verdict ``failed``):

- the fleet is at the spec (a drill is not a deploy: ``invoke deploy`` first);
- every region is healthy: machines started, checks passing, ``/status`` 200 from the region;
- the region to take down and the region to promote are regions the platform offers;
- a primary volume has a snapshot, and how old the newest is (one is taken when none exists);
- how far each replica lags behind the primary, in records and seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestrator.drill.probes import fleet_health, live_machines, machine_status
from orchestrator.errors import ConfigError, FlyAPIError, FlyTransportError
from orchestrator.fleetconfig.model import DeploySpec
from orchestrator.fleetconfig.regions import nearest_region
from orchestrator.fly.client import FlyClient
from orchestrator.fly.models import Snapshot
from orchestrator.fly.proxy import ProxyClient
from orchestrator.plan.config import META_SLOT
from orchestrator.plan.fleet import Fleet
from orchestrator.plan.graph import build_plan

__all__ = ["Preflight", "check_request", "choose_promotion", "preflight"]

SNAPSHOT_TIMEOUT_S = 60.0


def check_request(spec: DeploySpec, region: str, promote: str | None) -> None:
    """Refuse a drill request that cannot make sense for this fleet (exit code 2).

    Raises:
        ConfigError: naming ``--region`` or ``--promote``, or ``fly.toml: processes`` for a
            fleet of several process groups.
    """
    if spec.groups:
        # The drill's fail-over and fail-back plans number a region's machines 1..count; the
        # other groups' machines would be taken for extra slots and destroyed.
        raise ConfigError(
            f"drills fail over a fleet of one process group; this one has "
            f"{', '.join(spec.group_names)}: drill a copy of the fleet whose fly.toml keeps "
            "only the group that holds the data",
            where="fly.toml: processes",
        )
    fleet = {code for code, r in spec.regions.items() if r.count > 0}
    known = ", ".join(sorted(fleet)) or "none"
    if region not in spec.regions:
        raise ConfigError(
            f"region {region!r} is not in the fleet; the fleet has {known} (regions/*.toml)",
            option="region",
        )
    if region not in fleet:
        raise ConfigError(
            f"region {region!r} has count 0: there is nothing to take down", option="region"
        )
    survivors = sorted(fleet - {region})
    if not survivors:
        raise ConfigError(
            f"region {region!r} is the only region with machines: nothing would survive",
            option="region",
        )
    if promote is None:
        return
    if promote == region:
        raise ConfigError(
            f"cannot promote {promote!r}: it is the region the drill takes down",
            option="promote",
        )
    if region != spec.primary_region:
        raise ConfigError(
            f"{region!r} is a replica region; only a drill of the primary "
            f"({spec.primary_region}) promotes another region",
            option="promote",
        )
    if promote not in fleet:
        raise ConfigError(
            f"region {promote!r} is not in the fleet; it has {known} (regions/*.toml)",
            option="promote",
        )


def choose_promotion(
    spec: DeploySpec, region: str, promote: str | None, healthy: Sequence[str] = ()
) -> str | None:
    """Return the region to promote when ``region`` (the primary) goes down, else ``None``.

    ``--promote`` wins; otherwise the nearest region with machines, preferring healthy ones.
    """
    if region != spec.primary_region:
        return None
    if promote is not None:
        return promote
    candidates = [c for c, r in spec.regions.items() if r.count > 0 and c != region]
    preferred = [c for c in candidates if c in healthy] or candidates
    return nearest_region(region, preferred)


@dataclass(slots=True)
class Preflight:
    """What the preflight found.

    Attributes:
        problems: reasons not to start, one line each (empty: go).
        regions: region → ``{"healthy", "machines", "problem"}``.
        primary_last_seq: the primary's ``last_seq``.
        lag: machine id → ``{"region", "last_seq", "records", "seconds"}``.
        snapshot: the newest snapshot of a primary volume (``volume``, ``id``, ``age_s``,
            ``taken``: whether the drill had to take it).
        notes: things worth saying that are not problems.
    """

    problems: list[str] = field(default_factory=list)
    regions: dict[str, dict[str, Any]] = field(default_factory=dict)
    primary_last_seq: int | None = None
    lag: dict[str, dict[str, Any]] = field(default_factory=dict)
    snapshot: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Return the findings as JSON."""
        return {
            "ok": not self.problems,
            "problems": list(self.problems),
            "regions": self.regions,
            "primary_last_seq": self.primary_last_seq,
            "replica_lag": self.lag,
            "snapshot": self.snapshot,
        }


async def preflight(
    client: FlyClient,
    probe: ProxyClient,
    spec: DeploySpec,
    fleet: Fleet,
    *,
    region: str,
    promote: str | None,
    take_snapshot: bool = True,
) -> Preflight:
    """Look at the live fleet before a drill; see the module docstring for what is checked."""
    found = Preflight()
    plan = build_plan(spec, fleet)
    if plan.mutating_steps:
        found.problems.append(
            f"the fleet is not at the spec ({len(plan.mutating_steps)} change(s) pending, "
            f"e.g. {plan.mutating_steps[0].id}); run `invoke deploy` first"
        )
    codes = sorted(c for c, r in spec.regions.items() if r.count > 0)
    checks = await fleet_health(client, probe, spec.app, codes)
    for health in checks.values():
        found.regions[health.region] = {
            "healthy": health.healthy,
            "machines": health.machines,
            "problem": health.problem,
        }
        if not health.healthy:
            found.problems.append(f"{health.region} is not healthy: {health.problem}")
    await _capacity(client, [region, *([promote] if promote else [])], found)
    await _lag(client, probe, spec, found)
    if take_snapshot:
        await _snapshot(client, spec, fleet, found)
    return found


async def _capacity(client: FlyClient, regions: Sequence[str], found: Preflight) -> None:
    """Check that the platform offers the regions the drill acts on."""
    try:
        offered = {r.code: r for r in await client.list_regions()}
    except (FlyAPIError, FlyTransportError) as exc:
        found.notes.append(f"could not list the platform's regions ({exc}); capacity not checked")
        return
    for code in regions:
        r = offered.get(code)
        if r is None:
            found.problems.append(f"the platform does not offer region {code}")
        elif r.deprecated:
            found.problems.append(f"region {code} is deprecated: no capacity for new machines")


async def _lag(client: FlyClient, probe: ProxyClient, spec: DeploySpec, found: Preflight) -> None:
    """Read every machine's ``/status``; record each replica's lag behind the primary."""
    machines = await live_machines(client, spec.app)
    answers = await asyncio.gather(*(machine_status(probe, m.id) for m in machines))
    primaries = [
        (m, a)
        for m, a in zip(machines, answers, strict=True)
        if a.ok and a.body.get("role") == "primary"
    ]
    if not primaries:
        found.problems.append("no machine says it is the primary (/status role)")
        return
    lead = min(primaries, key=lambda p: (_slot(p[0].config.metadata), p[0].id))
    found.primary_last_seq = _int(lead[1].body.get("last_seq"))
    if len(primaries) > 1:
        ids = ", ".join(m.id for m, _ in primaries)
        found.notes.append(f"{len(primaries)} machines say they are the primary: {ids}")
    for m, a in zip(machines, answers, strict=True):
        if not a.ok or a.body.get("role") != "replica":
            continue
        seq = _int(a.body.get("last_seq"))
        behind = None
        if seq is not None and found.primary_last_seq is not None:
            behind = max(0, found.primary_last_seq - seq)
        seconds = a.body.get("replication_lag_s")
        found.lag[m.id] = {
            "region": m.region,
            "last_seq": seq,
            "records": behind,
            "seconds": seconds if isinstance(seconds, int | float) else None,
        }


async def _snapshot(client: FlyClient, spec: DeploySpec, fleet: Fleet, found: Preflight) -> None:
    """Find the newest snapshot of a primary volume; take one when there is none."""
    managed = fleet.managed_in(spec.primary_region)
    volume = next((m.volume_id for _, m in sorted(managed.items()) if m.volume_id), None)
    if volume is None:
        found.notes.append(f"no volume in {spec.primary_region}: no snapshot to check")
        return
    snaps = [s for s in await client.list_snapshots(spec.app, volume) if _done(s)]
    taken = False
    if not snaps:
        await client.create_snapshot(spec.app, volume)
        taken = True
        deadline = time.monotonic() + SNAPSHOT_TIMEOUT_S
        while not snaps:
            if time.monotonic() > deadline:
                found.problems.append(f"the snapshot of {volume} did not complete in time")
                return
            await asyncio.sleep(0.2)  # polling Fly's asynchronous snapshot, with a deadline
            snaps = [s for s in await client.list_snapshots(spec.app, volume) if _done(s)]
        found.notes.append(f"volume {volume} had no snapshot; took one before the drill")
    newest = max(snaps, key=lambda s: s.created_at or "")
    age = _age_s(newest.created_at)
    found.snapshot = {
        "volume": volume,
        "id": newest.id,
        "created_at": newest.created_at,
        "age_s": None if age is None else round(age, 1),
        "digest": newest.digest or None,
        "taken": taken,
    }


def _done(snapshot: Snapshot) -> bool:
    return snapshot.status in ("", "created", "complete", "completed", "done")


def _age_s(created_at: str | None) -> float | None:
    if not created_at:
        return None
    try:
        when = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, time.time() - when.timestamp())


def _slot(metadata: Mapping[str, str]) -> int:
    value = metadata.get(META_SLOT, "")
    return int(value) if value.isdigit() else 1_000_000


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
