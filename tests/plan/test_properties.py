"""Properties of build_plan over random fleets (hypothesis).

For any counts, wave layout and fleet (missing, stale, stopped or failed machines, orphaned
volumes, a hand-made machine): the graph is acyclic, no machine step of a wave starts before
every gate of the earlier waves, no volume is destroyed unless asked, the plan does not depend
on the API's order, and applying it brings the fleet to the spec (a second plan is a no-op).
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, replace
from typing import Any

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.fleetconfig.model import DeploySpec, WaveSpec
from orchestrator.plan import Plan, StepKind, build_plan, to_json_text
from orchestrator.plan.model import GATE_KINDS, MACHINE_KINDS

from .plan_helpers import (
    IMAGE_V2,
    machine_json,
    managed_machine,
    sample_spec,
    to_fleet,
    volume_json,
    with_image,
)

REGIONS = ("syd", "dfw", "ams")
LAYOUTS = (
    (("syd",), ("dfw", "ams")),
    (("syd", "dfw", "ams"),),
    (("syd",), ("dfw",), ("ams",)),
    (("dfw",), ("syd", "ams")),
)
MACHINE_KINDS_DRAWN = ("absent", "spec", "stale", "stopped", "failed")


@dataclass
class Scenario:
    spec: DeploySpec
    machines: list[dict[str, Any]]
    volumes: list[dict[str, Any]]
    regions: list[str] | None
    image: str | None
    destroy_volumes: bool
    seed: int

    def plan(
        self,
        machines: list[dict[str, Any]] | None = None,
        volumes: list[dict[str, Any]] | None = None,
    ) -> Plan:
        return build_plan(
            self.spec,
            to_fleet(
                self.machines if machines is None else machines,
                self.volumes if volumes is None else volumes,
            ),
            regions=self.regions,
            image=self.image,
            destroy_volumes=self.destroy_volumes,
        )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    counts = {r: draw(st.integers(0, 3), label=f"count {r}") for r in REGIONS}
    layout = draw(st.sampled_from(LAYOUTS))
    bake = draw(st.sampled_from([0.0, 3.0]))
    spec = replace(
        sample_spec(syd=counts["syd"], dfw=counts["dfw"], ams=counts["ams"]),
        waves=tuple(WaveSpec(index=i + 1, regions=w, bake_s=bake) for i, w in enumerate(layout)),
    )
    stale = with_image(spec, "registry.fly.io/sample-app:v0")
    machines: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    for code in REGIONS:
        for slot in range(1, 5):
            kind = draw(st.sampled_from(MACHINE_KINDS_DRAWN), label=f"{code} slot {slot}")
            if kind == "absent":
                continue
            mid, vid = f"m-{code}-{slot}", f"vol_{code}_{slot}"
            source = stale if kind == "stale" else spec
            state = kind if kind in ("stopped", "failed") else "started"
            machines.append(managed_machine(source, code, slot, mid, vid, state=state))
            volumes.append(volume_json(vid, code, attached=mid))
        for i in range(draw(st.integers(0, 2), label=f"{code} orphans")):
            volumes.append(volume_json(f"vol_{code}_orphan{i}", code))
    if draw(st.booleans(), label="hand-made machine"):
        machines.append(machine_json("m-hand", "dfw", {"image": "nginx"}))
    regions = draw(
        st.one_of(
            st.none(), st.lists(st.sampled_from(REGIONS), min_size=1, max_size=3, unique=True)
        )
    )
    return Scenario(
        spec=spec,
        machines=machines,
        volumes=volumes,
        regions=regions,
        image=draw(st.sampled_from([None, IMAGE_V2])),
        destroy_volumes=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def _apply(plan: Plan, machines: list[dict[str, Any]], volumes: list[dict[str, Any]]) -> None:
    """Run ``plan`` against API-shaped JSON the way the executor would, in step order."""
    by_id = {m["id"]: m for m in machines}
    vols = {v["id"]: v for v in volumes}
    made: dict[str, str] = {}  # volume.ensure step id -> volume id
    for step in plan.steps():
        p = step.params
        if step.kind is StepKind.VOLUME_ENSURE:
            vid = p["reuse"] or f"vol_new_{step.region}_{step.slot}"
            if vid not in vols:
                vols[vid] = volume_json(vid, step.region, size_gb=p["size_gb"])
                volumes.append(vols[vid])
            made[step.id] = vid
        elif step.kind is StepKind.MACHINE_CREATE:
            mid = f"m-new-{step.region}-{step.slot}"
            config = copy.deepcopy(p["config"])
            if p["volume_from"]:
                vid = made[p["volume_from"]]
                config["mounts"][0]["volume"] = vid
                vols[vid]["attached_machine_id"] = mid
            by_id[mid] = machine_json(mid, step.region, config)
            machines.append(by_id[mid])
        elif step.kind is StepKind.MACHINE_UPDATE:
            assert step.machine is not None
            by_id[step.machine]["config"] = copy.deepcopy(p["config"])
            by_id[step.machine]["state"] = "started"
        elif step.kind is StepKind.MACHINE_DESTROY:
            assert step.machine is not None
            gone = by_id.pop(step.machine)
            machines.remove(gone)
            for mount in gone["config"].get("mounts", []):
                vol = vols.get(mount.get("volume", ""))
                if vol is None:
                    continue
                vol["attached_machine_id"] = None
                if not p["keep_volume"]:
                    vol["state"] = "pending_destroy"


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_plans_are_sound(sc: Scenario) -> None:
    plan = sc.plan()
    graph = plan.graph
    assert nx.is_directed_acyclic_graph(graph)

    steps = plan.steps()
    selected = set(sc.regions or REGIONS)
    assert {s.region for s in steps} <= selected
    assert {r for w in plan.waves for r in w} == selected

    # Wave barriers: every machine step of a later wave comes after every earlier gate.
    gates = [s for s in steps if s.kind in GATE_KINDS]
    for step in steps:
        if step.kind not in MACHINE_KINDS:
            continue
        ancestors = nx.ancestors(graph, step.id)
        for gate in gates:
            if gate.wave < step.wave:
                assert gate.id in ancestors, (gate.id, step.id)

    # Execution order respects every edge.
    position = {s.id: i for i, s in enumerate(steps)}
    for a, b in graph.edges:
        assert position[a] < position[b]

    # Volumes: only orphans are reused; none is destroyed unless asked.
    attached = {v["id"] for v in sc.volumes if v["attached_machine_id"]}
    for step in steps:
        if step.kind is StepKind.VOLUME_ENSURE:
            assert step.params["reuse"] not in attached
        if step.kind is StepKind.MACHINE_DESTROY:
            assert step.params["keep_volume"] is not sc.destroy_volumes
            assert ("volume" in step.params) is sc.destroy_volumes


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_plans_do_not_depend_on_input_order(sc: Scenario) -> None:
    rng = random.Random(sc.seed)
    machines, volumes = list(sc.machines), list(sc.volumes)
    rng.shuffle(machines)
    rng.shuffle(volumes)
    assert to_json_text(sc.plan(machines, volumes)) == to_json_text(sc.plan())


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_applying_a_plan_converges(sc: Scenario) -> None:
    machines, volumes = copy.deepcopy(sc.machines), copy.deepcopy(sc.volumes)
    _apply(sc.plan(), machines, volumes)
    again = sc.plan(machines, volumes)
    assert again.is_noop, [s.id for s in again.mutating_steps]
