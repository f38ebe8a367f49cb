"""build_plan's rules beyond the golden scenarios: states, drift, notes, waves, errors."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest

from orchestrator.errors import ConfigError
from orchestrator.fleetconfig.model import WaveSpec
from orchestrator.plan import StepKind, build_plan, desired_config, to_json_text
from orchestrator.render.errors import problem_text

from .plan_helpers import (
    IMAGE_V2,
    fleet_at,
    machine_json,
    managed_machine,
    sample_spec,
    to_fleet,
    volume_json,
)


def test_json_has_the_keys_scripts_read() -> None:
    doc = json.loads(to_json_text(build_plan(sample_spec(), to_fleet([], []))))
    assert {"release", "waves", "steps"} <= doc.keys()
    for step in doc["steps"]:
        assert {"id", "kind", "region", "machine", "wave", "mutating", "depends_on"} <= step.keys()


def test_unknown_region_is_a_config_error_naming_the_option() -> None:
    with pytest.raises(ConfigError, match="unknown region 'lhr'") as info:
        build_plan(sample_spec(), to_fleet([], []), regions=["syd", "lhr"])
    assert info.value.option == "region"
    assert problem_text(info.value).startswith("--region: unknown region 'lhr'")
    assert info.value.exit_code == 2


def test_empty_image_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        build_plan(sample_spec(), to_fleet([], []), image="  ")
    assert info.value.option == "image"
    assert problem_text(info.value) == "--image: the image reference is empty"


def test_region_missing_from_waves_is_a_config_error() -> None:
    spec = replace(sample_spec(), waves=(WaveSpec(index=1, regions=("syd", "dfw")),))
    with pytest.raises(ConfigError, match="'ams' is in no wave"):
        build_plan(spec, to_fleet([], []))


def test_empty_region_list_means_every_region() -> None:
    fleet = to_fleet([], [])
    assert to_json_text(build_plan(sample_spec(), fleet, regions=[])) == to_json_text(
        build_plan(sample_spec(), fleet)
    )


def test_no_waves_deploys_the_primary_first() -> None:
    plan = build_plan(replace(sample_spec(), waves=()), to_fleet([], []))
    assert plan.waves == (("syd",), ("ams", "dfw"))


def test_same_wave_forks_wait_for_the_primary_region() -> None:
    spec = replace(
        sample_spec(), waves=(WaveSpec(index=1, regions=("syd", "dfw", "ams"), bake_s=0),)
    )
    plan = build_plan(spec, to_fleet([], []))
    assert plan.depends_on("dfw:volume.ensure:1") == ("syd:gate.health",)
    assert plan.depends_on("syd:volume.ensure:1") == ()
    assert "syd:gate.metrics" not in {s.id for s in plan.steps()}


def test_primary_in_a_later_wave_is_noted_not_waited_for() -> None:
    spec = replace(
        sample_spec(),
        waves=(WaveSpec(index=1, regions=("dfw", "ams")), WaveSpec(index=2, regions=("syd",))),
    )
    plan = build_plan(spec, to_fleet([], []))
    assert plan.depends_on("dfw:volume.ensure:1") == ()
    assert any("dfw: no volume in the primary region syd" in n for n in plan.notes)


def test_replica_alone_with_no_primary_volume_is_noted() -> None:
    plan = build_plan(sample_spec(), to_fleet([], []), regions=["ams"])
    assert plan.step("ams:volume.ensure:1").params["fork_from_region"] == "syd"
    assert any("ams: no volume in the primary region syd" in n for n in plan.notes)


def test_a_stopped_machine_is_restarted_by_an_update() -> None:
    spec = sample_spec()
    machines, volumes = fleet_at(spec, skip=[("syd", 1)])
    machines.append(managed_machine(spec, "syd", 1, "m-syd-1", "vol_syd_1", state="stopped"))
    volumes.append(volume_json("vol_syd_1", "syd", attached="m-syd-1"))
    plan = build_plan(spec, to_fleet(machines, volumes))
    (step,) = plan.mutating_steps
    assert step.id == "syd:machine.update:1"
    assert step.params["reason"] == "state"


def test_a_stopped_machine_is_fine_when_the_proxy_autostops() -> None:
    spec = sample_spec()
    assert spec.service is not None
    spec = replace(spec, service=replace(spec.service, auto_stop_machines="stop"))
    machines, volumes = fleet_at(spec, skip=[("ams", 1)])
    machines.append(managed_machine(spec, "ams", 1, "m-ams-1", "vol_ams_1", state="stopped"))
    assert build_plan(spec, to_fleet(machines, volumes)).is_noop
    machines[-1]["state"] = "failed"
    plan = build_plan(spec, to_fleet(machines, volumes))
    assert [s.id for s in plan.mutating_steps] == ["ams:machine.update:1"]


def test_drift_behind_our_metadata_is_updated() -> None:
    spec = sample_spec()
    machines, volumes = fleet_at(spec)
    syd2 = next(m for m in machines if m["id"] == "m-syd-2")
    syd2["config"]["guest"]["memory_mb"] = 1024  # fly scale memory, metadata untouched
    plan = build_plan(spec, to_fleet(machines, volumes))
    (step,) = plan.mutating_steps
    assert step.id == "syd:machine.update:2"
    assert step.params["reason"] == "drift"
    # Alone in its region, the update is the spearhead.
    assert step.params["spearhead"] is True


def test_unmanaged_machines_are_left_alone_and_noted() -> None:
    spec = sample_spec()
    machines, volumes = fleet_at(spec)
    machines.append(machine_json("m-hand", "syd", {"image": "nginx"}, name="by-hand"))
    plan = build_plan(spec, to_fleet(machines, volumes))
    assert plan.is_noop
    assert plan.notes == ("syd: machine m-hand (by-hand) has no orch_slot; left alone",)


def test_managed_machines_in_a_region_not_in_the_spec_are_left_alone() -> None:
    spec = sample_spec()
    machines, volumes = fleet_at(spec)
    lhr = managed_machine(spec, "syd", 1, "m-lhr-1", None)
    lhr["region"] = "lhr"
    plan = build_plan(spec, to_fleet([*machines, lhr], volumes))
    assert plan.is_noop
    assert any(n.startswith("lhr: 1 managed machine(s)") for n in plan.notes)


def test_duplicate_slot_is_noted() -> None:
    spec = sample_spec()
    machines, volumes = fleet_at(spec)
    machines.append(managed_machine(spec, "dfw", 1, "m-zz", None))
    plan = build_plan(spec, to_fleet(machines, volumes))
    assert plan.is_noop
    assert plan.notes == ("dfw: machine m-zz claims slot 1, held by m-dfw-1; left alone",)


def test_emptying_a_region_destroys_highest_first_without_a_gate() -> None:
    plan = build_plan(sample_spec(dfw=0), to_fleet(*fleet_at(sample_spec())))
    ids = [s.id for s in plan.steps()]
    assert ids == ["dfw:machine.destroy:2", "dfw:machine.destroy:1"]
    assert plan.depends_on("dfw:machine.destroy:1") == ("dfw:machine.destroy:2",)


def test_destroy_volumes_names_the_volume_to_destroy() -> None:
    plan = build_plan(sample_spec(dfw=1), to_fleet(*fleet_at(sample_spec())), destroy_volumes=True)
    step = plan.step("dfw:machine.destroy:2")
    assert step.params["keep_volume"] is False
    assert step.params["volume"] == "vol_dfw_2"


def test_barrier_reaches_past_a_wave_with_no_changes() -> None:
    spec = sample_spec()
    machines, volumes = fleet_at(spec, skip=[("ams", 1)])
    spec3 = replace(
        spec,
        waves=(
            WaveSpec(index=1, regions=("syd",), bake_s=0),
            WaveSpec(index=2, regions=("dfw",)),
            WaveSpec(index=3, regions=("ams",)),
        ),
    )
    # syd drifts, dfw is at spec, ams is missing.
    next(m for m in machines if m["id"] == "m-syd-1")["config"]["image"] = "other:v0"
    plan = build_plan(spec3, to_fleet(machines, volumes))
    assert plan.depends_on("ams:volume.ensure:1") == ("syd:gate.health",)


def test_create_waits_for_the_spearhead_when_a_region_also_updates() -> None:
    spec = sample_spec(syd=3)
    plan = build_plan(spec, to_fleet(*fleet_at(sample_spec())), image=IMAGE_V2)
    assert plan.depends_on("syd:machine.create:3") == (
        "syd:volume.ensure:3",
        "syd:machine.update:1",
    )
    assert plan.step("syd:machine.create:3").params["config"]["image"] == IMAGE_V2


def test_fork_prefers_the_volume_of_the_primarys_lowest_slot() -> None:
    spec = sample_spec()
    machines, volumes = fleet_at(spec, skip=[("syd", 1), ("dfw", 1), ("dfw", 2)])
    volumes.append(volume_json("vol_aaa", "syd", size_gb=5))  # unattached, lower id
    plan = build_plan(spec, to_fleet(machines, volumes), regions=["dfw"])
    params = plan.step("dfw:volume.ensure:1").params
    assert params["fork_from"] == "vol_syd_2"
    assert params["size_gb"] == 1


def test_a_fork_is_at_least_as_big_as_its_source() -> None:
    spec = sample_spec()
    machines, volumes = fleet_at(spec, skip=[("ams", 1)])
    volumes = [v | {"size_gb": 3} if v["id"] == "vol_syd_1" else v for v in volumes]
    plan = build_plan(spec, to_fleet(machines, volumes))
    assert plan.step("ams:volume.ensure:1").params["size_gb"] == 3


def test_a_small_reused_volume_is_noted() -> None:
    spec = replace(
        sample_spec(),
        regions={
            **sample_spec().regions,
            "ams": replace(sample_spec().regions["ams"], volume_size_gb=2),
        },
    )
    machines, volumes = fleet_at(sample_spec(), skip=[("ams", 1)])
    volumes.append(volume_json("vol_old", "ams", size_gb=1))
    plan = build_plan(spec, to_fleet(machines, volumes), regions=["ams"])
    assert plan.step("ams:volume.ensure:1").params["reuse"] == "vol_old"
    assert "ams:volume.replicate:1" not in {s.id for s in plan.steps()}
    assert any("vol_old of 1 GB" in n for n in plan.notes)


def test_update_keeps_the_machines_volume_in_its_config() -> None:
    plan = build_plan(sample_spec(), to_fleet(*fleet_at(sample_spec())), image=IMAGE_V2)
    cfg = plan.step("syd:machine.update:2").params["config"]
    expected = desired_config(replace(sample_spec(), image=IMAGE_V2), "syd", 2)
    expected["mounts"][0]["volume"] = "vol_syd_2"
    assert cfg == expected


def test_same_inputs_in_any_order_give_the_same_bytes() -> None:
    spec = sample_spec(syd=3, dfw=1, ams=2)
    machines, volumes = fleet_at(sample_spec(), extra_volumes=[volume_json("vol_x", "ams")])
    machines.append(machine_json("m-hand", "dfw", {"image": "nginx"}))
    expected = to_json_text(build_plan(spec, to_fleet(machines, volumes), image=IMAGE_V2))
    rng = random.Random(7)
    for _ in range(20):
        rng.shuffle(machines)
        rng.shuffle(volumes)
        text = to_json_text(
            build_plan(
                spec, to_fleet(machines, volumes), image=IMAGE_V2, regions=["syd", "dfw", "ams"]
            )
        )
        assert text == expected


def test_steps_come_after_their_dependencies() -> None:
    plan = build_plan(sample_spec(syd=3, dfw=3), to_fleet(*fleet_at(sample_spec())), image=IMAGE_V2)
    seen: set[str] = set()
    for step in plan.steps():
        assert set(plan.depends_on(step.id)) <= seen
        seen.add(step.id)
    assert all(s.kind is not StepKind.VOLUME_REPLICATE or s.region != "syd" for s in plan.steps())


def test_never_forks_from_a_volume_the_plan_destroys() -> None:
    fleet = to_fleet(*fleet_at(sample_spec()))
    spec = sample_spec(syd=0, dfw=3)
    kept = build_plan(spec, fleet)
    assert kept.step("dfw:volume.ensure:3").params["fork_from"] == "vol_syd_1"
    purged = build_plan(spec, fleet, destroy_volumes=True)
    assert purged.step("dfw:volume.ensure:3").params["fork_from"] is None
    assert purged.step("syd:machine.destroy:1").params["volume"] == "vol_syd_1"


def _flyctl_machine(mid: str, region: str, group: str = "app") -> dict[str, object]:
    """Return a machine as ``fly deploy`` makes it: flyctl's metadata, none of ours."""
    meta = {"fly_platform_version": "v2", "fly_process_group": group, "fly_release_id": "rel1"}
    mounts = [{"volume": f"vol_{mid}", "path": "/app/.data", "name": "data"}]
    config = {"image": "registry.fly.io/sample-app:v0", "metadata": meta, "mounts": mounts}
    return machine_json(mid, region, config, name=f"fly-{mid}")


