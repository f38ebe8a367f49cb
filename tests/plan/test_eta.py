"""How long a plan should take: the greedy makespan with typical durations and the limits."""

from __future__ import annotations

import networkx as nx
import pytest

from orchestrator.execute.gates import SMOKE_WINDOW_S
from orchestrator.fleetconfig.model import WaveSpec
from orchestrator.plan.eta import FLY_TYPICAL, Durations, estimate
from orchestrator.plan.model import Plan
from orchestrator.plan.steps import Step, StepKind, step_id

# No smoke window here (its own test below): the grace period alone sets the wait.
D = Durations(api_s=1.0, create_s=10.0, update_s=4.0, stop_s=0.0, check_scale=1.0, smoke_s=0.0)
CHECK = {"status": {"type": "http", "grace_period": "2s"}}


def _step(region: str, kind: StepKind, slot: int | None = None, wave: int = 1) -> Step:
    return Step(
        id=step_id(region, kind, slot),
        kind=kind,
        region=region,
        wave=wave,
        slot=slot,
        machine=f"m-{region}-{slot}" if kind is StepKind.MACHINE_UPDATE else None,
        params={"config": {"checks": CHECK}},
    )


def _plan(waves: list[list[str]], per_region: int, concurrency: int) -> Plan:
    """Updates in each region, then its health gate; each wave after the previous one."""
    graph = nx.DiGraph()
    last_gates: list[str] = []
    for w, regions in enumerate(waves, start=1):
        gates = []
        for region in regions:
            gate = _step(region, StepKind.GATE_HEALTH, wave=w)
            graph.add_node(gate.id, step=gate)
            for slot in range(1, per_region + 1):
                update = _step(region, StepKind.MACHINE_UPDATE, slot, wave=w)
                graph.add_node(update.id, step=update)
                graph.add_edge(update.id, gate.id)
                for before in last_gates:
                    graph.add_edge(before, update.id)
            gates.append(gate.id)
        last_gates = gates
    return Plan(
        app="a",
        release="v2",
        waves=tuple(tuple(r) for r in waves),
        graph=graph,
        wave_specs=tuple(
            WaveSpec(index=i, regions=tuple(r), max_concurrency=concurrency)
            for i, r in enumerate(waves, start=1)
        ),
    )


def test_updates_take_a_round_trip_the_update_and_the_grace_period_within_the_limits() -> None:
    # 1 + 4 + 2 = 7 s an update; two lanes for four updates: two rounds, then the gate (1 s).
    plan = _plan([["syd"]], per_region=4, concurrency=8)
    eta = estimate(plan, D, {"syd": 2})
    assert eta.seconds == pytest.approx(15.0)
    assert [(w.wave, w.start_s, w.end_s) for w in eta.waves] == [(1, 0.0, 15.0)]


def test_an_update_counts_as_done_once_it_stayed_up_for_the_smoke_window() -> None:
    # As the executor judges it: up for flyctl's 10 s, which outlasts the 2 s grace period.
    assert FLY_TYPICAL.smoke_s == SMOKE_WINDOW_S
    smoke = Durations(api_s=1.0, create_s=10.0, update_s=4.0, stop_s=0.0, check_scale=1.0)
    plan = _plan([["syd"]], per_region=4, concurrency=8)
    # 1 + 4 + 10 = 15 s an update; two rounds, then the gate (1 s).
    assert estimate(plan, smoke, {"syd": 2}).seconds == pytest.approx(31.0)
    # Scaled like the checks (the local Fly's time factor).
    quarter = Durations(api_s=1.0, create_s=10.0, update_s=4.0, stop_s=0.0, check_scale=0.25)
    assert estimate(plan, quarter, {"syd": 2}).seconds == pytest.approx(2 * 7.5 + 1.0)


def test_a_waves_concurrency_holds_it_back_and_the_next_wave_starts_after_it() -> None:
    plan = _plan([["syd"], ["dfw", "ams"]], per_region=2, concurrency=1)
    eta = estimate(plan, D, {"syd": 2, "dfw": 2, "ams": 2})
    # One update at a time: syd 2 x 7 + gate 1 = 15; then dfw and ams, 4 x 7 + gate 1.
    assert [w.seconds for w in eta.waves] == pytest.approx([15.0, 29.0])
    assert eta.waves[1].start_s == pytest.approx(eta.waves[0].end_s)
    assert eta.seconds == pytest.approx(44.0)
    wider = estimate(_plan([["syd"], ["dfw", "ams"]], 2, concurrency=4), D, {"dfw": 2, "ams": 2})
    assert wider.seconds < eta.seconds
