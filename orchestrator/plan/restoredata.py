"""Plan ``rollback --restore-data``: put machines back on volumes restored from restore points.

A machine's mounts cannot change in place on Fly (flyctl replaces a machine whose mount
changes: destroy, then create), so each machine with a restore point is replaced in its slot:

- ``volume.ensure`` creates a volume from the snapshot (``snapshot_id``), beside the old one;
- once every volume of the region is restored, ``machine.destroy`` takes the slot's current
  machine down, its volume kept (listed by ``invoke volumes`` with reason ``restore``; nothing
  deletes it without an explicit flag);
- ``machine.create`` launches the slot's machine on the restored volume with the config of
  the release being put back;
- ``gate.health`` checks the region's machines.

In a region the destroys run one after another, and all of them before the first create, so no
machine left on the newer data can serve as the writer the restored ones would copy from; in
the primary region the creates also run one after another, so the first restored machine is
elected writer and the others follow it. Pure and deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx

from orchestrator.fleetconfig.model import WaveSpec
from orchestrator.plan.assemble import plan_waves, without_volumes
from orchestrator.plan.config import machine_name
from orchestrator.plan.fleet import Fleet
from orchestrator.plan.model import Plan
from orchestrator.plan.steps import Step, StepKind, step_id

__all__ = ["RestorePoint", "build_data_restore_plan"]


@dataclass(frozen=True, slots=True)
class RestorePoint:
    """A snapshot of one machine's volume, taken before a release changed the machine.

    Attributes:
        region: the machine's region.
        slot: its slot.
        machine: the machine's id when the snapshot was taken.
        volume: the volume snapshotted.
        snapshot: the snapshot id.
        digest: the snapshot's digest as Fly reported it ("" when none).
        last_seq: the machine's ``last_seq`` just before, or None.
        release_before: the release the machine ran then.
        at: when (ISO).
    """

    region: str
    slot: int
    machine: str
    volume: str
    snapshot: str
    digest: str = ""
    last_seq: int | None = None
    release_before: str | None = None
    at: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RestorePoint | None:
        """Read a point as the release ledger keeps it; ``None`` when it lacks a field."""
        slot, seq = data.get("slot"), data.get("last_seq")
        fields = [data.get(k) for k in ("region", "machine", "volume", "snapshot")]
        if not isinstance(slot, int) or not all(isinstance(f, str) and f for f in fields):
            return None
        before = data.get("release_before")
        return cls(
            region=str(data["region"]),
            slot=slot,
            machine=str(data["machine"]),
            volume=str(data["volume"]),
            snapshot=str(data["snapshot"]),
            digest=str(data.get("digest") or ""),
            last_seq=seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
            release_before=before if isinstance(before, str) else None,
            at=str(data.get("at") or ""),
        )


def build_data_restore_plan(
    app: str,
    fleet: Fleet,
    points: Sequence[RestorePoint],
    configs: Mapping[tuple[str, int], Mapping[str, Any]],
    *,
    release: str,
    spec_waves: Sequence[WaveSpec],
    primary_region: str,
) -> Plan:
    """Plan replacing each point's slot machine by one on a volume restored from its snapshot.

    Args:
        app: the app.
        fleet: what exists now.
        points: the restore points to apply (one per slot).
        configs: (region, slot) → the config the new machine runs (the release put back).
        release: that release.
        spec_waves: the rollout waves: regions go in their order.
        primary_region: the region whose creates run one after another.
    """
    graph = nx.DiGraph()
    by_region: dict[str, list[RestorePoint]] = {}
    for p in sorted(points, key=lambda p: (p.region, p.slot)):
        if (p.region, p.slot) in configs:
            by_region.setdefault(p.region, []).append(p)
    waves = plan_waves(spec_waves, set(by_region))
    wave_of = {r: w.index for w in waves for r in w.regions}
    previous_exit: list[str] = []
    for wave in waves:
        exits: list[str] = []
        for region in wave.regions:
            exits.append(
                _region(
                    graph,
                    app,
                    fleet,
                    by_region[region],
                    configs,
                    release,
                    wave_of[region],
                    primary=region == primary_region,
                    after=previous_exit,
                )
            )
        previous_exit = exits
    return Plan(
        app=app,
        release=release,
        waves=tuple(w.regions for w in waves),
        graph=graph,
        notes=(),
        wave_specs=waves,
        purpose="restore",
    )


def _region(
    graph: Any,
    app: str,
    fleet: Fleet,
    points: Sequence[RestorePoint],
    configs: Mapping[tuple[str, int], Mapping[str, Any]],
    release: str,
    wave: int,
    *,
    primary: bool,
    after: Sequence[str],
) -> str:
    """Add one region's steps; return its health gate's id."""
    region = points[0].region
    managed = fleet.managed_in(region)
    last_destroy: str | None = None
    first_destroy: str | None = None
    for p in points:
        current = managed.get(p.slot)
        if current is None:
            continue  # already gone (a killed restore): only the create is left to do
        sid = step_id(region, StepKind.MACHINE_DESTROY, p.slot)
        graph.add_node(
            sid,
            step=Step(
                id=sid,
                kind=StepKind.MACHINE_DESTROY,
                region=region,
                wave=wave,
                slot=p.slot,
                machine=current.id,
                params={
                    "name": current.name,
                    "keep_volume": True,
                    "from_release": current.release,
                    "reason": "restore",
                },
            ),
        )
        for dep in [last_destroy] if last_destroy else after:
            graph.add_edge(dep, sid)
        first_destroy = first_destroy or sid
        last_destroy = sid
    previous_create: str | None = None
    creates: list[str] = []
    ensures: list[str] = []
    for p in points:
        config = configs[(region, p.slot)]
        volume = fleet.volume(p.volume)
        ensure = step_id(region, StepKind.VOLUME_ENSURE, p.slot)
        graph.add_node(
            ensure,
            step=Step(
                id=ensure,
                kind=StepKind.VOLUME_ENSURE,
                region=region,
                wave=wave,
                slot=p.slot,
                params={
                    "name": volume.name if volume else _mount_name(config),
                    "size_gb": volume.size_gb if volume else 1,
                    "reuse": None,
                    "snapshot_id": p.snapshot,
                },
            ),
        )
        for dep in after:
            graph.add_edge(dep, ensure)
        ensures.append(ensure)
        create = step_id(region, StepKind.MACHINE_CREATE, p.slot)
        current = managed.get(p.slot)
        graph.add_node(
            create,
            step=Step(
                id=create,
                kind=StepKind.MACHINE_CREATE,
                region=region,
                wave=wave,
                slot=p.slot,
                params={
                    "name": current.name if current else machine_name(app, region, p.slot),
                    "config": without_volumes(config),
                    "release": release,
                    "volume_from": ensure,
                    "replaces": current.id if current else None,
                    "snapshot": p.snapshot,
                },
            ),
        )
        deps: list[str | None] = [ensure, last_destroy, previous_create if primary else None]
        for before in deps:
            if before is not None:
                graph.add_edge(before, create)
        previous_create = create
        creates.append(create)
    # Every volume is restored before any machine goes: a snapshot Fly no longer has (or a
    # restore that fails) stops the run with the machines untouched.
    if first_destroy is not None:
        for ensure in ensures:
            graph.add_edge(ensure, first_destroy)
    gate = step_id(region, StepKind.GATE_HEALTH)
    graph.add_node(
        gate,
        step=Step(
            id=gate,
            kind=StepKind.GATE_HEALTH,
            region=region,
            wave=wave,
            params={
                "slots": [p.slot for p in points],
                "release": release,
                "config_digest": None,
            },
        ),
    )
    for create in creates:
        graph.add_edge(create, gate)
    return gate


def _mount_name(config: Mapping[str, Any]) -> str:
    mounts = config.get("mounts")
    if isinstance(mounts, list) and mounts and isinstance(mounts[0], Mapping):
        return str(mounts[0].get("name") or "data")
    return "data"