def test_machines_fly_deploy_made_are_adopted_not_duplicated() -> None:
    spec = sample_spec()
    machines, volumes = fleet_at(spec, skip=[("dfw", 1), ("dfw", 2)])
    machines += [_flyctl_machine("m-fly-b", "dfw"), _flyctl_machine("m-fly-a", "dfw")]
    machines.append(_flyctl_machine("m-fly-c", "dfw"))
    machines.append(_flyctl_machine("m-fly-w", "dfw", group="worker"))
    volumes += [volume_json(f"vol_m-fly-{x}", "dfw", attached=f"m-fly-{x}") for x in "abcw"]
    plan = build_plan(spec, to_fleet(machines, volumes))

    dfw = [s for s in plan.steps() if s.region == "dfw"]
    assert not [s for s in dfw if s.kind is StepKind.MACHINE_CREATE]
    updates = {s.slot: s for s in dfw if s.kind is StepKind.MACHINE_UPDATE}
    # The lowest ids take the free slots, in order, and get this tool's config and metadata.
    assert {slot: s.machine for slot, s in updates.items()} == {1: "m-fly-a", 2: "m-fly-b"}
    assert updates[1].params["reason"] == "adopt"
    mine = desired_config(spec, "dfw", 1)
    mine["mounts"][0]["volume"] = "vol_m-fly-a"
    assert updates[1].params["config"] == mine
    assert updates[2].params["config"]["metadata"]["orch_slot"] == "2"
    # Each keeps the volume flyctl gave it.
    assert updates[2].params["config"]["mounts"][0]["volume"] == "vol_m-fly-b"
    # One too many, and one of another process group: left alone, and said so.
    assert plan.notes == (
        "dfw: machine m-fly-c (fly-m-fly-c) has no orch_slot; left alone",
        "dfw: machine m-fly-w (fly-m-fly-w) has no orch_slot; left alone",
    )


