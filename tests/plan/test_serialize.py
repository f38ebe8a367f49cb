"""Plans as text: JSON, DOT, Mermaid, and the rich tree."""

from __future__ import annotations

import json
from dataclasses import replace

from rich.console import Console

from orchestrator.fleetconfig.model import VMSize
from orchestrator.plan import Plan, build_plan, to_dot, to_json_text, to_mermaid
from orchestrator.render.plan import plan_tree

from .plan_helpers import IMAGE_V2, fleet_at, region, sample_spec, to_fleet


def _image_change() -> Plan:
    return build_plan(sample_spec(), to_fleet(*fleet_at(sample_spec())), image=IMAGE_V2)


def test_json_text_is_sorted_and_ends_with_a_newline() -> None:
    text = to_json_text(_image_change())
    assert text.endswith("}\n")
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"


def test_dot_has_every_step_and_edge() -> None:
    plan = _image_change()
    dot = to_dot(plan)
    assert dot.startswith("digraph plan {")
    for step in plan.steps():
        assert f'"{step.id}" [' in dot
        for dep in plan.depends_on(step.id):
            assert f'"{dep}" -> "{step.id}";' in dot
    assert "peripheries=2" in dot  # the spearheads
    assert dot == to_dot(_image_change())


def test_mermaid_has_every_step_and_edge() -> None:
    plan = _image_change()
    text = to_mermaid(plan)
    assert text.startswith("flowchart TD\n")
    edges = sum(len(plan.depends_on(s.id)) for s in plan.steps())
    assert text.count(" --> ") == edges
    assert text.count(":::mutating") == len(plan.mutating_steps)
    assert text == to_mermaid(_image_change())


def test_empty_plan_serialises() -> None:
    plan = build_plan(sample_spec(), to_fleet(*fleet_at(sample_spec())))
    assert json.loads(to_json_text(plan))["steps"] == []
    assert "->" not in to_dot(plan)
    assert "-->" not in to_mermaid(plan)


def _render(plan: Plan) -> str:
    console = Console(width=120, record=True, color_system=None)
    console.print(plan_tree(plan))
    return console.export_text()


def test_tree_shows_waves_regions_and_the_spearhead() -> None:
    text = _render(_image_change())
    assert "wave 1" in text
    assert "wave 2" in text
    assert text.index("syd") < text.index("dfw") < text.index("ams")
    assert text.count("★ spearhead") == 3
    assert "5 mutating steps" in text
    assert "● machine.update 2" in text
    assert "○ gate.health" in text


def test_tree_of_a_noop_says_nothing_changes() -> None:
    text = _render(build_plan(sample_spec(), to_fleet(*fleet_at(sample_spec()))))
    assert "nothing to change" in text
    assert "●" not in text


def test_tree_describes_volume_reuse_and_forks() -> None:
    text = _render(build_plan(sample_spec(), to_fleet([], [])))
    assert "fork a syd volume" in text
    assert "create a 1 GB volume 'data'" in text


def test_tree_shows_a_size_change_as_a_resize() -> None:
    deployed = sample_spec()
    big = VMSize("performance", 2, 4096, "performance-2x")
    bigger = replace(deployed, regions={**deployed.regions, "ams": region("ams", 1, vm=big)})
    text = _render(build_plan(bigger, to_fleet(*fleet_at(deployed)), regions=["ams"]))
    assert "resize shared-cpu-1x 256 MB → performance-2x 4096 MB" in text


def test_tree_explains_its_marks_when_something_changes() -> None:
    text = _render(_image_change())
    legend = text.strip().splitlines()[-1]
    assert "● changes the fleet" in legend
    assert "○ only checks" in legend
    assert "★ the spearhead" in legend
