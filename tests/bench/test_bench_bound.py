"""Check the makespan bound the rollout benchmark divides by, on plans small enough by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The repository's ``bench`` package (this directory is deliberately not a package).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.baseline import pool_size
from bench.bound import expected_makespan, latency, makespan_bound
from bench.fleet import IMAGE_V1, IMAGE_V2, FleetShape, fleet_json, synthetic_spec
from orchestrator.fly.models import Machine, Volume
from orchestrator.localfly.profiles import Profile, Span, get_profile
from orchestrator.plan import Plan, build_plan, fleet_from_api


def _image_change(shape: FleetShape) -> Plan:
    spec = synthetic_spec(shape, IMAGE_V1)
    machines, volumes = fleet_json(spec)
    fleet = fleet_from_api(
        spec.app,
        [Machine.from_api(m) for m in machines],
        [Volume.from_api(v) for v in volumes],
    )
    return build_plan(spec, fleet, image=IMAGE_V2)


# A profile with round numbers: updates take exactly 3 s, no API latency, grace 2 s, and the
# smoke window (10 s) after it.
FLAT = Profile(name="flat", update=Span(3.0, 3.0), check_scale=1.0)

S_SHAPE = FleetShape(counts={"syd": 4, "dfw": 4, "ams": 4}, waves=(("syd",), ("dfw", "ams")))


def test_bound_is_spearhead_then_lanes_per_wave() -> None:
    plan = _image_change(S_SHAPE)
    budget = {r: S_SHAPE.budget(r) for r in S_SHAPE.counts}
    assert budget == {"syd": 2, "dfw": 2, "ams": 2}

    bound = makespan_bound(plan, FLAT, budget)

    # Per wave: the spearhead (13 s = 3 s update + the 10 s smoke window, which outlasts the
    # 2 s grace), then 3 updates in 2 lanes (2 more rounds); the two waves one after the
    # other; gates cost nothing here.
    assert bound.seconds == pytest.approx(2 * 3 * 13.0)
    assert bound.path[0] == "syd:machine.update:1"
    # The wave barrier: wave 2 starts after syd's gate.
    assert "syd:gate.health" in bound.path


def test_one_lane_makes_a_region_sequential() -> None:
    plan = _image_change(S_SHAPE)

    bound = makespan_bound(plan, FLAT, {"syd": 1, "dfw": 1, "ams": 1})

    assert bound.seconds == pytest.approx(2 * 4 * 13.0)


def test_simulation_with_fixed_durations_matches_the_critical_path() -> None:
    shape = FleetShape(
        counts={"syd": 7, "dfw": 5, "ams": 9, "lhr": 3},
        waves=(("syd",), ("dfw", "ams", "lhr")),
    )
    plan = _image_change(shape)
    budget = {r: shape.budget(r) for r in shape.counts}

    bound = makespan_bound(plan, FLAT, budget)
    simulated = expected_makespan(plan, FLAT, budget, samples=3)

    assert simulated["mean_s"] == pytest.approx(bound.seconds, abs=1e-3)


def test_realistic_profile_adds_region_latency_and_scales_with_time() -> None:
    full = get_profile("realistic", 1.0)
    tenth = get_profile("realistic", 0.1)
    plan = _image_change(S_SHAPE)
    budget = {r: S_SHAPE.budget(r) for r in S_SHAPE.counts}

    assert latency(full, "syd") > latency(full, "dfw") > 0
    assert makespan_bound(plan, tenth, budget).seconds == pytest.approx(
        makespan_bound(plan, full, budget).seconds * 0.1
    )


@pytest.mark.parametrize(("rest", "fraction", "size"), [(3, 0.33, 1), (19, 0.33, 7), (5, 2, 2)])
def test_baseline_pool_is_flyctl_max_unavailable(rest: int, fraction: float, size: int) -> None:
    assert pool_size(rest, fraction) == size
