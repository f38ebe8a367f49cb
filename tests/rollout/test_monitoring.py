"""The primary region under a rollout: leader-aware order, write downtime, PromQL gates.

One copy of the sample fleet with only its primary region deployed (syd: 2 machines on v1, one
of them the leader, 20 ms per request) serves the module, with the local Fly's real Prometheus
(``[prometheus] url = "local"``) and a PromQL check on syd's wave: the mean latency of ``GET /``
at most 0.5 s, and at most twice the old release's. A stand-in for users sends ``GET /``
through the proxy all along, as real traffic would.

1. A deploy of v2 with ``--measure-writes`` updates the other machine first and the leader
   last, after it, so the leader hands writes over once, to a machine already on v2; the
   deploy reports the longest span without an acknowledged write, and loses none.
2. v3 answers in 60 ms: well under the absolute 0.5 s, but three times v2: the baseline
   comparison fails the gate and syd is rolled back to v2.

Every process (the local Fly, its machines, its Prometheus) is stopped by PID at the end.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest
from execute.localfleet import LocalFleet, wait_for

from orchestrator.localfly import prometheus

from .helpers import journal, releases_by_region, run_json, set_env, start_rollout_fleet

pytestmark = pytest.mark.timeout(300)

V2 = "registry.fly.io/sample-app:v2"
V3 = "registry.fly.io/sample-app:v3"
MEAN_LATENCY = (
    'sum(rate(http_request_duration_seconds_sum{app="$app",region="$region",path="/"}[$window]))'
    ' / sum(rate(http_request_duration_seconds_count{app="$app",region="$region",path="/"}'
    "[$window]))"
)
GATES = """
[prometheus]
  url = "local"
"""
WAVE_1_QUERY = f"""  bake_time = "3s"
  [[wave.query]]
    name = "mean latency"
    query = '{MEAN_LATENCY}'
    comparison = "<="
    threshold = 0.5
    window = "3s"
    baseline = 2
"""


class Users:
    """``GET /`` on syd through the proxy, a few times a second, until stopped."""

    def __init__(self, fleet: LocalFleet) -> None:
        self.fleet = fleet
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        headers = {"Host": "sample-fleet.fly.dev", "fly-prefer-region": "syd"}
        with httpx.Client(base_url=self.fleet.endpoint.proxy_url, timeout=5.0) as http:
            while not self.stop.wait(0.1):
                try:
                    http.get("/", headers=headers)
                except httpx.HTTPError:
                    pass  # a machine restarting: users retry later


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    """The sample fleet with syd deployed at v1 and PromQL gates, users sending requests."""
    local = start_rollout_fleet(tmp_path_factory.mktemp("monitoring") / "fleet")
    users = Users(local)
    try:
        set_env(local, {"SAMPLE_APP_LATENCY_MS": "20"})
        up = local.invoke("local.up", "--prometheus")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "Prometheus running" in up.stdout
        first = local.invoke("deploy", "--region", "syd")
        assert first.returncode == 0, first.stdout + first.stderr
        # The checks from now on: a first deploy has no old release to compare with.
        waves = local.root / "regions" / "waves.toml"
        text = waves.read_text().replace(
            '  regions = ["syd"]\n', '  regions = ["syd"]\n' + WAVE_1_QUERY, 1
        )
        waves.write_text(text + GATES)
        users.thread.start()
        yield local
    finally:
        users.stop.set()
        if users.thread.is_alive():
            users.thread.join(10)
        local.stop()
        assert prometheus.status(local.state_dir) is None


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
    # (A write cut off as the deploy ended may have landed unacknowledged: at least, not exactly.)
    assert len({r["data"]["n"] for r in mine}) >= downtime["acked"]
    for m in fleet.machines("syd"):
        status = fleet.app_request("GET", "/status", machine_id=m["id"]).json()
        assert status["orphaned_records"] == 0, m["id"]
    # Writes go on after the deploy, numbered after those before it: nothing was lost.
    assert fleet.write_record("after v2") > seq_before + downtime["acked"]


def test_a_release_three_times_slower_than_the_old_one_fails_the_baseline_and_rolls_back(
    fleet: LocalFleet,
) -> None:
    # The previous test left syd on v2 at 20 ms: the old release of this deploy.
    before = releases_by_region(fleet)["syd"]
    set_env(fleet, {"SAMPLE_APP_LATENCY_MS": "60"})
    try:
        code, result, err = run_json(fleet, "deploy", "--region", "syd", "--image", V3)
    finally:
        set_env(fleet, {"SAMPLE_APP_LATENCY_MS": "20"})

    assert code == 1, err
    assert result["outcome"] == "rolled_back"
    [failed] = [s for s in result["steps"] if s["outcome"] == "failed"]
    assert failed["id"] == "syd:gate.metrics"
    assert "the old release" in failed["error"]
    assert releases_by_region(fleet)["syd"] == before
    [gate] = journal(
        fleet,
        "SELECT result FROM steps WHERE run = ? AND step_id = 'syd:gate.metrics'",
        result["run"],
    )
    [check] = json.loads(gate["result"])["promql"]
    # Under the absolute bound, as the old release was; about three times slower than it.
    assert check["value"] < check["threshold"] == 0.5
    assert check["baseline_value"] < check["threshold"]
    assert 2.0 < check["ratio"] < 4.5
    assert check["passed"] is False
    # The figures came from the real Prometheus, scraping through the local Fly's targets.
    server = prometheus.status(fleet.state_dir)
    assert server is not None
    syd = {m["id"] for m in fleet.machines("syd")}
    listed = {t["labels"]["instance"]: t["labels"] for t in json.loads(server.targets.read_text())}
    assert syd <= set(listed)
    assert {listed[m]["version"] for m in syd} == {r for _, r in before}

    def scraped() -> bool:
        found = httpx.get(f"{server.url}/api/v1/targets", timeout=5).json()["data"]
        up = {t["labels"]["instance"] for t in found["activeTargets"] if t["health"] == "up"}
        return syd <= up

    # The machines the rollback restarted are found again (Prometheus re-reads within seconds).
    wait_for(scraped, timeout=30, what="Prometheus scraping every syd machine")
