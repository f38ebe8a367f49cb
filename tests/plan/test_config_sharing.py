"""The planner builds a region's config once; each step still gets its own per-machine parts.

A region's machine steps share the nested values every slot has in common (guest, env,
checks, services, restart), read-only. What differs per machine (the top-level dict, the
metadata, the mounts with the volume id) is each step's own, so changing one step's config
there never shows up in another's, and every config deep-copies and serialises as the
executor and the client need.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

from orchestrator.plan import StepKind, build_plan, config_digest, desired_config
from orchestrator.plan.config import RegionConfigs

from .plan_helpers import IMAGE_V2, fleet_at, sample_spec, to_fleet, volume_json

PER_MACHINE = ("metadata", "mounts")


def _configs(plan: Any) -> list[tuple[Any, dict[str, Any]]]:
    kinds = (StepKind.MACHINE_CREATE, StepKind.MACHINE_UPDATE)
    return [(s, s.params["config"]) for s in plan.steps() if s.kind in kinds]


def test_each_machine_step_owns_its_top_level_metadata_and_mounts() -> None:
    machines, volumes = fleet_at(
        sample_spec(), extra_volumes=[volume_json("vol_syd_orphan", "syd")]
    )
    plan = build_plan(sample_spec(syd=4, dfw=3), to_fleet(machines, volumes), image=IMAGE_V2)
    configs = _configs(plan)
    assert {s.kind for s, _ in configs} == {StepKind.MACHINE_CREATE, StepKind.MACHINE_UPDATE}
    seen: dict[int, str] = {}
    for step, cfg in configs:
        owned = [cfg, cfg["metadata"], cfg["mounts"], *cfg["mounts"]]
        for value in owned:
            assert id(value) not in seen, f"{step.id} shares a dict with {seen.get(id(value))}"
            seen[id(value)] = step.id
        assert cfg["metadata"]["orch_slot"] == str(step.slot)
        if step.kind is StepKind.MACHINE_UPDATE:
            assert cfg["mounts"][0]["volume"] == f"vol_{step.region}_{step.slot}"
        else:
            assert "volume" not in cfg["mounts"][0]
        # What the executor and the client do with it.
        assert copy.deepcopy(cfg) == cfg
        json.dumps(cfg)


def test_changing_one_steps_per_machine_parts_leaves_the_others_alone() -> None:
    plan = build_plan(sample_spec(), to_fleet(*fleet_at(sample_spec())), image=IMAGE_V2)
    first = plan.step("syd:machine.update:1").params["config"]
    second = plan.step("syd:machine.update:2").params["config"]
    before = copy.deepcopy(second)
    first["metadata"]["orch_launch_id"] = "L-1"
    first["mounts"][0]["volume"] = "vol_other"
    first["image"] = "changed"
    assert second == before


def test_region_configs_match_desired_config_slot_by_slot() -> None:
    spec = replace(sample_spec(), image=IMAGE_V2)
    region = RegionConfigs(spec, "dfw")
    for slot in (1, 2, 7):
        assert region.config(slot) == desired_config(spec, "dfw", slot)
        with_volume = desired_config(spec, "dfw", slot)
        with_volume["mounts"][0]["volume"] = "vol_x"
        assert region.config(slot, "vol_x") == with_volume
    assert region.digest == config_digest(desired_config(spec, "dfw", 1))


def test_desired_config_shares_nothing_between_calls() -> None:
    spec = sample_spec()
    a, b = desired_config(spec, "syd", 1), desired_config(spec, "syd", 1)
    a["env"]["X"] = "1"
    a["guest"]["cpus"] = 8
    a["checks"].clear()
    a["services"][0]["ports"].clear()
    assert b == desired_config(spec, "syd", 1)
