"""The executor against a real local Fly: creates are never duplicated, leases are respected.

Plans here are built by hand around a single step, so each test exercises one step kind the
way a retry or a crash would: the same create run twice with the journaled launch id, a create
whose connection drops after Fly made the machine, an update of a machine someone else leased.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

from orchestrator.errors import ErrorKind
from orchestrator.execute.autorollback import automatic_rollback
from orchestrator.execute.events import Event, EventBus, Note, RollbackStarted
from orchestrator.execute.executor import DeployResult, Executor
from orchestrator.execute.journal import Journal
from orchestrator.execute.run import RunContext
from orchestrator.fleetconfig.load import load_spec
from orchestrator.fleetconfig.model import DeploySpec, WaveSpec
from orchestrator.fly.client import FlyClient
from orchestrator.fly.proxy import ProxyClient
from orchestrator.plan.config import META_LAUNCH_ID, META_SLOT, desired_config, release_id
from orchestrator.plan.fleet import Fleet, observe
from orchestrator.plan.model import Plan
from orchestrator.plan.steps import Step, StepKind, step_id

from .localfleet import APP, LocalFleet, copy_fleet

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    """Copy the sample fleet outside the repo and run a local Fly for it, with the app made."""
    local = LocalFleet.start(copy_fleet(tmp_path_factory.mktemp("executor") / "fleet"))
    try:
        resp = local.api("POST", "/v1/apps", json={"name": APP, "org_slug": "personal"})
        assert resp.status_code in (200, 201), resp.text
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def spec(fleet: LocalFleet) -> DeploySpec:
    return load_spec(fleet.root)


def _plan(spec: DeploySpec, *steps: Step, edges: tuple[tuple[str, str], ...] = ()) -> Plan:
    graph = nx.DiGraph()
    for step in steps:
        graph.add_node(step.id, step=step)
    graph.add_edges_from(edges)
    regions = tuple(sorted({s.region for s in steps}))
    return Plan(
        app=APP,
        release=release_id(spec),
        waves=(regions,),
        graph=graph,
        wave_specs=(WaveSpec(index=1, regions=regions),),
    )


def _create(spec: DeploySpec, region: str, slot: int) -> Step:
    config: dict[str, Any] = desired_config(spec, region, slot)
    # Stateless, so the create stands alone (no volume.ensure before it).
    config["mounts"] = []
    return Step(
        id=step_id(region, StepKind.MACHINE_CREATE, slot),
        kind=StepKind.MACHINE_CREATE,
        region=region,
        wave=1,
        slot=slot,
        params={"name": f"{APP}-{region}-{slot}", "config": config, "release": release_id(spec)},
    )


def _execute(
    fleet: LocalFleet,
    plan: Plan,
    events: list[Event] | None = None,
    *,
    observed: Fleet | None = None,
) -> DeployResult:
    async def go() -> DeployResult:
        bus = EventBus()
        if events is not None:
            bus.subscribe(events.append)
        async with (
            FlyClient(fleet.endpoint.api_url, fleet.endpoint.token) as client,
            ProxyClient(fleet.endpoint.proxy_url, APP, host_header=True) as probe,
        ):
            with Journal.open(fleet.root) as journal:
                executor = Executor(
                    client, plan, journal=journal, probe=probe, bus=bus, fleet=observed
                )
                return await executor.run()

    return asyncio.run(go())


def _observe(fleet: LocalFleet) -> Fleet:
    async def go() -> Fleet:
        async with FlyClient(fleet.endpoint.api_url, fleet.endpoint.token) as client:
            return await observe(client, APP)

    return asyncio.run(go())


def _env_update(machine: dict[str, Any], **env: str) -> Step:
    config = dict(machine["config"])
    config["env"] = {**config["env"], **env}
    slot = int(machine["config"]["metadata"][META_SLOT])
    return Step(
        id=step_id(machine["region"], StepKind.MACHINE_UPDATE, slot),
        kind=StepKind.MACHINE_UPDATE,
        region=machine["region"],
        wave=1,
        slot=slot,
        machine=machine["id"],
        params={"config": config, "from_version": machine["version"], "spearhead": True},
    )


def _hold_lease(fleet: LocalFleet, machine: dict[str, Any], description: str) -> str:
    """Lease ``machine`` as someone else would (60 s); return the nonce."""
    lease = fleet.api(
        "POST",
        f"/v1/apps/{APP}/machines/{machine['id']}/lease",
        json={"ttl": 60, "description": description},
    )
    assert lease.status_code == 201, lease.text
    return str(lease.json().get("data", lease.json())["nonce"])


def _slot_machines(fleet: LocalFleet, region: str, slot: int) -> list[dict[str, Any]]:
    return [
        m
        for m in fleet.machines(region)
        if m["config"]["metadata"].get(META_SLOT) == str(slot) and m["state"] != "destroyed"
    ]


def test_a_create_run_twice_with_its_journaled_launch_id_makes_one_machine(
    fleet: LocalFleet, spec: DeploySpec
) -> None:
    plan = _plan(spec, _create(spec, "ams", 1))
    events: list[Event] = []

    first = _execute(fleet, plan)
    # The same create again (a retry after a crash, a stale plan): the journal gives it the
    # same launch id, and the machine is found by it instead of created a second time.
    second = _execute(fleet, plan, events)

    assert first.outcome == second.outcome == "succeeded"
    [machine] = _slot_machines(fleet, "ams", 1)
    with Journal.open(fleet.root) as journal:
        launches = {
            r.launch_id
            for run in (first.run, second.run)
            for r in journal.machine_configs(run or 0)
        }
    assert launches == {machine["config"]["metadata"][META_LAUNCH_ID]}
    notes = [e.message for e in events if isinstance(e, Note)]
    assert any(f"machine {machine['id']} was already launched" in n for n in notes), notes


def test_a_create_whose_answer_is_lost_leaves_exactly_one_machine(
    fleet: LocalFleet, spec: DeploySpec
) -> None:
    # Fly makes the machine, then the connection drops: the answer is lost, the client retries.
    faults = {"rules": [{"operation": "Machines_create", "drop": "after", "times": 1}]}
    assert fleet.api("PUT", "/_localfly/faults", json=faults).status_code in (200, 204)
    try:
        events: list[Event] = []
        result = _execute(fleet, _plan(spec, _create(spec, "dfw", 1)), events)
    finally:
        fleet.api("DELETE", "/_localfly/faults")

    assert result.outcome == "succeeded", result.error
    [machine] = _slot_machines(fleet, "dfw", 1)
    assert machine["state"] == "started"
    # The client's retry was refused (the name is taken) or made a second machine; either way
    # the executor found the first one by its launch id and kept exactly one.
    notes = [e.message for e in events if isinstance(e, Note)]
    assert any(machine["id"] in n and "launch id" in n for n in notes), notes


def test_an_update_of_a_machine_leased_by_someone_else_fails_naming_the_holder(
    fleet: LocalFleet, spec: DeploySpec, tmp_path: Path
) -> None:
    created = _execute(fleet, _plan(spec, _create(spec, "syd", 1)))
    assert created.outcome == "succeeded", created.error
    [machine] = _slot_machines(fleet, "syd", 1)
    nonce = _hold_lease(fleet, machine, "someone else's deploy")
    update = _env_update(machine, LOG_LEVEL="debug")
    try:
        result = _execute(fleet, _plan(spec, update))
    finally:
        fleet.api(
            "DELETE",
            f"/v1/apps/{APP}/machines/{machine['id']}/lease",
            headers={"fly-machine-lease-nonce": nonce},
        )

    assert result.outcome == "failed"
    assert result.error is not None
    assert "leased" in result.error
    assert "someone else's deploy" in result.error
    [after] = _slot_machines(fleet, "syd", 1)
    assert after["version"] == machine["version"]


def test_an_update_from_the_observed_fleet_journals_it_and_sends_without_reading_first(
    fleet: LocalFleet, spec: DeploySpec
) -> None:
    created = _execute(fleet, _plan(spec, _create(spec, "dfw", 5)))
    assert created.outcome == "succeeded", created.error
    [machine] = _slot_machines(fleet, "dfw", 5)
    observed = _observe(fleet)
    seen = len(fleet.requests_log())

    update = _env_update(machine, LOG_LEVEL="debug")
    result = _execute(fleet, _plan(spec, update), observed=observed)

    assert result.outcome == "succeeded", result.error
    [after] = _slot_machines(fleet, "dfw", 5)
    assert after["version"] != machine["version"]
    assert after["config"]["env"]["LOG_LEVEL"] == "debug"
    with Journal.open(fleet.root) as journal:
        [row] = journal.machine_configs(result.run or 0)
    assert row.version_before == machine["version"]
    assert row.config_before is not None
    assert row.config_before["env"] == machine["config"]["env"]
    # The lease, then at once the update: the observed fleet already said what was there.
    own = [
        r["operation"]
        for r in fleet.requests_log()[seen:]
        if f"/machines/{machine['id']}" in str(r.get("path"))
    ]
    assert own[:2] == ["Machines_create_lease", "Machines_update"], own


def test_an_update_of_a_machine_changed_since_the_plan_fails_naming_both_versions(
    fleet: LocalFleet, spec: DeploySpec
) -> None:
    created = _execute(fleet, _plan(spec, _create(spec, "dfw", 6)))
    assert created.outcome == "succeeded", created.error
    [machine] = _slot_machines(fleet, "dfw", 6)
    observed = _observe(fleet)
    # Someone changes the machine after the plan was made.
    theirs = dict(machine["config"])
    theirs["env"] = {**theirs["env"], "CHANGED_BY": "someone else"}
    resp = fleet.api("POST", f"/v1/apps/{APP}/machines/{machine['id']}", json={"config": theirs})
    assert resp.status_code == 200, resp.text
    their_version = resp.json()["version"]

    update = _env_update(machine, LOG_LEVEL="debug")
    result = _execute(fleet, _plan(spec, update), observed=observed)

    assert result.outcome == "failed"
    assert result.error is not None
    assert "changed since the plan" in result.error
    assert their_version in result.error
    assert machine["version"] in result.error
    [after] = _slot_machines(fleet, "dfw", 6)
    assert after["version"] == their_version
    assert after["config"]["env"]["CHANGED_BY"] == "someone else"
    assert after["config"]["env"].get("LOG_LEVEL") == machine["config"]["env"].get("LOG_LEVEL")


def test_a_destroy_stops_the_machine_and_keeps_its_volume(
    fleet: LocalFleet, spec: DeploySpec
) -> None:
    made = fleet.api(
        "POST", f"/v1/apps/{APP}/volumes", json={"name": "data", "region": "ams", "size_gb": 1}
    )
    assert made.status_code == 200, made.text
    volume_id = made.json()["id"]
    ensure = Step(
        id=step_id("ams", StepKind.VOLUME_ENSURE, 2),
        kind=StepKind.VOLUME_ENSURE,
        region="ams",
        wave=1,
        slot=2,
        params={"name": "data", "size_gb": 1, "reuse": volume_id},
    )
    create = _create(spec, "ams", 2)
    create = Step(
        id=create.id,
        kind=create.kind,
        region="ams",
        wave=1,
        slot=2,
        params={**create.params, "config": desired_config(spec, "ams", 2)},
    )
    plan = _plan(spec, ensure, create, edges=((ensure.id, create.id),))
    assert _execute(fleet, plan).outcome == "succeeded"
    [machine] = _slot_machines(fleet, "ams", 2)
    assert machine["config"]["mounts"][0]["volume"] == volume_id

    destroy = Step(
        id=step_id("ams", StepKind.MACHINE_DESTROY, 2),
        kind=StepKind.MACHINE_DESTROY,
        region="ams",
        wave=1,
        slot=2,
        machine=machine["id"],
        params={"keep_volume": True},
    )
    result = _execute(fleet, _plan(spec, destroy))

    assert result.outcome == "succeeded", result.error
    assert _slot_machines(fleet, "ams", 2) == []
    kept = fleet.api("GET", f"/v1/apps/{APP}/volumes/{volume_id}").json()
    assert kept["state"] == "created"
    assert not kept.get("attached_machine_id")


def test_a_failure_to_reach_fly_rolls_nothing_back_whatever_the_policy(
    fleet: LocalFleet, spec: DeploySpec
) -> None:
    created = _execute(fleet, _plan(spec, _create(spec, "dfw", 2)))
    assert created.outcome == "succeeded", created.error
    [machine] = _slot_machines(fleet, "dfw", 2)
    nonce = _hold_lease(fleet, machine, "an operator's fly machine update")
    update = _env_update(machine, LOG_LEVEL="debug")
    plan = _plan(spec, update)
    plan = Plan(
        app=plan.app,
        release=plan.release,
        waves=plan.waves,
        graph=plan.graph,
        wave_specs=(WaveSpec(index=1, regions=("dfw",), on_failure="rollback_all"),),
    )
    events: list[Event] = []

    async def go() -> DeployResult:
        bus = EventBus(events.append)
        async with (
            FlyClient(fleet.endpoint.api_url, fleet.endpoint.token) as client,
            ProxyClient(fleet.endpoint.proxy_url, APP, host_header=True) as probe,
        ):
            with Journal.open(fleet.root) as journal:
                how = RunContext(
                    client=client,
                    probe=probe,
                    journal=journal,
                    bus=bus,
                    app=APP,
                    image=spec.image,
                    spec_digest=spec.digest,
                    max_unavailable={},
                    options=None,
                    wave_specs=plan.wave_specs,
                )
                executor = Executor(
                    client,
                    plan,
                    journal=journal,
                    probe=probe,
                    bus=bus,
                    rollback=automatic_rollback(how),
                )
                return await executor.run()

    try:
        result = asyncio.run(go())
    finally:
        fleet.api(
            "DELETE",
            f"/v1/apps/{APP}/machines/{machine['id']}/lease",
            headers={"fly-machine-lease-nonce": nonce},
        )

    assert result.outcome == "failed"
    assert result.rollback is None
    assert not any(isinstance(e, RollbackStarted) for e in events)
    # Decided once, as a kind; the command line says "`invoke deploy --resume` carries on".
    assert result.error_kind is ErrorKind.FLY
    assert result.exit_code == 1
    with Journal.open(fleet.root) as journal:
        assert journal.runs(APP, limit=1)[0].command == "deploy"


def _ensure(region: str, slot: int, name: str) -> Step:
    return Step(
        id=step_id(region, StepKind.VOLUME_ENSURE, slot),
        kind=StepKind.VOLUME_ENSURE,
        region=region,
        wave=1,
        slot=slot,
        params={"name": name, "size_gb": 1},
    )


def _live_volumes(fleet: LocalFleet, name: str) -> list[dict[str, Any]]:
    return [v for v in fleet.volumes() if v["name"] == name and v["state"] != "destroyed"]


def test_a_volume_create_whose_answer_is_lost_leaves_one_volume_per_slot(
    fleet: LocalFleet, spec: DeploySpec
) -> None:
    # Fly makes the volume, then the connection drops; the client sends the create again and
    # Fly, which has no idempotency key for volumes, makes a second one.
    faults = {"rules": [{"operation": "Volumes_create", "drop": "after", "times": 1}]}
    assert fleet.api("PUT", "/_localfly/faults", json=faults).status_code in (200, 204)
    try:
        events: list[Event] = []
        steps = [_ensure("ams", slot, "twins") for slot in (1, 2)]
        result = _execute(fleet, _plan(spec, *steps), events)
    finally:
        fleet.api("DELETE", "/_localfly/faults")

    assert result.outcome == "succeeded", result.error
    volumes = _live_volumes(fleet, "twins")
    assert len(volumes) == 2, volumes  # one per slot: the twin was destroyed
    notes = [e.message for e in events if isinstance(e, Note)]
    assert any("a create was sent twice" in n for n in notes), notes


def test_volume_creates_list_the_app_volumes_once_a_run(
    fleet: LocalFleet, spec: DeploySpec
) -> None:
    # Fly allows one volume list per second: a list per volume would make a first deploy of a
    # few hundred machines wait minutes on the rate limit.
    before = len(fleet.requests_log())
    steps = [_ensure(region, slot, "once") for region in ("syd", "dfw") for slot in (1, 2, 3)]
    result = _execute(fleet, _plan(spec, *steps))

    assert result.outcome == "succeeded", result.error
    calls = fleet.requests_log()[before:]
    assert len(_live_volumes(fleet, "once")) == 6
    made = [r for r in calls if r["operation"] == "Volumes_create" and r["status"] == 200]
    assert len(made) == 6  # (some more were answered 429 and sent again)
    assert [r["operation"] for r in calls].count("Volumes_list") == 1


def test_a_health_gate_takes_no_slot_of_its_waves_concurrency(
    fleet: LocalFleet, spec: DeploySpec
) -> None:
    # One slot for the whole wave: ams's create (first in plan order), then dfw's create holds
    # it while ams's gate runs. A gate only reads; waiting for a slot would idle the wave.
    ams, dfw = _create(spec, "ams", 6), _create(spec, "dfw", 6)
    gate = Step(
        id=step_id("ams", StepKind.GATE_HEALTH),
        kind=StepKind.GATE_HEALTH,
        region="ams",
        wave=1,
        params={"slots": [6]},
    )
    plan = _plan(spec, ams, dfw, gate, edges=((ams.id, gate.id),))
    plan = Plan(
        app=plan.app,
        release=plan.release,
        waves=plan.waves,
        graph=plan.graph,
        wave_specs=(WaveSpec(index=1, regions=plan.waves[0], max_concurrency=1),),
    )

    result = _execute(fleet, plan)

    assert result.outcome == "succeeded", result.error
    report = {r.id: r for r in result.steps}
    assert report[ams.id].finished_at is not None
    assert report[dfw.id].started_at is not None
    # dfw waited for ams's slot; ams's gate did not wait for dfw's.
    assert report[dfw.id].started_at >= report[ams.id].finished_at
    assert report[gate.id].started_at is not None
    assert report[dfw.id].finished_at is not None
    assert report[gate.id].started_at < report[dfw.id].finished_at


def test_the_next_update_in_line_takes_its_lease_while_the_current_one_runs(
    fleet: LocalFleet, spec: DeploySpec
) -> None:
    created = _execute(fleet, _plan(spec, _create(spec, "dfw", 7), _create(spec, "dfw", 8)))
    assert created.outcome == "succeeded", created.error
    [first] = _slot_machines(fleet, "dfw", 7)
    [second] = _slot_machines(fleet, "dfw", 8)
    observed = _observe(fleet)
    seen = len(fleet.requests_log())
    a, b = _env_update(first, LOG_LEVEL="debug"), _env_update(second, LOG_LEVEL="debug")

    async def go() -> DeployResult:
        async with (
            FlyClient(fleet.endpoint.api_url, fleet.endpoint.token) as client,
            ProxyClient(fleet.endpoint.proxy_url, APP, host_header=True) as probe,
        ):
            with Journal.open(fleet.root) as journal:
                # One machine of dfw may be down at a time: the second update waits its turn.
                return await Executor(
                    client,
                    _plan(spec, a, b),
                    journal=journal,
                    probe=probe,
                    fleet=observed,
                    max_unavailable={"dfw": 1},
                ).run()

    result = asyncio.run(go())

    assert result.outcome == "succeeded", result.error
    report = {r.id: r for r in result.steps}
    assert report[b.id].started_at >= report[a.id].finished_at  # type: ignore[operator]
    log = fleet.requests_log()[seen:]

    def ops(machine: dict[str, Any]) -> list[tuple[str, datetime]]:
        path = f"/machines/{machine['id']}"
        return [
            (r["operation"], datetime.fromisoformat(r["time"]))
            for r in log
            if path in str(r.get("path"))
        ]

    first_ops, second_ops = ops(first), ops(second)
    # The second machine's lease was taken once, while the first machine was being updated,
    # and its update came next without another lease call.
    leases = [t for op, t in second_ops if op == "Machines_create_lease"]
    assert len(leases) == 1, second_ops
    first_release = next(t for op, t in first_ops if op == "Machines_release_lease")
    assert leases[0] < datetime.fromisoformat(str(report[a.id].finished_at))
    assert leases[0] < first_release
    assert [op for op, _ in second_ops][:2] == ["Machines_create_lease", "Machines_update"]
