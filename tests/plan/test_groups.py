"""Plans of a fleet with two process groups: each group's machines, slots and spearheads."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from rich.console import Console

from orchestrator.errors import ConfigError
from orchestrator.fleetconfig.model import CheckSpec, DeploySpec, GroupSpec
from orchestrator.plan.config import desired_config
from orchestrator.plan.graph import build_plan
from orchestrator.plan.groups import check_slot_blocks, gate_slots, local_slot, slot_base
from orchestrator.plan.steps import StepKind
from orchestrator.render.plan import plan_tree

from .plan_helpers import fleet_at, machine_json, managed_machine, region, sample_spec, to_fleet


def two_groups(*, syd: int = 2, workers: int = 1, image: str | None = None) -> DeploySpec:
    """Return the sample fleet (syd only) plus a worker group of ``workers`` per region."""
    spec = sample_spec(syd=syd)
    spec = replace(spec, regions={"syd": spec.regions["syd"]}, waves=(spec.waves[0],))
    if image is not None:
        spec = replace(spec, image=image)
    worker = GroupSpec(
        name="worker",
        command=("worker",),
        checks=(CheckSpec(name="consuming", type="http", port=8080, path="/status"),),
        regions={"syd": region("syd", workers, "primary")},
    )
    return replace(spec, command=("serve",), groups=(worker,))


def worker_machine(spec: DeploySpec, slot: int, mid: str) -> dict[str, Any]:
    """Return a worker machine this tool made in ``slot`` (within the worker's block)."""
    base = slot_base(spec, "worker")
    return managed_machine(spec.for_group("worker"), "syd", base + slot, mid, None)


def test_each_group_gets_its_own_machines_and_one_gate_waits_for_all() -> None:
    spec = two_groups(workers=2)
    plan = build_plan(spec, to_fleet([], []))
    base = slot_base(spec, "worker")
    creates = {s.slot: s for s in plan.steps() if s.kind is StepKind.MACHINE_CREATE}
    assert sorted(creates) == [1, 2, base + 1, base + 2]
    worker = creates[base + 1].params["config"]
    assert worker["metadata"]["fly_process_group"] == "worker"
    assert worker["init"] == {"cmd": ["worker"]}
    assert worker["mounts"] == []
    assert creates[1].params["config"]["init"] == {"cmd": ["serve"]}
    # Only the app group gets volumes.
    ensures = [s.slot for s in plan.steps() if s.kind is StepKind.VOLUME_ENSURE]
    assert ensures == [1, 2]
    (gate,) = [s for s in plan.steps() if s.kind is StepKind.GATE_HEALTH]
    assert gate.params["slots"] == [1, 2, base + 1, base + 2]
    # What a resumed deploy's rebuilt gate waits for is the same.
    assert gate_slots(spec, "syd") == gate.params["slots"]
    assert local_slot(base + 2) == 2


def test_scaling_one_group_touches_no_machine_of_the_other() -> None:
    spec = two_groups(workers=2)
    machines, volumes = fleet_at(replace(spec, groups=()))
    machines += [worker_machine(spec, 1, "w-1"), worker_machine(spec, 2, "w-2")]
    fleet = to_fleet(machines, volumes)
    assert build_plan(spec, fleet).mutating_steps == ()

    fewer = replace(
        spec,
        groups=(replace(spec.groups[0], regions={"syd": region("syd", 1, "primary")}),),
    )
    plan = build_plan(fewer, fleet)
    changed = [(s.kind, s.machine) for s in plan.steps() if s.mutating]
    assert changed == [(StepKind.MACHINE_DESTROY, "w-2")]


def test_a_release_updates_each_group_behind_its_own_spearhead() -> None:
    spec = two_groups(workers=2)
    machines, volumes = fleet_at(replace(spec, groups=()))
    machines += [worker_machine(spec, 1, "w-1"), worker_machine(spec, 2, "w-2")]
    v2 = replace(spec, image="registry.fly.io/sample-app:v2")
    plan = build_plan(v2, to_fleet(machines, volumes))
    updates = {s.machine: s for s in plan.steps() if s.kind is StepKind.MACHINE_UPDATE}
    assert sorted(updates) == ["m-syd-1", "m-syd-2", "w-1", "w-2"]
    spearheads = sorted(m for m, s in updates.items() if s.params["spearhead"])
    assert spearheads == ["m-syd-1", "w-1"]
    graph = plan.graph
    # The worker's spearhead waits for the app's; each group's others wait for their own.
    assert graph.has_edge(updates["m-syd-1"].id, updates["w-1"].id)
    assert graph.has_edge(updates["w-1"].id, updates["w-2"].id)
    assert graph.has_edge(updates["m-syd-1"].id, updates["m-syd-2"].id)
    assert updates["w-2"].params["config"]["init"] == {"cmd": ["worker"]}


def test_worker_machines_fly_deploy_made_are_adopted_into_the_worker_group() -> None:
    spec = two_groups(workers=1)
    machines, volumes = fleet_at(replace(spec, groups=()))
    config = desired_config(spec.for_group("worker"), "syd", 1)
    config["metadata"] = {"fly_platform_version": "v2", "fly_process_group": "worker"}
    machines.append(machine_json("theirs", "syd", config))
    plan = build_plan(spec, to_fleet(machines, volumes))
    (step,) = [s for s in plan.steps() if s.mutating]
    assert (step.kind, step.machine, step.params["reason"]) == (
        StepKind.MACHINE_UPDATE,
        "theirs",
        "adopt",
    )
    assert step.slot == slot_base(spec, "worker") + 1


def test_two_group_names_sharing_a_slot_block_are_refused() -> None:
    spec = two_groups()
    names = {}
    clash = None
    for i in range(5000):
        base = slot_base(spec, f"g{i}")
        if base in names:
            clash = (names[base], f"g{i}")
            break
        names[base] = f"g{i}"
    assert clash is not None
    groups = tuple(GroupSpec(name=n, regions=spec.regions) for n in clash)
    with pytest.raises(ConfigError, match="would share machine slots") as err:
        check_slot_blocks(replace(spec, groups=groups))
    assert err.value.where == "fly.toml: processes"


def test_the_plan_tree_names_a_worker_machine_by_its_group() -> None:
    spec = two_groups(workers=1)
    console = Console(width=200, record=True)
    console.print(plan_tree(build_plan(spec, to_fleet([], []))))
    text = console.export_text()
    assert "(process group worker 1)" in text
    assert "(process group app" not in text


def test_machines_of_a_renamed_default_group_are_taken_over_not_duplicated() -> None:
    spec = two_groups(workers=1)
    machines, volumes = fleet_at(replace(spec, groups=()))
    machines.append(worker_machine(spec, 1, "w-1"))
    renamed = replace(spec, process_group="web")
    plan = build_plan(renamed, to_fleet(machines, volumes))
    # The old "app" machines hold slots 1 and 2 of the default group: no second machine is
    # created for those slots (and the worker keeps its own).
    assert [s for s in plan.steps() if s.kind is StepKind.MACHINE_CREATE] == []
    assert [s for s in plan.steps() if s.kind is StepKind.MACHINE_DESTROY] == []
