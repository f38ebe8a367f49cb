"""What a rollback restores, read from journal rows, and how a resumed plan is gated (pure)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from plan.plan_helpers import (
    IMAGE_V2,
    fleet_at,
    managed_machine,
    sample_spec,
    to_fleet,
    volume_json,
    with_image,
)

from orchestrator.commands.deploy import with_health_gates
from orchestrator.commands.rollback import previous_release, release_targets, resolve_release
from orchestrator.errors import ConfigError
from orchestrator.execute.autorollback import rollback_regions, undo_targets
from orchestrator.execute.journal import MachineConfigRecord, RunRecord
from orchestrator.plan import StepKind, build_plan, build_rollback_plan, release_id
from orchestrator.plan.steps import Step

V1 = sample_spec()
V2 = with_image(V1, IMAGE_V2)
WAVES = (("syd",), ("dfw", "ams"))


def _row(
    rid: int,
    run: int,
    region: str,
    machine: str | None,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    launch: str | None = None,
) -> MachineConfigRecord:
    return MachineConfigRecord(
        id=rid,
        run=run,
        step_id=f"{region}:machine.update:1",
        machine_id=machine,
        region=region,
        slot=1,
        launch_id=launch,
        config_digest=None,
        version_before=None if before is None else "v-before",
        config_before=before,
        version_after=None,
        config_after=after,
        recorded_at="2026-01-01T00:00:00Z",
        updated_at=None,
    )


def _configs(spec: Any) -> dict[str, dict[str, Any]]:
    machines, _ = fleet_at(spec)
    return {m["id"]: copy.deepcopy(m["config"]) for m in machines}


def test_undo_restores_each_machine_to_its_oldest_journaled_config() -> None:
    v1, v2 = _configs(V1), _configs(V2)
    added = managed_machine(V2, "dfw", 3, "m-dfw-3", "vol_dfw_3")
    machines, volumes = fleet_at(V2, extra_machines=[added])
    volumes.append(volume_json("vol_dfw_3", "dfw", attached="m-dfw-3"))
    rows = [
        _row(1, 7, "dfw", "m-dfw-1", before=v1["m-dfw-1"]),
        # A resumed run journaled the machine again, already on v2: the oldest row wins.
        _row(2, 8, "dfw", "m-dfw-1", before=v2["m-dfw-1"]),
        _row(3, 7, "syd", "m-syd-1", before=v1["m-syd-1"]),
        # A create whose answer was lost: found by its launch id.
        _row(4, 8, "dfw", None, launch="launch-m-dfw-3"),
    ]

    undo = undo_targets(rows, to_fleet(machines, volumes), {"dfw"})

    assert dict(undo.targets) == {"m-dfw-1": v1["m-dfw-1"]}
    assert undo.destroy == frozenset({"m-dfw-3"})
    assert undo.release == release_id(V1)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("rollback_region", ("dfw",)),
        ("rollback_wave", ("dfw", "ams")),
        ("rollback_all", ("syd", "dfw")),
    ],
)
def test_the_policy_names_the_regions_in_rollout_order(
    policy: str, expected: tuple[str, ...]
) -> None:
    failed = [Step(id="dfw:gate.health", kind=StepKind.GATE_HEALTH, region="dfw", wave=2)]

    assert rollback_regions(policy, failed, WAVES, {"dfw", "syd"}) == expected


def _history() -> list[MachineConfigRecord]:
    v1, v2 = _configs(V1), _configs(V2)
    rows = []
    for i, mid in enumerate(sorted(v1), start=1):
        region = mid.split("-")[1]
        rows.append(_row(i, 1, region, mid, after=v1[mid]))
        rows.append(_row(100 + i, 2, region, mid, before=v1[mid], after=v2[mid]))
    return rows


def _run(run: int, release: str, command: str = "deploy") -> RunRecord:
    return RunRecord(
        run, release, "sample-fleet", command, "d", "img", (), "t", "t", "succeeded", None, None
    )


def test_the_previous_release_is_the_one_the_current_deploy_replaced() -> None:
    fleet = to_fleet(*fleet_at(V2))
    runs = {1: _run(1, release_id(V1)), 2: _run(2, release_id(V2))}

    assert previous_release(_history(), runs, fleet, ["syd", "dfw", "ams"]) == release_id(V1)


def test_a_fleet_on_several_releases_needs_a_named_one() -> None:
    machines, volumes = fleet_at(V2)
    machines[0] = fleet_at(V1)[0][0]
    fleet = to_fleet(machines, volumes)

    with pytest.raises(ConfigError, match="several releases"):
        previous_release(_history(), {}, fleet, ["syd", "dfw", "ams"])


def test_release_targets_keep_each_machine_its_own_launch_id() -> None:
    fleet = to_fleet(*fleet_at(V2))

    targets, notes = release_targets(_history(), fleet, ["dfw"], release_id(V1))

    assert sorted(targets) == ["m-dfw-1", "m-dfw-2"]
    assert targets["m-dfw-1"]["image"] == V1.image
    assert targets["m-dfw-1"]["metadata"]["orch_launch_id"] == "launch-m-dfw-1"
    assert notes == []


def test_a_release_is_named_by_its_id_or_its_tag() -> None:
    history = _history()

    assert resolve_release(history, "v1") == release_id(V1)
    assert resolve_release(history, release_id(V2)) == release_id(V2)
    with pytest.raises(ConfigError, match="known"):
        resolve_release(history, "v9")


def test_a_resumed_plan_gates_every_region_and_keeps_the_wave_barrier() -> None:
    # syd already went to v2 in the killed run; dfw and ams have not.
    machines, volumes = fleet_at(V1)
    v2_syd = [m for m in fleet_at(V2)[0] if m["region"] == "syd"]
    machines = v2_syd + [m for m in machines if m["region"] != "syd"]
    plan = build_plan(V2, to_fleet(machines, volumes))
    assert not plan.region_steps("syd")

    resumed = with_health_gates(plan, V2, rebake={"syd"})

    assert [s.kind for s in resumed.region_steps("syd")] == [
        StepKind.GATE_HEALTH,
        StepKind.GATE_METRICS,
    ]
    for root in ("dfw:machine.update:1", "ams:machine.update:1"):
        assert set(resumed.depends_on(root)) == {"syd:gate.health", "syd:gate.metrics"}
    assert resumed.step("dfw:gate.metrics").kind is StepKind.GATE_METRICS


def test_undoing_a_scale_up_destroys_the_new_machine_and_checks_the_others_health_only() -> None:
    added = managed_machine(V1, "dfw", 3, "m-dfw-3", "vol_dfw_3")
    machines, volumes = fleet_at(V1, extra_machines=[added])
    volumes.append(volume_json("vol_dfw_3", "dfw", attached="m-dfw-3"))
    fleet = to_fleet(machines, volumes)
    rows = [_row(1, 9, "dfw", "m-dfw-3", launch="launch-m-dfw-3")]

    undo = undo_targets(rows, fleet, {"dfw", "ams"})
    plan = build_rollback_plan(
        fleet, undo.targets, release="none", spec_waves=V1.waves, destroy=undo.destroy
    )

    assert undo.release is None
    assert [s.id for s in plan.mutating_steps] == ["dfw:machine.destroy:3"]
    gate = plan.step("dfw:gate.health")
    assert gate.params["slots"] == [1, 2]
    # The two machines the deploy never touched are not expected on a "restored" release.
    assert gate.params["release"] is None
