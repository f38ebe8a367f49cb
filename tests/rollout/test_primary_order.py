"""The primary region's update order: replicas first, the leader last, and the write downtime.

One copy of the sample fleet with only its primary region deployed (syd: 2 machines on v1, one
of them the leader) serves the module. A deploy of v2 to syd with ``--measure-writes`` must
update the other machine first and the leader last, after it, so the leader hands writes over
to a machine already on v2 once; the deploy reports the longest span without an acknowledged
write. Every process is stopped by PID at the end, even on failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from execute.localfleet import LocalFleet

from .helpers import run_json, start_rollout_fleet

pytestmark = pytest.mark.timeout(300)

V2 = "registry.fly.io/sample-app:v2"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    """The sample fleet with syd deployed at v1, with its local Fly."""
    local = start_rollout_fleet(tmp_path_factory.mktemp("primary-order") / "fleet")
    try:
        first = local.invoke("deploy", "--region", "syd")
        assert first.returncode == 0, first.stdout + first.stderr
        yield local
    finally:
        local.stop()


def _slot_of(fleet: LocalFleet, machine_id: str) -> str:
    [m] = [m for m in fleet.machines("syd") if m["id"] == machine_id]
    return str(m["config"]["metadata"]["orch_slot"])


def test_the_leader_is_updated_last_and_the_write_downtime_is_reported(
    fleet: LocalFleet,
) -> None:
    leader = fleet.primary("syd")
    seq_before = fleet.write_record("before v2")
    leader_step = f"syd:machine.update:{_slot_of(fleet, leader)}"

    code, result, err = run_json(
        fleet, "deploy", "--region", "syd", "--image", V2, "--measure-writes"
    )

    assert code == 0, err
    assert result["outcome"] == "succeeded"
    updates = {s["id"]: s for s in result["steps"] if s["kind"] == "machine.update"}
    assert len(updates) == 2
    [other] = [sid for sid in updates if sid != leader_step]
    # The leader's update began only once the other machine ran v2.
    assert updates[other]["finished_at"] <= updates[leader_step]["started_at"]
    # The other machine, already on v2, took the writes over: one hand-off, not two.
    assert fleet.primary("syd") != leader
    downtime = result["write_downtime"]
    assert downtime["region"] == "syd"
    assert downtime["acked"] > 0
    assert downtime["attempted"] >= downtime["acked"]
    run_s = (
        datetime.fromisoformat(result["finished_at"]) - datetime.fromisoformat(result["started_at"])
    ).total_seconds()
    assert 0 < downtime["longest_gap_s"] < run_s
    gap_from = datetime.fromisoformat(downtime["gap_from"])
    gap_to = datetime.fromisoformat(downtime["gap_to"])
    assert (gap_to - gap_from).total_seconds() == pytest.approx(downtime["longest_gap_s"], abs=1e-3)
    # Every write the writer saw acknowledged is on the new primary; none was set aside.
    mine = [
        r
        for r in fleet.records(fleet.primary("syd"))
        if isinstance(r["data"], dict) and str(r["data"].get("drill", "")).startswith("deploy-")
    ]
    assert len(mine) == downtime["acked"]
    for m in fleet.machines("syd"):
        status = fleet.app_request("GET", "/status", machine_id=m["id"]).json()
        assert status["orphaned_records"] == 0, m["id"]
    # Writes go on after the deploy, numbered after those before it: nothing was lost.
    assert fleet.write_record("after v2") > seq_before + downtime["acked"]
