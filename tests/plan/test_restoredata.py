"""The plan of `rollback --restore-data`: restore every volume, then replace the machines."""

from __future__ import annotations

from orchestrator.plan.restoredata import RestorePoint, build_data_restore_plan
from orchestrator.plan.steps import StepKind

from .plan_helpers import APP, fleet_at, sample_spec, to_fleet


def _points() -> list[RestorePoint]:
    return [
        RestorePoint("syd", slot, f"m-syd-{slot}", f"vol_syd_{slot}", f"vs_{slot}", last_seq=5)
        for slot in (1, 2)
    ]


def test_volumes_are_restored_before_any_machine_goes_and_the_primary_comes_back_one_by_one() -> (
    None
):
    spec = sample_spec()
    fleet = to_fleet(*fleet_at(spec))
    configs = {("syd", s): {"image": "v1", "mounts": [{"path": "/app/.data"}]} for s in (1, 2)}
    plan = build_data_restore_plan(
        APP, fleet, _points(), configs, release="v1-x", spec_waves=spec.waves, primary_region="syd"
    )
    ensure1, ensure2 = (plan.step(f"syd:volume.ensure:{s}") for s in (1, 2))
    assert ensure1.params["snapshot_id"] == "vs_1"
    assert ensure2.params["size_gb"] == 1
    assert set(plan.depends_on("syd:machine.destroy:1")) == {
        "syd:volume.ensure:1",
        "syd:volume.ensure:2",
    }
    assert plan.depends_on("syd:machine.destroy:2") == ("syd:machine.destroy:1",)
    create2 = plan.depends_on("syd:machine.create:2")
    assert "syd:machine.create:1" in create2  # the first restored machine is elected writer
    assert plan.step("syd:machine.create:1").params["replaces"] == "m-syd-1"
    assert "volume" not in plan.step("syd:machine.create:1").params["config"]["mounts"][0]
    assert plan.step("syd:machine.destroy:1").params["keep_volume"] is True
    assert [s.kind for s in plan.steps()][-1] is StepKind.GATE_HEALTH


def test_a_slot_whose_machine_is_already_gone_is_only_created() -> None:
    spec = sample_spec()
    machines, volumes = fleet_at(spec)
    machines = [m for m in machines if m["id"] != "m-syd-1"]
    configs = {("syd", s): {"image": "v1", "mounts": [{"path": "/app/.data"}]} for s in (1, 2)}
    plan = build_data_restore_plan(
        APP,
        to_fleet(machines, volumes),
        _points(),
        configs,
        release="v1-x",
        spec_waves=spec.waves,
        primary_region="syd",
    )
    ids = {s.id for s in plan.steps()}
    assert "syd:machine.destroy:1" not in ids
    assert {"syd:machine.destroy:2", "syd:machine.create:1", "syd:machine.create:2"} <= ids
