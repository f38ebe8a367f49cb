"""Put steps into a graph: the per-region building blocks shared by deploy and restore plans.

Internal to ``orchestrator.plan``: :mod:`~orchestrator.plan.graph` decides *what* changes for a
deploy and :mod:`~orchestrator.plan.rollback` for a rollback; both use the blocks here to add the
steps, gates and wave barriers in exactly the same way.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import networkx as nx

from orchestrator.fleetconfig.model import WaveSpec
from orchestrator.plan.fleet import Fleet, ObservedMachine, ObservedVolume
from orchestrator.plan.model import MACHINE_KINDS
from orchestrator.plan.steps import Step, StepKind, step_id

__all__ = [
    "Assembler",
    "VolumePlan",
    "fork_source",
    "plan_waves",
    "with_volume",
    "without_volumes",
]


# Steps a region's health gate waits for.
_GATED_KINDS = MACHINE_KINDS | {StepKind.VOLUME_REPLICATE}


@dataclass(slots=True)
class _Region:
    """Steps of one region while the graph is assembled."""

    code: str
    wave: int
    ids: list[str] = field(default_factory=list)
    # volume.ensure steps that fork from the primary region and must wait for it to finish
    wait_for_primary: list[str] = field(default_factory=list)
    # The spearhead of each process group (lane "" is the default group's).
    spearheads: dict[str, str] = field(default_factory=dict)
    # Kept as steps are added, so that the gates, the roots and the exits of a region are
    # found without walking the graph: the machine and replicate steps (in the order added),
    # and the steps with a predecessor / a successor inside the region.
    gated: list[str] = field(default_factory=list)
    own: set[str] = field(default_factory=set)
    has_pred: set[str] = field(default_factory=set)
    has_succ: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class VolumePlan:
    """How ``volume.ensure`` provides a new machine's volume.

    Attributes:
        name: the volume name (the mount's ``source``).
        size_gb: the size to create it with.
        reuse: an unattached volume to use as is.
        fork_from: a volume to fork (a replica region's volume from the primary's).
        fork_from_region: a region whose volume the executor picks at run time to fork.
    """

    name: str
    size_gb: int
    reuse: str | None = None
    fork_from: str | None = None
    fork_from_region: str | None = None

    @property
    def forks(self) -> bool:
        """Tell whether the volume is created as a fork (so its data must be verified)."""
        return self.fork_from is not None or self.fork_from_region is not None


class Assembler:
    """Collect steps and edges region by region, then add gates and wave barriers."""

    def __init__(self) -> None:
        self.graph = nx.DiGraph()
        self.regions: dict[str, _Region] = {}
        # An edge named a step before it was added: find roots and exits in the graph then.
        self._forward = False

    @classmethod
    def of(cls, graph: Any) -> Assembler:
        """Return an assembler that goes on from a finished plan's ``graph`` (copied)."""
        asm = cls()
        asm.graph = graph.copy()
        for sid in nx.topological_sort(asm.graph):
            step = asm.graph.nodes[sid]["step"]
            region = asm.regions.get(step.region)
            if region is None:
                region = asm.regions[step.region] = _Region(step.region, step.wave)
            region.ids.append(sid)
            region.own.add(sid)
            if step.kind in _GATED_KINDS:
                region.gated.append(sid)
        for a, b in asm.graph.edges:
            region = asm.regions[asm.graph.nodes[a]["step"].region]
            if b in region.own:
                region.has_succ.add(a)
                region.has_pred.add(b)
        return asm

    def add(self, step: Step, after: Iterable[str | None] = ()) -> str:
        """Add ``step`` after the given step ids (``None`` entries are skipped)."""
        sid = step.id
        region = self.regions.get(step.region)
        if region is None:
            region = self.regions[step.region] = _Region(step.region, step.wave)
        graph = self.graph
        graph.add_node(sid, step=step)
        for dep in after:
            if dep is None:
                continue
            if dep in region.own:
                region.has_succ.add(dep)
                region.has_pred.add(sid)
            elif dep not in graph:
                self._forward = True
            graph.add_edge(dep, sid)
        region.ids.append(sid)
        region.own.add(sid)
        if step.kind in _GATED_KINDS:
            region.gated.append(sid)
        return sid

    def spearhead(self, region: str, lane: str = "") -> str | None:
        """Return the id of the spearhead update of ``lane`` (a process group), if one was added."""
        r = self.regions.get(region)
        return r.spearheads.get(lane) if r else None

    def add_update(
        self,
        region: str,
        wave: int,
        m: ObservedMachine,
        params: Mapping[str, Any],
        lane: str = "",
        after: Sequence[str] = (),
    ) -> str:
        """Add a ``machine.update``; a group's first in a region is its spearhead.

        The rest of the group follow their spearhead; a later group's spearhead follows the
        earlier groups' ones, so each new config is proved on one machine before it spreads.
        The update also waits for the ids in ``after``.
        """
        lead = self.spearhead(region, lane)
        r = self.regions.get(region)
        earlier = list(r.spearheads.values()) if r is not None and lead is None else []
        sid = self.add(
            Step(
                id=step_id(region, StepKind.MACHINE_UPDATE, m.slot),
                kind=StepKind.MACHINE_UPDATE,
                region=region,
                wave=wave,
                slot=m.slot,
                machine=m.id,
                params={**params, "spearhead": lead is None},
            ),
            [lead, *earlier, *after],
        )
        if lead is None:
            self.regions[region].spearheads[lane] = sid
        return sid

    def add_create(
        self,
        region: str,
        wave: int,
        slot: int,
        *,
        params: Mapping[str, Any],
        volume: VolumePlan | None,
        primary_region: str,
        after: Sequence[str] = (),
        lane: str = "",
    ) -> str:
        """Add ``volume.ensure`` → ``machine.create`` (→ ``volume.replicate`` for a fork).

        The create also waits for the region's spearhead and for the ids in ``after``.
        """
        ensure: str | None = None
        if volume is not None:
            ensure = self.add(
                Step(
                    id=step_id(region, StepKind.VOLUME_ENSURE, slot),
                    kind=StepKind.VOLUME_ENSURE,
                    region=region,
                    wave=wave,
                    slot=slot,
                    params={
                        "name": volume.name,
                        "size_gb": volume.size_gb,
                        "reuse": volume.reuse,
                        "fork_from": volume.fork_from,
                        "fork_from_region": volume.fork_from_region,
                    },
                )
            )
            if volume.fork_from_region is not None:
                self.regions[region].wait_for_primary.append(ensure)
        create = self.add(
            Step(
                id=step_id(region, StepKind.MACHINE_CREATE, slot),
                kind=StepKind.MACHINE_CREATE,
                region=region,
                wave=wave,
                slot=slot,
                params={**params, "volume_from": ensure},
            ),
            # A new machine runs the new config only once the spearhead proved it.
            [ensure, self.spearhead(region, lane), *after],
        )
        if volume is not None and volume.forks:
            self.add(
                Step(
                    id=step_id(region, StepKind.VOLUME_REPLICATE, slot),
                    kind=StepKind.VOLUME_REPLICATE,
                    region=region,
                    wave=wave,
                    slot=slot,
                    params={"primary_region": primary_region, "volume_from": ensure},
                ),
                [create],
            )
        return create

    def add_destroys(
        self,
        region: str,
        wave: int,
        machines: Sequence[ObservedMachine],
        *,
        destroy_volumes: bool,
    ) -> None:
        """Add ``machine.destroy`` steps, highest slot first, one after another.

        Chained so that an interrupted scale-down still leaves slots 1..k, never a hole.
        Volumes stay unless ``destroy_volumes``.
        """
        previous: str | None = None
        for m in sorted(machines, key=lambda m: (-(m.slot or 0), m.id)):
            params: dict[str, Any] = {
                "name": m.name,
                "keep_volume": not destroy_volumes,
                "from_release": m.release,
            }
            if destroy_volumes and m.volume_id:
                params["volume"] = m.volume_id
            previous = self.add(
                Step(
                    id=step_id(region, StepKind.MACHINE_DESTROY, m.slot),
                    kind=StepKind.MACHINE_DESTROY,
                    region=region,
                    wave=wave,
                    slot=m.slot,
                    machine=m.id,
                    params=params,
                ),
                [previous],
            )

    def add_gates(
        self,
        region: str,
        *,
        slots: Sequence[int],
        bake: WaveSpec | None,
        params: Mapping[str, Any],
        wave: int | None = None,
    ) -> None:
        """Add ``gate.health`` after every machine step of a changed region.

        Also ``gate.metrics`` after it when ``bake`` has a bake time. A region that did not
        change, or was emptied (no slots), gets no gate: there is nothing to be healthy. Given
        its ``wave``, a region without steps is gated all the same (a resumed run verifies it).
        """
        r = self.regions.get(region)
        if r is None and wave is not None and slots:
            r = self.regions[region] = _Region(region, wave)
        if r is None or not slots:
            return
        deps = list(r.gated)
        health = self.add(
            Step(
                id=step_id(region, StepKind.GATE_HEALTH),
                kind=StepKind.GATE_HEALTH,
                region=region,
                wave=r.wave,
                params={"slots": list(slots), **params},
            ),
            deps,
        )
        if bake is not None and bake.bake_s > 0:
            self.add(
                Step(
                    id=step_id(region, StepKind.GATE_METRICS),
                    kind=StepKind.GATE_METRICS,
                    region=region,
                    wave=r.wave,
                    params={
                        "bake_s": bake.bake_s,
                        "max_error_rate": bake.max_error_rate,
                        "max_p95_ms": bake.max_p95_ms,
                        # Only when the wave has PromQL checks, so other plans stay as before.
                        **(
                            {"queries": [q.to_params() for q in bake.queries]}
                            if bake.queries
                            else {}
                        ),
                    },
                ),
                [health],
            )

    def _roots(self, region: str) -> list[str]:
        r = self.regions[region]
        if self._forward:
            own = r.own
            return [sid for sid in r.ids if not any(p in own for p in self.graph.predecessors(sid))]
        return [sid for sid in r.ids if sid not in r.has_pred]

    def exits(self, region: str) -> list[str]:
        """Return the region's last steps: its gates, or its sinks when it has no gate."""
        r = self.regions[region]
        if self._forward:
            own = r.own
            return [sid for sid in r.ids if not any(s in own for s in self.graph.successors(sid))]
        return [sid for sid in r.ids if sid not in r.has_succ]

    def resolve_primary_waits(self, primary: str, notes: list[str]) -> None:
        """Keep waits of forks on the primary region only where no wave barrier covers them.

        Same wave: the fork waits for the primary's gates. Earlier wave: the barrier already
        orders it. Later wave or not planned: nothing to wait for, and a note says so.
        """
        source = self.regions.get(primary)
        for r in self.regions.values():
            if not r.wait_for_primary:
                continue
            if source is None or source.wave > r.wave:
                notes.append(
                    f"{r.code}: no volume in the primary region {primary} to fork from yet; the "
                    "executor looks for one at run time (deploy the primary region first)"
                )
            if source is None or source.wave != r.wave:
                r.wait_for_primary.clear()

    def link(self, waves: Sequence[WaveSpec], primary: str) -> Any:
        """Add the wave barriers and the primary waits; return the finished graph.

        Every root step of a region in wave k depends on every exit of every changed region
        of the nearest earlier wave that changed anything; earlier waves follow transitively.
        """
        previous: list[str] = []
        for wave in waves:
            exits: list[str] = []
            for region in wave.regions:
                if region not in self.regions:
                    continue
                for root in self._roots(region):
                    for dep in previous:
                        self.graph.add_edge(dep, root)
                exits.extend(self.exits(region))
            if exits:
                previous = exits
        if primary in self.regions:
            primary_exits = self.exits(primary)
            for r in self.regions.values():
                for sid in r.wait_for_primary:
                    for dep in primary_exits:
                        self.graph.add_edge(dep, sid)
        # No separate cycle check: Plan orders the steps by topological generations on
        # construction, and that walk fails (networkx.NetworkXUnfeasible) on a cyclic graph.
        return self.graph


def plan_waves(waves: Sequence[WaveSpec], selected: Collection[str]) -> tuple[WaveSpec, ...]:
    """Keep the waves (and their regions, in order) that hold a selected region; renumber."""
    out: list[WaveSpec] = []
    for wave in waves:
        regions = tuple(r for r in wave.regions if r in selected)
        if regions:
            out.append(replace(wave, index=len(out) + 1, regions=regions))
    return tuple(out)


def fork_source(
    fleet: Fleet, primary: str, name: str, *, exclude: Collection[str] = ()
) -> ObservedVolume | None:
    """Pick the primary-region volume a replica volume is forked from.

    The volume of the primary's lowest slot first (the machine most likely to hold the
    writer's data), then any attached volume, then any at all; ties by id. Volumes in
    ``exclude`` (the plan destroys them) are never picked.
    """
    here = [v for v in fleet.volumes_in(primary, name) if v.id not in exclude]
    by_id: dict[str, ObservedVolume] = {}
    for v in here:
        by_id.setdefault(v.id, v)
    managed = fleet.managed_in(primary)
    for slot in sorted(managed):
        vid = managed[slot].volume_id
        vol = by_id.get(vid) if vid else None
        if vol is not None:
            return vol
    candidates = sorted(here, key=lambda v: (v.attached_machine_id is None, v.id))
    return candidates[0] if candidates else None


def with_volume(config: Mapping[str, Any], volume_id: str | None) -> dict[str, Any]:
    """Return a deep copy of ``config`` with ``volume_id`` in its first mount."""
    out = copy.deepcopy(dict(config))
    if volume_id and out.get("mounts"):
        out["mounts"][0]["volume"] = volume_id
    return out


def without_volumes(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return a deep copy of ``config`` with no volume id in its mounts."""
    out = copy.deepcopy(dict(config))
    mounts = out.get("mounts")
    if isinstance(mounts, list):
        out["mounts"] = [
            {k: v for k, v in m.items() if k != "volume"} if isinstance(m, Mapping) else m
            for m in mounts
        ]
    return out
