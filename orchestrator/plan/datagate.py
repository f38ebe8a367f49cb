"""The data-health gate: a wave starts only while every replica region keeps up with the primary.

A rollout that takes the primary region's machines down while a replica region is far behind
widens what a fail-over would lose. So each wave of a plan over a fleet with replicas begins
with one ``gate.data`` step: it reads the replicas' and the primary's ``last_seq`` from the
app's ``/status`` and holds the wave while a replica region lags by more than the drill's RPO
budget (``rpo_records``, ``rpo_seconds`` in ``regions/waves.toml``), up to a deadline, then
fails (`orchestrator.execute.datagate`). Pure: the graph, the spec and the fleet in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.fleetconfig.model import DeploySpec, WaveSpec
from orchestrator.plan.fleet import Fleet
from orchestrator.plan.steps import Step, StepKind, step_id

__all__ = ["add_data_gates", "replica_regions"]


def replica_regions(spec: DeploySpec, fleet: Fleet) -> list[str]:
    """Return the spec's replica regions that have managed machines with volumes now."""
    return sorted(
        code
        for code in spec.regions
        if code != spec.primary_region
        and any(m.managed and m.volume_id for m in fleet.machines_in(code))
    )


def add_data_gates(
    graph: Any, spec: DeploySpec, fleet: Fleet, waves: Sequence[WaveSpec]
) -> list[str]:
    """Put a ``gate.data`` before the first steps of each wave; return the ids added.

    None when the app keeps no data (no mount), or no replica region or no primary machine
    exists yet (a first deploy: there is nothing to lag behind).
    """
    primary = spec.primary_region
    replicas = replica_regions(spec, fleet)
    has_primary = any(m.managed for m in fleet.machines_in(primary))
    if spec.mount is None or not replicas or not has_primary:
        return []
    added: list[str] = []
    steps = [graph.nodes[n]["step"] for n in graph.nodes]
    for wave in waves:
        own = {s.id for s in steps if s.wave == wave.index}
        if not own:
            continue
        roots = sorted(sid for sid in own if not any(p in own for p in graph.predecessors(sid)))
        outside = sorted({p for r in roots for p in graph.predecessors(r)})
        gate = Step(
            id=step_id(wave.regions[0], StepKind.GATE_DATA),
            kind=StepKind.GATE_DATA,
            region=wave.regions[0],
            wave=wave.index,
            params={
                "primary_region": primary,
                "replicas": replicas,
                "rpo_records": spec.drill.rpo_records,
                "rpo_s": spec.drill.rpo_s,
            },
        )
        graph.add_node(gate.id, step=gate)
        for dep in outside:
            graph.add_edge(dep, gate.id)
        for root in roots:
            graph.add_edge(gate.id, root)
        added.append(gate.id)
    return added
