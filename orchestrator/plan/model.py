"""The Plan value: a graph of steps in waves, with its execution order and JSON form.

Built by :func:`orchestrator.plan.graph.build_plan` and
:func:`orchestrator.plan.rollback.build_rollback_plan`; read by the executor, the renderers and
``invoke plan``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import networkx as nx

from orchestrator.fleetconfig.model import WaveSpec
from orchestrator.plan.steps import Step, StepKind

__all__ = ["GATE_KINDS", "KIND_ORDER", "MACHINE_KINDS", "Plan", "jsonable"]

KIND_ORDER: Mapping[StepKind, int] = {kind: i for i, kind in enumerate(StepKind)}
MACHINE_KINDS = frozenset(
    {StepKind.MACHINE_CREATE, StepKind.MACHINE_UPDATE, StepKind.MACHINE_DESTROY}
)
GATE_KINDS = frozenset({StepKind.GATE_HEALTH, StepKind.GATE_METRICS})


@dataclass(frozen=True, slots=True, eq=False)
class Plan:
    """A deploy (or restore) as a graph of steps in waves.

    Compare plans with :meth:`to_json`; the graph is a networkx object, so a Plan is only
    equal to itself. The execution order is computed once, on construction: do not change the
    graph afterwards.

    Attributes:
        app: the app name.
        release: the release id the plan deploys (or restores).
        waves: region codes per wave, only regions the plan was asked about, in rollout order.
            ``Step.wave`` is the 1-based position in this tuple.
        graph: networkx DiGraph; node = step id with attribute ``step``; edge ``a → b`` means
            ``b`` depends on ``a``.
        notes: things the planner saw and deliberately left alone, one line each.
        wave_specs: the spec's wave settings (bake, thresholds, ``on_failure``) for each entry
            of ``waves``, re-indexed to the plan's numbering.
        purpose: ``deploy`` or ``restore``.
    """

    app: str
    release: str
    waves: tuple[tuple[str, ...], ...]
    graph: Any = field(repr=False)
    notes: tuple[str, ...] = ()
    wave_specs: tuple[WaveSpec, ...] = ()
    purpose: Literal["deploy", "restore"] = "deploy"
    _rank: Mapping[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Topological generations, ties broken by (wave, region's place in its wave, kind,
        # slot, id), so the order never depends on how the graph was built.
        place = {region: i for wave in self.waves for i, region in enumerate(wave)}
        order: list[str] = []
        for generation in nx.topological_generations(self.graph):
            batch = [self.graph.nodes[sid]["step"] for sid in generation]
            batch.sort(
                key=lambda s: (
                    s.wave,
                    place.get(s.region, len(place)),
                    s.region,
                    KIND_ORDER[s.kind],
                    s.slot or 0,
                    s.id,
                )
            )
            order.extend(s.id for s in batch)
        object.__setattr__(self, "_rank", MappingProxyType({sid: i for i, sid in enumerate(order)}))

    def step(self, sid: str) -> Step:
        """Return the step with id ``sid``."""
        step: Step = self.graph.nodes[sid]["step"]
        return step

    def steps(self) -> tuple[Step, ...]:
        """Return every step in execution order.

        Topological generations (``networkx.topological_generations``), ties broken by (wave,
        the region's place in its wave, kind, slot, id): a step comes after everything it
        depends on, and the order never depends on how the graph was built.
        """
        return tuple(self.step(sid) for sid in self._rank)

    @property
    def mutating_steps(self) -> tuple[Step, ...]:
        """Return the steps that change the fleet, in execution order."""
        return tuple(s for s in self.steps() if s.mutating)

    @property
    def is_noop(self) -> bool:
        """Tell whether running the plan would change nothing."""
        return not any(self.step(n).mutating for n in self.graph.nodes)

    def depends_on(self, sid: str) -> tuple[str, ...]:
        """Return the ids ``sid`` waits for, in execution order."""
        return tuple(sorted(self.graph.predecessors(sid), key=self._rank.__getitem__))

    def region_steps(self, region: str) -> tuple[Step, ...]:
        """Return the steps of ``region``, in execution order."""
        return tuple(s for s in self.steps() if s.region == region)

    def spearhead(self, region: str) -> Step | None:
        """Return the region's spearhead update (updated alone, first), if any."""
        return next(
            (
                s
                for s in self.region_steps(region)
                if s.kind is StepKind.MACHINE_UPDATE and s.params.get("spearhead")
            ),
            None,
        )

    def wave_spec(self, region: str) -> WaveSpec | None:
        """Return the wave settings (bake, thresholds, ``on_failure``) that apply to ``region``."""
        return next((w for w in self.wave_specs if region in w.regions), None)

    def changed_regions(self) -> tuple[str, ...]:
        """Return the regions that have steps, in rollout order."""
        have = {self.step(n).region for n in self.graph.nodes}
        return tuple(r for wave in self.waves for r in wave if r in have)

    def gates(self, region: str) -> tuple[Step, ...]:
        """Return the gate steps of ``region`` (health, then metrics)."""
        return tuple(s for s in self.region_steps(region) if s.kind in GATE_KINDS)

    def to_json(self) -> dict[str, Any]:
        """Return the plan as DESIGN.md's ``invoke plan --format json`` object (plus extras)."""
        steps = self.steps()
        return {
            "app": self.app,
            "release": self.release,
            "purpose": self.purpose,
            "waves": [list(w) for w in self.waves],
            "notes": list(self.notes),
            "mutating_steps": sum(1 for s in steps if s.mutating),
            "steps": [
                {
                    "id": s.id,
                    "kind": s.kind.value,
                    "region": s.region,
                    "machine": s.machine,
                    "wave": s.wave,
                    "slot": s.slot,
                    "mutating": s.mutating,
                    "depends_on": list(self.depends_on(s.id)),
                    "params": jsonable(s.params),
                }
                for s in steps
            ],
        }


def jsonable(value: Any) -> Any:
    """Return ``value`` with every Mapping made a dict and every tuple a list, for json."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