@pytest.mark.parametrize("syd", [2, 3])
def test_the_primary_regions_leader_is_updated_last_after_every_other_machine(syd: int) -> None:
    spec = sample_spec(syd=syd)
    machines, volumes = fleet_at(spec)
    fleet = to_fleet(machines, volumes)
    new = replace(spec, image=IMAGE_V2)
    plan = build_plan(new, fleet, leader="m-syd-1")

    leader = plan.step("syd:machine.update:1")
    others = [f"syd:machine.update:{slot}" for slot in range(2, syd + 1)]
    assert leader.params["leader"] is True
    assert leader.params["spearhead"] is False
    assert plan.step(others[0]).params["spearhead"] is True
    assert set(others) <= set(plan.depends_on(leader.id))
    order = [s.id for s in plan.steps()]
    assert all(order.index(o) < order.index(leader.id) for o in others)
    # Replica regions keep the slot order: the leader only matters where writes go.
    assert plan.step("dfw:machine.update:1").params["spearhead"] is True
    assert "leader" not in plan.step("dfw:machine.update:1").params
    # Without a known leader the plan is the slot order, as before.
    plain = build_plan(new, fleet)
    assert plain.step("syd:machine.update:1").params["spearhead"] is True
    assert "leader" not in plain.step("syd:machine.update:1").params
