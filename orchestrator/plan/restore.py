"""Build a restore plan: put machines back to journaled configs (rollback).

The executor calls :func:`build_restore_plan` for an automatic rollback after a failed gate,
and ``invoke rollback`` for a manual one. The journal holds each machine's config from before
the deploy changed it; the plan updates the machines that still exist back to it, recreates
those that are gone, destroys the ones the failed release added, and gates every region it
touched. Pure and deterministic, like :func:`~orchestrator.plan.graph.build_plan`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import DeployError
from orchestrator.plan.assemble import (
    Assembler,
    VolumePlan,
    fork_source,
    plan_waves,
    without_volumes,
)
from orchestrator.plan.config import (
    META_CONFIG_DIGEST,
    META_RELEASE,
    META_SLOT,
    config_digest,
    machine_name,
)
from orchestrator.plan.fleet import Fleet, ObservedMachine
from orchestrator.plan.model import Plan
from orchestrator.plan.steps import StepKind, step_id
from orchestrator.spec.model import WaveSpec

__all__ = ["build_restore_plan"]


@dataclass(frozen=True, slots=True)
class _Target:
    machine_id: str
    region: str
    slot: int
    config: Mapping[str, Any]
    current: ObservedMachine | None


def _slot_of(config: Mapping[str, Any]) -> int | None:
    meta = config.get("metadata")
    value = meta.get(META_SLOT) if isinstance(meta, Mapping) else None
    return int(value) if isinstance(value, str) and value.isdigit() and int(value) > 0 else None


def _first_mount(config: Mapping[str, Any]) -> Mapping[str, Any] | None:
    mounts = config.get("mounts")
    if isinstance(mounts, list) and mounts and isinstance(mounts[0], Mapping):
        return mounts[0]
    return None


def _digest(config: Mapping[str, Any]) -> str:
    meta = config.get("metadata")
    stored = meta.get(META_CONFIG_DIGEST) if isinstance(meta, Mapping) else None
    return stored if isinstance(stored, str) and stored else config_digest(config)


def _autostops(config: Mapping[str, Any]) -> bool:
    services = config.get("services")
    return isinstance(services, list) and any(
        isinstance(s, Mapping) and s.get("autostop") not in (None, False, "off") for s in services
    )


def _is_restored(t: _Target) -> bool:
    m = t.current
    if m is None or m.state == "failed":
        return False
    if m.state != "started" and not _autostops(t.config):
        return False
    meta = t.config.get("metadata")
    release = meta.get(META_RELEASE) if isinstance(meta, Mapping) else None
    observed = m.config_digest or config_digest(m.config)
    return observed == _digest(t.config) and (release is None or m.release == release)


def _resolve(
    fleet: Fleet, mid: str, config: Mapping[str, Any], regions: Mapping[str, str]
) -> _Target:
    current = fleet.machine(mid)
    region = current.region if current else regions.get(mid)
    if region is None:
        mount = _first_mount(config)
        vol = fleet.volume(str(mount.get("volume", ""))) if mount else None
        region = vol.region if vol else None
    if region is None:
        raise DeployError(f"cannot restore machine {mid}: it is gone and its region is unknown")
    slot = current.slot if current and current.slot is not None else _slot_of(config)
    if slot is None:
        raise DeployError(f"cannot restore machine {mid}: its config has no orch_slot")
    return _Target(mid, region, slot, config, current)


def build_restore_plan(
    fleet: Fleet,
    targets: Mapping[str, Mapping[str, Any]],
    *,
    release: str,
    spec_waves: Sequence[WaveSpec],
    regions: Mapping[str, str] | None = None,
    destroy: Collection[str] = (),
    bake: bool = False,
) -> Plan:
    """Plan putting each machine in ``targets`` back to its config (pure, deterministic).

    Args:
        fleet: what exists now.
        targets: machine id → the full config to restore (as journaled before the change,
            metadata included, so the machine gets its old ``fly_release_id`` back).
        release: the release being restored (recorded in the steps and gates).
        spec_waves: the rollout waves; regions are restored in this order, and regions in no
            wave go last.
        regions: machine id → region, for machines that may be gone (the journal knows it);
            a gone machine's region is otherwise taken from its old volume.
        destroy: ids of machines the failed release created, to destroy (volumes kept).
        bake: also add ``gate.metrics`` where the wave bakes (off: a rollback should be quick).

    Machines already at their target config are left alone; one that is gone is recreated in
    its slot on its old volume when that volume is still free.

    Raises:
        DeployError: a gone machine whose region or slot cannot be told, or two targets that
            claim one slot.
    """
    resolved = sorted(
        (_resolve(fleet, mid, cfg, regions or {}) for mid, cfg in targets.items()),
        key=lambda t: (t.region, t.slot, t.machine_id),
    )
    seen: dict[tuple[str, int], str] = {}
    for t in resolved:
        other = seen.setdefault((t.region, t.slot), t.machine_id)
        if other != t.machine_id:
            raise DeployError(
                f"cannot restore machines {other} and {t.machine_id}: both claim slot {t.slot} "
                f"of {t.region}"
            )
    doomed = sorted(
        (m for m in (fleet.machine(mid) for mid in set(destroy)) if m is not None),
        key=lambda m: (m.region, -(m.slot or 0), m.id),
    )
    touched = {t.region for t in resolved} | {m.region for m in doomed}
    known = {r for w in spec_waves for r in w.regions}
    stray = tuple(sorted(touched - known))
    all_waves = (*spec_waves, WaveSpec(index=len(spec_waves) + 1, regions=stray))
    waves = plan_waves(all_waves, touched)

    asm = Assembler()
    notes: list[str] = []
    claimed: set[str] = set()
    for wave in waves:
        for region in wave.regions:
            mine = [t for t in resolved if t.region == region]
            gone = [m for m in doomed if m.region == region]
            _restore_region(fleet, region, wave.index, mine, gone, release, asm, notes, claimed)
            slots = set(fleet.managed_in(region)) | {t.slot for t in mine}
            slots -= {m.slot for m in gone if m.slot is not None}
            asm.add_gates(
                region,
                slots=sorted(slots),
                bake=wave if bake else None,
                params={"release": release, "config_digest": None},
            )
    primary = _primary(resolved)
    if primary is not None:
        asm.resolve_primary_waits(primary, notes)
    return Plan(
        app=fleet.app,
        release=release,
        waves=tuple(w.regions for w in waves),
        graph=asm.link(waves, primary or ""),
        notes=tuple(notes),
        wave_specs=waves,
        purpose="restore",
    )


def _primary(targets: Sequence[_Target]) -> str | None:
    for t in targets:
        env = t.config.get("env")
        value = env.get("PRIMARY_REGION") if isinstance(env, Mapping) else None
        if isinstance(value, str) and value:
            return value
    return None


def _restore_region(
    fleet: Fleet,
    region: str,
    wave: int,
    targets: Sequence[_Target],
    gone: Sequence[ObservedMachine],
    release: str,
    asm: Assembler,
    notes: list[str],
    claimed: set[str],
) -> None:
    """Add updates (spearhead first), destroys, then creates for the machines that are gone."""
    for t in targets:
        m = t.current
        if m is None:
            continue
        if _is_restored(t):
            notes.append(
                f"{region}: machine {m.id} (slot {t.slot}) is already at the restored config"
            )
            continue
        asm.add_update(
            region,
            wave,
            m,
            {
                "name": m.name,
                "config": dict(t.config),
                "release": release,
                "from_version": m.version,
                "from_release": m.release,
                "reason": "rollback",
            },
        )
    asm.add_destroys(region, wave, gone, destroy_volumes=False)
    managed = fleet.managed_in(region)
    doomed = {m.id for m in gone}
    mounted = fleet.mounted_volume_ids()
    for t in targets:
        if t.current is not None:
            continue
        holder = managed.get(t.slot)
        if holder is not None and holder.id not in doomed:
            notes.append(
                f"{region}: machine {t.machine_id} is gone and slot {t.slot} is held by "
                f"{holder.id}; not recreated"
            )
            continue
        volume = _restore_volume(fleet, t, mounted, claimed)
        asm.add_create(
            region,
            wave,
            t.slot,
            params={
                "name": machine_name(fleet.app, region, t.slot),
                "config": without_volumes(t.config),
                "release": release,
                "replaces": t.machine_id,
            },
            volume=volume,
            primary_region=_primary([t]) or region,
            # The slot's current holder goes first, so the slot never has two machines.
            after=[step_id(region, StepKind.MACHINE_DESTROY, t.slot)] if holder else [],
        )


def _restore_volume(
    fleet: Fleet, t: _Target, mounted: frozenset[str], claimed: set[str]
) -> VolumePlan | None:
    """Pick the volume a recreated machine gets: its old one if still free, else like a deploy."""
    mount = _first_mount(t.config)
    if mount is None:
        return None
    name = str(mount.get("name") or "data")
    old = fleet.volume(str(mount.get("volume", "")))
    size = mount.get("size_gb")
    size_gb = size if isinstance(size, int) and size > 0 else (old.size_gb if old else 1)

    def free(vid: str) -> bool:
        vol = fleet.volume(vid)
        return (
            vol is not None
            and vol.region == t.region
            and vol.attached_machine_id is None
            and vid not in mounted
            and vid not in claimed
        )

    candidates = ([old.id] if old else []) + [
        v.id for v in fleet.unattached_volumes(t.region, name)
    ]
    reuse = next((vid for vid in candidates if free(vid)), None)
    if reuse is not None:
        claimed.add(reuse)
        return VolumePlan(name, size_gb, reuse=reuse)
    primary = _primary([t])
    if primary is None or primary == t.region:
        return VolumePlan(name, size_gb)
    source = fork_source(fleet, primary, name)
    if source is not None:
        return VolumePlan(name, max(size_gb, source.size_gb), fork_from=source.id)
    return VolumePlan(name, size_gb, fork_from_region=primary)
