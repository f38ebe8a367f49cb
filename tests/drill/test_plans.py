"""The drill's fleet changes as plans: which machines change, in what order, and on what data."""

from __future__ import annotations

import pytest
from plan.plan_helpers import fleet_at, managed_machine, sample_spec, to_fleet, volume_json

from orchestrator.drill.plans import (
    converge_plan,
    drill_config,
    reseed_plan,
    scale_up_plan,
    spread,
)
from orchestrator.drill.preflight import check_request, choose_promotion
from orchestrator.errors import ConfigError
from orchestrator.plan.config import META_CONFIG_DIGEST, config_digest, desired_config
from orchestrator.plan.graph import build_plan
from orchestrator.plan.steps import StepKind
from orchestrator.render.errors import problem_text

SPEC = sample_spec()


def test_drill_config_is_the_spec_with_another_primary_and_an_honest_digest() -> None:
    assert drill_config(SPEC, "dfw", 1, "syd") == desired_config(SPEC, "dfw", 1)
    promoted = drill_config(SPEC, "dfw", 1, "dfw")
    assert promoted["env"]["PRIMARY_REGION"] == "dfw"
    assert promoted["metadata"][META_CONFIG_DIGEST] == config_digest(promoted)
    assert (
        promoted["metadata"][META_CONFIG_DIGEST]
        != desired_config(SPEC, "dfw", 1)["metadata"][META_CONFIG_DIGEST]
    )


def test_promotion_updates_the_new_primary_first_then_the_followers() -> None:
    fleet = to_fleet(*fleet_at(SPEC))
    plan = converge_plan(SPEC, fleet, primary="dfw", order=[["dfw"], ["ams"]])
    ids = [s.id for s in plan.steps()]
    assert ids == [
        "dfw:machine.update:1",
        "dfw:machine.update:2",
        "dfw:gate.health",
        "ams:machine.update:1",
        "ams:gate.health",
    ]
    update = plan.step("dfw:machine.update:1")
    assert update.params["config"]["env"]["PRIMARY_REGION"] == "dfw"
    assert update.params["spearhead"] is True
    # ams waits for dfw's gate: followers move only once the new primary runs.
    assert "dfw:gate.health" in plan.depends_on("ams:machine.update:1")


def test_a_fleet_at_the_target_needs_no_change_and_the_spec_is_a_noop() -> None:
    fleet = to_fleet(*fleet_at(SPEC))
    assert not converge_plan(SPEC, fleet, primary="syd", order=[["syd"], ["dfw", "ams"]]).steps()


def test_failed_over_machines_are_drift_to_the_deploy_planner() -> None:
    machines, volumes = fleet_at(SPEC)
    for m in machines:
        if m["region"] != "syd":
            m["config"] = drill_config(
                SPEC, m["region"], int(m["config"]["metadata"]["orch_slot"]), "dfw"
            )
            m["config"]["mounts"][0]["volume"] = (
                f"vol_{m['region']}_{m['config']['metadata']['orch_slot']}"
            )
    plan = build_plan(SPEC, to_fleet(machines, volumes))
    assert {s.id for s in plan.mutating_steps} == {
        "dfw:machine.update:1",
        "dfw:machine.update:2",
        "ams:machine.update:1",
    }


def test_scale_up_forks_the_primary_volume_and_scale_back_destroys_keeping_volumes() -> None:
    fleet = to_fleet(*fleet_at(SPEC))
    up = scale_up_plan(SPEC, fleet, extra={"ams": 2}, primary="dfw")
    ensure = up.step("ams:volume.ensure:2")
    assert ensure.params["fork_from"] == "vol_dfw_1"
    assert [s.id for s in up.steps() if s.kind is StepKind.MACHINE_CREATE] == [
        "ams:machine.create:2",
        "ams:machine.create:3",
    ]
    assert up.step("ams:volume.replicate:3").params["primary_region"] == "dfw"

    extra = [
        managed_machine(SPEC, "ams", slot, f"m-ams-{slot}", f"vol_ams_{slot}") for slot in (2, 3)
    ]
    machines, volumes = fleet_at(
        SPEC,
        extra_machines=extra,
        extra_volumes=[volume_json(f"vol_ams_{s}", "ams", attached=f"m-ams-{s}") for s in (2, 3)],
    )
    back = converge_plan(SPEC, to_fleet(machines, volumes), primary="syd", order=[["ams"]])
    destroys = [s for s in back.steps() if s.kind is StepKind.MACHINE_DESTROY]
    assert [s.id for s in destroys] == ["ams:machine.destroy:3", "ams:machine.destroy:2"]
    assert all(s.params["keep_volume"] for s in destroys)


def test_reseed_replaces_each_machine_on_a_fresh_fork_of_the_new_primary() -> None:
    fleet = to_fleet(*fleet_at(SPEC))
    plan = reseed_plan(SPEC, fleet, region="syd", primary="dfw")
    for slot in (1, 2):
        destroy = plan.step(f"syd:machine.destroy:{slot}")
        assert destroy.params["keep_volume"] is True
        assert plan.step(f"syd:volume.ensure:{slot}").params["fork_from"] == "vol_dfw_1"
        create = plan.step(f"syd:machine.create:{slot}")
        assert create.params["config"]["env"]["PRIMARY_REGION"] == "dfw"
        assert f"syd:machine.destroy:{slot}" in plan.depends_on(create.id)
        assert plan.step(f"syd:volume.replicate:{slot}").params["primary_region"] == "dfw"
    assert plan.steps()[-1].id == "syd:gate.health"


def test_spread_is_round_robin() -> None:
    assert spread(3, ["ams", "dfw"]) == {"ams": 2, "dfw": 1}
    assert spread(2, []) == {}


def test_promotion_picks_the_flag_or_the_nearest_healthy_region() -> None:
    assert choose_promotion(SPEC, "syd", None) == "dfw"
    assert choose_promotion(SPEC, "syd", "ams") == "ams"
    assert choose_promotion(SPEC, "syd", None, healthy=["ams"]) == "ams"
    assert choose_promotion(SPEC, "dfw", None) is None


@pytest.mark.parametrize(
    ("region", "promote", "where", "says"),
    [
        ("lhr", None, "--region", "not in the fleet"),
        ("syd", "syd", "--promote", "the region the drill takes down"),
        ("dfw", "ams", "--promote", "replica region"),
        ("syd", "lhr", "--promote", "not in the fleet"),
    ],
)
def test_bad_requests_name_the_flag(
    region: str, promote: str | None, where: str, says: str
) -> None:
    with pytest.raises(ConfigError) as err:
        check_request(SPEC, region, promote)
    assert err.value.option == where.removeprefix("--")
    assert problem_text(err.value).startswith(f"{where}: ")
    assert says in str(err.value)
    assert err.value.exit_code == 2
