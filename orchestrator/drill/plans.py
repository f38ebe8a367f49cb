"""Plan the drill's fleet changes as ordinary plans, so the executor runs them like a deploy.

Every change a drill makes to machines is one of four plans, built from the same blocks as a
deploy (``orchestrator.plan.assemble``) and run by the same `Executor`, so each machine is
leased, journaled before and after, updated at ``current_version`` and waited on until the
*expected* version runs with its checks passing:

- `converge_plan`: every machine runs the spec's config with ``PRIMARY_REGION`` set to a given
  region, in a given region order (promotion, following, switching back), and machines in
  slots above the spec's count are destroyed (scaling back). With the spec's own primary this
  is exactly the spec: the configs, digests and release id a deploy would give.
- `reseed_plan`: the returning old primary's machines are replaced by machines on fresh forks
  of the new primary's volume (old volumes kept).
- `scale_up_plan`: extra machines in surviving regions, on forks of the new primary's volume.

The configs carry an ``orch_config_digest`` of what they really are, so a later ``invoke plan``
sees a fleet left mid-drill as drifted and a deploy puts it back to the spec.
All functions are pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.errors import DrillError
from orchestrator.fleetconfig.model import DeploySpec, WaveSpec
from orchestrator.plan.assemble import Assembler, VolumePlan, fork_source, without_volumes
from orchestrator.plan.config import (
    META_CONFIG_DIGEST,
    config_digest,
    desired_config,
    machine_name,
    release_id,
)
from orchestrator.plan.fleet import Fleet
from orchestrator.plan.model import Plan
from orchestrator.plan.steps import StepKind, step_id

__all__ = ["converge_plan", "drill_config", "reseed_plan", "scale_up_plan", "spread"]


def drill_config(spec: DeploySpec, region: str, slot: int, primary: str) -> dict[str, Any]:
    """Return the spec's config for ``slot`` of ``region`` with ``PRIMARY_REGION=primary``.

    With ``primary == spec.primary_region`` it is `desired_config` itself.
    """
    config = desired_config(spec, region, slot)
    if primary != spec.primary_region:
        config["env"] = {**config["env"], "PRIMARY_REGION": primary}
        config["metadata"] = {**config["metadata"], META_CONFIG_DIGEST: config_digest(config)}
    return config


def _waves(order: Sequence[Sequence[str]]) -> tuple[WaveSpec, ...]:
    out: list[WaveSpec] = []
    for regions in order:
        if regions:
            # A failed drill plan stops; the drill itself decides how to restore the fleet.
            out.append(WaveSpec(index=len(out) + 1, regions=tuple(regions), on_failure="halt"))
    return tuple(out)


def _plan(
    asm: Assembler, fleet: Fleet, release: str, waves: tuple[WaveSpec, ...], primary: str
) -> Plan:
    """Return the assembled steps as a drill plan, wave after wave."""
    return Plan(
        app=fleet.app,
        release=release,
        waves=tuple(w.regions for w in waves),
        graph=asm.link(waves, primary),
        wave_specs=waves,
        purpose="restore",
    )


def converge_plan(
    spec: DeploySpec,
    fleet: Fleet,
    *,
    primary: str,
    order: Sequence[Sequence[str]],
    counts: Mapping[str, int] | None = None,
) -> Plan:
    """Plan every machine of the regions in ``order`` onto the spec with ``primary`` as primary.

    Args:
        spec: the spec.
        fleet: the fleet now.
        primary: the region whose machines take writes afterwards.
        order: waves of regions; a wave starts once the previous one passed its gates.
        counts: region → machines to keep (default: the spec's count); managed machines in
            slots above it are destroyed, highest first, volumes kept.
    """
    waves = _waves(order)
    release = release_id(spec)
    asm = Assembler()
    gated: dict[str, list[int]] = {}
    for wave in waves:
        for region in wave.regions:
            keep = (counts or {}).get(region, spec.regions[region].count)
            managed = fleet.managed_in(region)
            for slot, m in sorted(managed.items()):
                if slot > keep:
                    continue
                target = drill_config(spec, region, slot, primary)
                # The digest alone would miss a PRIMARY_REGION changed behind our back (the
                # other side of a split): which region a machine follows is what this plan is for.
                follows = (m.config.get("env") or {}).get("PRIMARY_REGION")
                if m.config_digest == target["metadata"][META_CONFIG_DIGEST] and follows in (
                    None,
                    target["env"].get("PRIMARY_REGION"),
                ):
                    continue
                asm.add_update(
                    region,
                    wave.index,
                    m,
                    {
                        "name": m.name,
                        "config": target,
                        "release": release,
                        "from_version": m.version,
                        "from_release": m.release,
                        "reason": "drill",
                    },
                )
            doomed = [m for slot, m in managed.items() if slot > keep]
            asm.add_destroys(region, wave.index, doomed, destroy_volumes=False)
            gated[region] = [s for s in sorted(managed) if s <= keep]
    for wave in waves:
        for region in wave.regions:
            asm.add_gates(
                region,
                slots=gated.get(region, []),
                bake=None,
                params={"release": release, "config_digest": None},
            )
    return _plan(asm, fleet, release, waves, primary)


def _fork_plan(spec: DeploySpec, fleet: Fleet, primary: str) -> VolumePlan | None:
    """Return how a new machine gets its volume: a fork of the primary's (lowest slot)."""
    if spec.mount is None:
        return None
    source = fork_source(fleet, primary, spec.mount.source)
    if source is None:
        raise DrillError(f"no {spec.mount.source!r} volume in {primary} to fork from")
    return VolumePlan(spec.mount.source, source.size_gb, fork_from=source.id)


def _add_create(
    asm: Assembler,
    spec: DeploySpec,
    fleet: Fleet,
    region: str,
    wave: int,
    slot: int,
    primary: str,
    after: Sequence[str] = (),
) -> None:
    volume = _fork_plan(spec, fleet, primary)
    if volume is not None:
        size = spec.regions[region].volume_size_gb
        volume = VolumePlan(volume.name, max(size, volume.size_gb), fork_from=volume.fork_from)
    asm.add_create(
        region,
        wave,
        slot,
        params={
            "name": machine_name(fleet.app, region, slot),
            "config": without_volumes(drill_config(spec, region, slot, primary)),
            "release": release_id(spec),
        },
        volume=volume,
        primary_region=primary,
        after=after,
    )


def reseed_plan(spec: DeploySpec, fleet: Fleet, *, region: str, primary: str) -> Plan:
    """Plan replacing every machine of ``region`` by one on a fresh fork of ``primary``'s data.

    Each slot: destroy the old machine (its volume kept: it holds whatever the old primary
    wrote that never reached the new one), fork the new primary's volume, create the machine
    there following ``primary``, wait until it caught up, then gate the region.
    """
    asm = Assembler()
    managed = fleet.managed_in(region)
    slots = sorted(s for s in managed if s <= spec.regions[region].count)
    asm.add_destroys(region, 1, list(managed.values()), destroy_volumes=False)
    for slot in range(1, spec.regions[region].count + 1):
        after = [step_id(region, StepKind.MACHINE_DESTROY, slot)] if slot in managed else []
        _add_create(asm, spec, fleet, region, 1, slot, primary, after)
    release = release_id(spec)
    asm.add_gates(
        region,
        slots=sorted({*slots, *range(1, spec.regions[region].count + 1)}),
        bake=None,
        params={"release": release, "config_digest": None},
    )
    waves = _waves([[region]])
    return _plan(asm, fleet, release, waves, primary)


def scale_up_plan(
    spec: DeploySpec, fleet: Fleet, *, extra: Mapping[str, int], primary: str
) -> Plan:
    """Plan ``extra[region]`` more machines in each region, on forks of ``primary``'s volume."""
    asm = Assembler()
    regions = [r for r in sorted(extra) if extra[r] > 0]
    release = release_id(spec)
    for region in regions:
        managed = fleet.managed_in(region)
        base = max([spec.regions[region].count, *managed])
        for slot in range(base + 1, base + 1 + extra[region]):
            _add_create(asm, spec, fleet, region, 1, slot, primary)
        asm.add_gates(
            region,
            slots=list(range(base + 1, base + 1 + extra[region])),
            bake=None,
            params={"release": release, "config_digest": None},
        )
    waves = _waves([regions])
    return _plan(asm, fleet, release, waves, primary)


def spread(count: int, regions: Sequence[str]) -> dict[str, int]:
    """Spread ``count`` machines over ``regions`` round-robin, in order (flyctl's scale count)."""
    out = dict.fromkeys(regions, 0)
    for i in range(count if regions else 0):
        out[regions[i % len(regions)]] += 1
    return {r: n for r, n in out.items() if n}
