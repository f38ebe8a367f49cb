"""The data-health gate in deploy plans: one per wave, before its first steps, with the budget."""

from __future__ import annotations

from dataclasses import replace

from orchestrator.plan import build_plan
from orchestrator.plan.steps import StepKind

from .plan_helpers import IMAGE_V2, fleet_at, sample_spec, to_fleet


def test_each_wave_of_a_deploy_starts_with_a_data_gate_holding_the_rpo_budget() -> None:
    spec = sample_spec()
    spec = replace(spec, drill=replace(spec.drill, rpo_records=20, rpo_s=5.0))
    plan = build_plan(spec, to_fleet(*fleet_at(spec)), image=IMAGE_V2, data_gate=True)
    gates = [s for s in plan.steps() if s.kind is StepKind.GATE_DATA]
    assert [(g.id, g.wave) for g in gates] == [("syd:gate.data", 1), ("dfw:gate.data", 2)]
    assert gates[0].params == {
        "primary_region": "syd",
        "replicas": ["ams", "dfw"],
        "rpo_records": 20,
        "rpo_s": 5.0,
    }
    # Before the restore points and every change of its wave; after the earlier wave's gates.
    assert plan.depends_on("syd:volume.snapshot:1") == ("syd:gate.data",)
    assert "syd:gate.metrics" in plan.depends_on("dfw:gate.data")
    assert "dfw:gate.data" in plan.depends_on("ams:machine.update:1")
    assert not gates[0].mutating


def test_no_data_gate_without_replicas_yet_nor_outside_a_deploy() -> None:
    spec = sample_spec()
    first = build_plan(spec, to_fleet([], []), data_gate=True)
    assert not [s for s in first.steps() if s.kind is StepKind.GATE_DATA]
    scale = build_plan(sample_spec(dfw=3), to_fleet(*fleet_at(spec)))
    assert not [s for s in scale.steps() if s.kind is StepKind.GATE_DATA]
