"""The plan a resumed deploy runs: the re-planned deploy, every region verified, waves barred."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from orchestrator.fleetconfig.model import DeploySpec
from orchestrator.plan.assemble import Assembler
from orchestrator.plan.groups import gate_slots
from orchestrator.plan.model import Plan
from orchestrator.plan.steps import Step, StepKind, step_id

__all__ = ["with_health_gates"]


def with_health_gates(
    plan: Plan,
    spec: DeploySpec,
    *,
    rebake: Collection[str] = (),
    reseeded: Collection[str] = (),
) -> Plan:
    """Return ``plan`` as a resumed run runs it: every planned region gated, waves barred.

    The planner gates only regions it changes. After a crash the killed run may have changed a
    region completely without ever checking it, so a resumed run verifies every region it
    covers: a ``gate.health`` waits for the region's own steps, if it has any, and a
    ``gate.metrics`` follows it for the regions in ``rebake`` (changed by the killed run, never
    baked) when their wave bakes. Then every first step of a region waits for every gate of
    the previous wave, as in a fresh plan, so wave 2 never starts before wave 1 is verified.

    A replica volume the killed run forked is found unattached and simply reused by the
    planner, which verifies no data on a reused volume; for the volumes in ``reseeded`` (made
    by the killed run) a ``volume.replicate`` follows their machine's create, as it would have
    in the killed run.
    """
    asm = Assembler.of(plan.graph)
    _verify_reseeded(asm, plan, spec.primary_region, reseeded)
    gated = {s.region for s in plan.steps() if s.kind is StepKind.GATE_HEALTH}
    for index, wave in enumerate(plan.waves, start=1):
        settings = plan.wave_specs[index - 1] if index <= len(plan.wave_specs) else None
        for region in wave:
            if region in gated:
                continue
            asm.add_gates(
                region,
                slots=gate_slots(spec, region),
                bake=settings if region in rebake else None,
                params={"release": plan.release},
                wave=index,
            )
    _bar_waves(asm.graph, plan.waves)
    return Plan(
        app=plan.app,
        release=plan.release,
        waves=plan.waves,
        graph=asm.graph,
        notes=plan.notes,
        wave_specs=plan.wave_specs,
        purpose=plan.purpose,
    )


def _verify_reseeded(
    asm: Assembler, plan: Plan, primary: str, reseeded: Collection[str]
) -> None:
    """Add ``volume.replicate`` after each replica create on a volume in ``reseeded``."""
    wanted = set(reseeded)
    graph = asm.graph
    for step in plan.steps():
        if step.kind is not StepKind.MACHINE_CREATE or step.region == primary or not step.slot:
            continue
        ensure = step.params.get("volume_from")
        if not isinstance(ensure, str) or ensure not in graph:
            continue
        if graph.nodes[ensure]["step"].params.get("reuse") not in wanted:
            continue
        check = Step(
            id=step_id(step.region, StepKind.VOLUME_REPLICATE, step.slot),
            kind=StepKind.VOLUME_REPLICATE,
            region=step.region,
            wave=step.wave,
            slot=step.slot,
            params={"primary_region": primary, "volume_from": ensure},
        )
        if check.id in graph:
            continue
        asm.add(check, [step.id])
        health = step_id(step.region, StepKind.GATE_HEALTH)
        if health in graph:
            graph.add_edge(check.id, health)


def _bar_waves(graph: Any, waves: Sequence[Sequence[str]]) -> None:
    """Make every first step of a region wait for every gate of the nearest earlier gated wave."""
    steps = {sid: graph.nodes[sid]["step"] for sid in graph.nodes}
    previous: list[str] = []
    for wave in waves:
        members = set(wave)
        own = [sid for sid, s in steps.items() if s.region in members]
        if previous:
            for sid in own:
                region = steps[sid].region
                if not any(steps[p].region == region for p in graph.predecessors(sid)):
                    graph.add_edges_from((gate, sid) for gate in previous)
        gates = [
            sid for sid in own if steps[sid].kind in (StepKind.GATE_HEALTH, StepKind.GATE_METRICS)
        ]
        if gates:
            previous = gates
