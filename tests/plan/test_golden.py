"""Golden plans: the JSON ``invoke plan --format json`` prints for the sample fleet's scenarios.

Each scenario's plan is compared byte for byte with ``tests/plan/golden/<name>.json``. After an
intended change to the planner, regenerate them and review the diff::

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/plan/test_golden.py
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.plan import Plan, StepKind, build_plan, to_json_text

from .plan_helpers import IMAGE_V2, fleet_at, sample_spec, to_fleet, volume_json

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def first_deploy() -> Plan:
    """Nothing exists yet: syd 2, dfw 2, ams 1 from scratch."""
    return build_plan(sample_spec(), to_fleet([], []))


def noop() -> Plan:
    """The fleet is exactly at the spec."""
    spec = sample_spec()
    return build_plan(spec, to_fleet(*fleet_at(spec)))


def image_change() -> Plan:
    """``invoke deploy --image ...:v2`` over a fleet at v1."""
    spec = sample_spec()
    return build_plan(spec, to_fleet(*fleet_at(spec)), image=IMAGE_V2)


def scale_up() -> Plan:
    """syd 2→3 (an orphaned syd volume is reused), dfw 2→3 (forked from syd)."""
    machines, volumes = fleet_at(
        sample_spec(), extra_volumes=[volume_json("vol_syd_orphan", "syd")]
    )
    return build_plan(sample_spec(syd=3, dfw=3), to_fleet(machines, volumes))


def scale_down() -> Plan:
    """dfw 2→1: slot 2 is destroyed, its volume kept."""
    return build_plan(sample_spec(dfw=1), to_fleet(*fleet_at(sample_spec())))


def region_subset() -> Plan:
    """``invoke deploy --region dfw`` after syd exists: dfw's volumes fork from syd's."""
    spec = sample_spec()
    machines, volumes = fleet_at(spec, skip=[("dfw", 1), ("dfw", 2), ("ams", 1)])
    return build_plan(spec, to_fleet(machines, volumes), regions=["dfw"])


SCENARIOS: dict[str, Callable[[], Plan]] = {
    "first_deploy": first_deploy,
    "noop": noop,
    "image_change": image_change,
    "scale_up": scale_up,
    "scale_down": scale_down,
    "region_subset": region_subset,
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_plan_matches_golden(name: str) -> None:
    text = to_json_text(SCENARIOS[name]())
    path = GOLDEN / f"{name}.json"
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing {path}; run with UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8")


def _kinds(plan: Plan) -> list[str]:
    return [s.id for s in plan.steps()]


def test_first_deploy_builds_every_region_in_waves() -> None:
    plan = first_deploy()
    doc = json.loads(to_json_text(plan))
    assert doc["waves"] == [["syd"], ["dfw", "ams"]]
    assert doc["mutating_steps"] == 10  # 5 volumes + 5 machines
    ensures = {s.id: s.params for s in plan.steps() if s.kind is StepKind.VOLUME_ENSURE}
    assert ensures["syd:volume.ensure:1"]["fork_from_region"] is None
    # No syd volume exists at planning time: the executor resolves it after wave 1.
    assert ensures["dfw:volume.ensure:1"]["fork_from_region"] == "syd"
    assert "dfw:volume.replicate:1" in _kinds(plan)
    assert "syd:volume.replicate:1" not in _kinds(plan)
    assert plan.depends_on("dfw:volume.ensure:1") == ("syd:gate.metrics",)


def test_noop_plans_zero_steps() -> None:
    plan = noop()
    assert plan.steps() == ()
    assert plan.is_noop
    assert plan.waves == (("syd",), ("dfw", "ams"))


def test_image_change_spearheads_each_region_behind_the_wave_barrier() -> None:
    plan = image_change()
    assert plan.release.startswith("v2-")
    for region in ("syd", "dfw", "ams"):
        lead = plan.spearhead(region)
        assert lead is not None
        assert lead.slot == 1
    assert plan.depends_on("syd:machine.update:2") == ("syd:machine.update:1",)
    assert plan.depends_on("dfw:machine.update:1") == ("syd:gate.metrics",)
    assert plan.depends_on("ams:machine.update:1") == ("syd:gate.metrics",)
    update = plan.step("dfw:machine.update:2")
    assert update.machine == "m-dfw-2"
    assert update.params["config"]["image"] == IMAGE_V2
    assert update.params["config"]["mounts"][0]["volume"] == "vol_dfw_2"
    assert update.params["from_version"]


def test_scale_up_reuses_orphans_and_forks_replicas() -> None:
    plan = scale_up()
    syd = plan.step("syd:volume.ensure:3").params
    assert syd["reuse"] == "vol_syd_orphan"
    dfw = plan.step("dfw:volume.ensure:3").params
    assert dfw["reuse"] is None
    assert dfw["fork_from"] == "vol_syd_1"  # the volume of syd's lowest slot
    assert plan.depends_on("dfw:volume.replicate:3") == ("dfw:machine.create:3",)
    assert {s.kind for s in plan.steps()} >= {StepKind.MACHINE_CREATE, StepKind.GATE_HEALTH}
    assert not any(s.kind is StepKind.MACHINE_UPDATE for s in plan.steps())


def test_scale_down_destroys_the_highest_slot_and_keeps_its_volume() -> None:
    plan = scale_down()
    mutating = plan.mutating_steps
    assert [s.id for s in mutating] == ["dfw:machine.destroy:2"]
    destroy = mutating[0]
    assert destroy.machine == "m-dfw-2"
    assert destroy.params["keep_volume"] is True
    assert not any(s.kind.value.startswith("volume.") for s in plan.steps())
    assert "vol_dfw_2" not in to_json_text(plan)
    assert plan.step("dfw:gate.health").params["slots"] == [1]


def test_region_subset_plans_one_wave_forking_from_syd() -> None:
    plan = region_subset()
    assert plan.waves == (("dfw",),)
    assert {s.region for s in plan.steps()} == {"dfw"}
    assert {s.wave for s in plan.steps()} == {1}
    assert plan.step("dfw:volume.ensure:2").params["fork_from"] == "vol_syd_1"
