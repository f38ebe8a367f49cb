"""build_rollback_plan: putting machines back to journaled configs (rollback)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from orchestrator.errors import DeployError
from orchestrator.plan import Fleet, StepKind, build_rollback_plan, release_id, to_json_text

from .plan_helpers import IMAGE_V2, fleet_at, sample_spec, to_fleet, with_image

V1 = sample_spec()
V2 = with_image(V1, IMAGE_V2)


def _journal(fleet: Fleet, region: str | None = None) -> dict[str, dict[str, Any]]:
    """Return machine id → config, as the executor journals before changing a machine."""
    return {
        m.id: copy.deepcopy(dict(m.config))
        for m in fleet.machines
        if region is None or m.region == region
    }


def test_restore_updates_every_machine_back_spearhead_first() -> None:
    before = to_fleet(*fleet_at(V1))
    after = to_fleet(*fleet_at(V2))
    targets = _journal(before)
    plan = build_rollback_plan(after, targets, release=release_id(V1), spec_waves=V1.waves)
    assert plan.purpose == "restore"
    assert plan.waves == (("syd",), ("dfw", "ams"))
    updates = [s for s in plan.steps() if s.kind is StepKind.MACHINE_UPDATE]
    assert len(updates) == 5
    assert plan.step("syd:machine.update:1").params["spearhead"] is True
    assert plan.depends_on("syd:machine.update:2") == ("syd:machine.update:1",)
    assert plan.depends_on("dfw:machine.update:1") == ("syd:gate.health",)
    step = plan.step("dfw:machine.update:2")
    assert step.params["config"] == targets["m-dfw-2"]
    assert step.params["config"]["image"] == V1.image
    assert step.params["from_release"] == release_id(V2)
    assert step.params["reason"] == "rollback"
    # A rollback does not bake by default.
    assert not any(s.kind is StepKind.GATE_METRICS for s in plan.steps())


def test_machines_already_restored_are_skipped() -> None:
    before = to_fleet(*fleet_at(V1))
    machines, volumes = fleet_at(V2)
    # Only dfw moved on to v2 before the rollback started.
    mixed = [m for m in fleet_at(V1)[0] if m["region"] != "dfw"]
    mixed += [m for m in machines if m["region"] == "dfw"]
    plan = build_rollback_plan(
        to_fleet(mixed, volumes),
        _journal(before),
        release=release_id(V1),
        spec_waves=V1.waves,
    )
    assert [s.id for s in plan.mutating_steps] == ["dfw:machine.update:1", "dfw:machine.update:2"]
    assert plan.waves == (("syd",), ("dfw", "ams"))
    assert len(plan.notes) == 3


def test_a_gone_machine_is_recreated_on_its_old_volume() -> None:
    before = to_fleet(*fleet_at(V1))
    machines, volumes = fleet_at(V2, skip=[("dfw", 2)])
    volumes.append({"id": "vol_dfw_2", "name": "data", "region": "dfw", "size_gb": 1})
    plan = build_rollback_plan(
        to_fleet(machines, volumes),
        _journal(before, "dfw"),
        release=release_id(V1),
        spec_waves=V1.waves,
    )
    assert plan.waves == (("dfw",),)
    ensure = plan.step("dfw:volume.ensure:2")
    assert ensure.params["reuse"] == "vol_dfw_2"
    create = plan.step("dfw:machine.create:2")
    assert create.params["replaces"] == "m-dfw-2"
    assert create.params["name"] == "sample-fleet-dfw-2"
    assert "volume" not in create.params["config"]["mounts"][0]
    assert create.params["config"]["image"] == V1.image
    assert plan.depends_on("dfw:machine.create:2") == (
        "dfw:volume.ensure:2",
        "dfw:machine.update:1",
    )
    assert plan.step("dfw:gate.health").params["slots"] == [1, 2]


def test_a_gone_machine_without_its_volume_gets_a_fork_of_the_primary() -> None:
    before = to_fleet(*fleet_at(V1))
    machines, volumes = fleet_at(V2, skip=[("ams", 1)])
    plan = build_rollback_plan(
        to_fleet(machines, volumes),
        _journal(before, "ams"),
        release=release_id(V1),
        spec_waves=V1.waves,
        regions={"m-ams-1": "ams"},
    )
    assert plan.step("ams:volume.ensure:1").params["fork_from"] == "vol_syd_1"
    assert plan.depends_on("ams:volume.replicate:1") == ("ams:machine.create:1",)


def test_a_gone_machine_of_unknown_region_is_refused() -> None:
    before = to_fleet(*fleet_at(V1))
    machines, volumes = fleet_at(V2, skip=[("ams", 1)])
    volumes = [v for v in volumes if v["region"] != "ams"]
    with pytest.raises(DeployError, match="m-ams-1"):
        build_rollback_plan(
            to_fleet(machines, volumes),
            _journal(before, "ams"),
            release=release_id(V1),
            spec_waves=V1.waves,
        )


def test_machines_the_failed_release_added_are_destroyed_keeping_volumes() -> None:
    before = to_fleet(*fleet_at(V1))
    after = to_fleet(*fleet_at(with_image(sample_spec(dfw=3), IMAGE_V2)))
    plan = build_rollback_plan(
        after,
        _journal(before, "dfw"),
        release=release_id(V1),
        spec_waves=V1.waves,
        destroy=["m-dfw-3"],
    )
    destroy = plan.step("dfw:machine.destroy:3")
    assert destroy.params["keep_volume"] is True
    assert plan.step("dfw:gate.health").params["slots"] == [1, 2]


def test_restore_is_deterministic() -> None:
    before = to_fleet(*fleet_at(V1))
    machines, volumes = fleet_at(V2)
    targets = _journal(before)
    a = build_rollback_plan(
        to_fleet(machines, volumes), targets, release="v1-x", spec_waves=V1.waves, bake=True
    )
    b = build_rollback_plan(
        to_fleet(machines[::-1], volumes[::-1]),
        dict(reversed(targets.items())),
        release="v1-x",
        spec_waves=V1.waves,
        bake=True,
    )
    assert to_json_text(a) == to_json_text(b)
    assert any(s.kind is StepKind.GATE_METRICS for s in a.steps())
