"""Build a restore plan: put machines back to journaled configs (rollback).

The executor calls :func:`build_rollback_plan` for an automatic rollback after a failed gate,
and ``invoke rollback`` for a manual one. The journal holds each machine's config from before
the deploy changed it; the plan updates the machines that still exist back to it, recreates
those that are gone, destroys the ones the failed release added, and gates every region it
touched. Pure and deterministic, like :func:`~orchestrator.plan.graph.build_plan`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import DeployError
from orchestrator.fleetconfig.model import WaveSpec
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
from orchestrator.plan.fleet import Fleet, ObservedMachine, ObservedVolume
from orchestrator.plan.model import Plan
from orchestrator.plan.steps import StepKind, step_id

__all__ = ["build_rollback_plan"]


@dataclass(frozen=True, slots=True)
class _Target:
    machine_id: str
    region: str
    slot: int
    config: Mapping[str, Any]
    current: ObservedMachine | None


class _Index:
    """Lookups into a Fleet built once per plan, so nothing scans the fleet per machine.

    ``Fleet.machine``, ``Fleet.volume`` and ``Fleet.unattached_volumes`` walk the whole fleet;
    a rollback of N machines would call them N times. Same answers, from dicts.
    """

    __slots__ = ("_cursor", "_forks", "_machines", "_unattached", "_volumes", "fleet", "mounted")

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self._machines: dict[str, ObservedMachine] = {}
        for m in fleet.machines:
            self._machines.setdefault(m.id, m)
        self._volumes: dict[str, ObservedVolume] = {}
        for v in fleet.volumes:
            self._volumes.setdefault(v.id, v)
        self.mounted = fleet.mounted_volume_ids()
        self._unattached: dict[tuple[str, str], tuple[ObservedVolume, ...]] = {}
        self._forks: dict[tuple[str, str], ObservedVolume | None] = {}
        self._cursor: dict[tuple[str, str], int] = {}

    def machine(self, machine_id: str) -> ObservedMachine | None:
        return self._machines.get(machine_id)

    def volume(self, volume_id: str) -> ObservedVolume | None:
        return self._volumes.get(volume_id)

    def unattached_volumes(self, region: str, name: str) -> tuple[ObservedVolume, ...]:
        key = (region, name)
        found = self._unattached.get(key)
        if found is None:
            found = self._unattached[key] = self.fleet.unattached_volumes(region, name)
        return found

    def first_free(self, region: str, name: str, free: Callable[[str], bool]) -> str | None:
        """Return the first unattached volume ``region``/``name`` that ``free`` accepts.

        Once ``free`` turns a volume down it never accepts it again (a claimed volume stays
        claimed), so each call resumes where the last one stopped instead of starting over.
        """
        key = (region, name)
        volumes = self.unattached_volumes(region, name)
        i = self._cursor.get(key, 0)
        while i < len(volumes) and not free(volumes[i].id):
            i += 1
        self._cursor[key] = i
        return volumes[i].id if i < len(volumes) else None

    def fork_source(self, primary: str, name: str) -> ObservedVolume | None:
        key = (primary, name)
        if key not in self._forks:
            self._forks[key] = fork_source(self.fleet, primary, name)
        return self._forks[key]


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
    index: _Index, mid: str, config: Mapping[str, Any], regions: Mapping[str, str]
) -> _Target:
    current = index.machine(mid)
    region = current.region if current else regions.get(mid)
    if region is None:
        mount = _first_mount(config)
        vol = index.volume(str(mount.get("volume", ""))) if mount else None
        region = vol.region if vol else None
    if region is None:
        raise DeployError(f"cannot restore machine {mid}: it is gone and its region is unknown")
    slot = current.slot if current and current.slot is not None else _slot_of(config)
    if slot is None:
        raise DeployError(f"cannot restore machine {mid}: its config has no orch_slot")
    return _Target(mid, region, slot, config, current)


def build_rollback_plan(
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
    index = _Index(fleet)
    resolved = sorted(
        (_resolve(index, mid, cfg, regions or {}) for mid, cfg in targets.items()),
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
        (m for m in (index.machine(mid) for mid in set(destroy)) if m is not None),
        key=lambda m: (m.region, -(m.slot or 0), m.id),
    )
    touched = {t.region for t in resolved} | {m.region for m in doomed}
    known = {r for w in spec_waves for r in w.regions}
    stray = tuple(sorted(touched - known))
    all_waves = (*spec_waves, WaveSpec(index=len(spec_waves) + 1, regions=stray))
    waves = plan_waves(all_waves, touched)

    by_region: dict[str, list[_Target]] = {}
    for t in resolved:
        by_region.setdefault(t.region, []).append(t)
    doomed_in: dict[str, list[ObservedMachine]] = {}
    for m in doomed:
        doomed_in.setdefault(m.region, []).append(m)

    asm = Assembler()
    notes: list[str] = []
    claimed: set[str] = set()
    for wave in waves:
        for region in wave.regions:
            mine = by_region.get(region, [])
            gone = doomed_in.get(region, [])
            _restore_region(index, region, wave.index, mine, gone, release, asm, notes, claimed)
            slots = set(fleet.managed_in(region)) | {t.slot for t in mine}
            slots -= {m.slot for m in gone if m.slot is not None}
            asm.add_gates(
                region,
                slots=sorted(slots),
                bake=wave if bake else None,
                params={"release": _gate_release(mine, release), "config_digest": None},
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


def _gate_release(targets: Sequence[_Target], release: str) -> str | None:
    """Return the release a region's gate expects: its targets' own, when they agree.

    Machines go back to the release their journaled config carries, which may differ between
    regions (a rollback of everything a deploy changed, over a fleet that was not on one
    release). ``None`` when a region's targets disagree, or when it has none (the restore
    only destroys machines there; the others were not touched): the gate then checks health
    only.
    """
    if not targets:
        return None
    found = set()
    for t in targets:
        meta = t.config.get("metadata")
        value = meta.get(META_RELEASE) if isinstance(meta, Mapping) else None
        found.add(value if isinstance(value, str) and value else release)
    return found.pop() if len(found) == 1 else None


def _primary(targets: Sequence[_Target]) -> str | None:
    for t in targets:
        env = t.config.get("env")
        value = env.get("PRIMARY_REGION") if isinstance(env, Mapping) else None
        if isinstance(value, str) and value:
            return value
    return None


def _restore_region(
    index: _Index,
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
    managed = index.fleet.managed_in(region)
    doomed = {m.id for m in gone}
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
        volume = _restore_volume(index, t, claimed)
        asm.add_create(
            region,
            wave,
            t.slot,
            params={
                "name": machine_name(index.fleet.app, region, t.slot),
                "config": without_volumes(t.config),
                "release": release,
                "replaces": t.machine_id,
            },
            volume=volume,
            primary_region=_primary([t]) or region,
            # The slot's current holder goes first, so the slot never has two machines.
            after=[step_id(region, StepKind.MACHINE_DESTROY, t.slot)] if holder else [],
        )


def _restore_volume(index: _Index, t: _Target, claimed: set[str]) -> VolumePlan | None:
    """Pick the volume a recreated machine gets: its old one if still free, else like a deploy."""
    mount = _first_mount(t.config)
    if mount is None:
        return None
    name = str(mount.get("name") or "data")
    old = index.volume(str(mount.get("volume", "")))
    size = mount.get("size_gb")
    size_gb = size if isinstance(size, int) and size > 0 else (old.size_gb if old else 1)

    def free(vid: str) -> bool:
        vol = index.volume(vid)
        return (
            vol is not None
            and vol.region == t.region
            and vol.attached_machine_id is None
            and vid not in index.mounted
            and vid not in claimed
        )

    # Its old volume first, then the region's unattached volumes of that name, by id.
    reuse = old.id if old is not None and free(old.id) else index.first_free(t.region, name, free)
    if reuse is not None:
        claimed.add(reuse)
        return VolumePlan(name, size_gb, reuse=reuse)
    primary = _primary([t])
    if primary is None or primary == t.region:
        return VolumePlan(name, size_gb)
    source = index.fork_source(primary, name)
    if source is not None:
        return VolumePlan(name, max(size_gb, source.size_gb), fork_from=source.id)
    return VolumePlan(name, size_gb, fork_from_region=primary)
