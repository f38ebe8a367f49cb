"""Staged global rollouts end to end: `invoke deploy` in waves, gates, automatic rollback, the lock.

One copy of the sample fleet (syd: 2 machines, primary; dfw: 2; ams: 1; waves [syd], [dfw, ams];
0.5 s bake) and its local Fly serve the whole module, as one story run in file order: a first
deploy in waves, a good release v2, a dry run, `invoke rollback` to v1 and ams forward to v2 again,
two deploys of v3 racing for the lock, a release that fails its health checks only in dfw (wave
2 rolls back), and one whose error rate breaks the metrics gate in syd (syd rolls back). Every
process is stopped by PID at the end, even on failure.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from execute.localfleet import LocalFleet, wait_for

from .helpers import (
    V1,
    assert_counts,
    assert_on,
    assert_records,
    journal,
    release_of,
    releases_by_region,
    run_json,
    set_env,
    start_rollout_fleet,
    write_records,
)

pytestmark = pytest.mark.timeout(600)

V2 = "registry.fly.io/sample-app:v2"
V3 = "registry.fly.io/sample-app:v3"
V4 = "registry.fly.io/sample-app:v4"
V5 = "registry.fly.io/sample-app:v5"
ALL = ("syd", "dfw", "ams")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    """The sample fleet deployed at v1 in waves, with its local Fly."""
    local = start_rollout_fleet(tmp_path_factory.mktemp("rollout") / "fleet")
    try:
        first = local.invoke("deploy")
        assert first.returncode == 0, first.stdout + first.stderr
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def records(fleet: LocalFleet) -> list[str]:
    """Records written on v1, before any other release (every later test checks them)."""
    return write_records(fleet, "v1-era")


@pytest.fixture(scope="module")
def v2(fleet: LocalFleet, records: list[str]) -> dict[str, Any]:
    """``invoke deploy --image v2 --json`` over the whole fleet: the good release."""
    code, result, err = run_json(fleet, "deploy", "--image", V2)
    assert code == 0, err
    return dict(result)


def _steps(run: int, fleet: LocalFleet) -> list[Any]:
    return journal(fleet, "SELECT * FROM steps WHERE run = ?", run)


def test_a_good_release_starts_wave_2_only_after_wave_1_gates_passed(
    fleet: LocalFleet, v2: dict[str, Any], records: list[str]
) -> None:
    assert v2["outcome"] == "succeeded"
    steps = _steps(v2["run"], fleet)
    wave1_gates = [s for s in steps if s["wave"] == 1 and s["kind"].startswith("gate.")]
    wave2 = [s for s in steps if s["wave"] == 2]
    # The data-health gate opens each wave; the health and metrics gates close it.
    assert {s["kind"] for s in wave1_gates} == {"gate.data", "gate.health", "gate.metrics"}
    assert all(s["outcome"] == "succeeded" for s in steps)
    assert {s["region"] for s in wave2} == {"dfw", "ams"}
    # ISO 8601 UTC with microseconds sorts as time does.
    assert max(s["finished_at"] for s in wave1_gates) <= min(s["started_at"] for s in wave2)
    # The metrics gate measured real traffic and wrote its figures to the journal.
    [metrics] = [s for s in wave1_gates if s["kind"] == "gate.metrics"]
    figures = json.loads(metrics["result"])["metrics"]
    assert figures["passed"] is True
    assert figures["requests"] > 0
    assert figures["error_rate"] <= 0.05
    assert "error rate" in metrics["detail"]
    rel2 = release_of(fleet, V2)
    assert_on(fleet, {r: (V2, rel2) for r in ALL})
    assert_counts(fleet)
    assert_records(fleet, records)


def test_deploy_json_lists_every_step_with_its_wave_and_timestamps(v2: dict[str, Any]) -> None:
    assert set(v2) >= {"release", "outcome", "mutating_steps", "steps", "error"}
    assert v2["error"] is None
    assert v2["rollback"] is None
    assert v2["mutating_steps"] == 5
    waves = {"syd": 1, "dfw": 2, "ams": 2}
    for step in v2["steps"]:
        assert set(step) >= {
            "id",
            "kind",
            "region",
            "wave",
            "started_at",
            "finished_at",
            "outcome",
            "phase",
        }
        assert step["wave"] == waves[step["region"]]
        assert step["phase"] == "deploy"
        assert step["started_at"].endswith("Z")
        assert step["started_at"] <= step["finished_at"]
    kinds = [s["kind"] for s in v2["steps"]]
    assert kinds.count("machine.update") == 5
    assert kinds.count("gate.metrics") == 3


def test_dry_run_prints_the_waves_and_their_steps_and_changes_nothing(
    fleet: LocalFleet, v2: dict[str, Any]
) -> None:
    before = len(fleet.mutating_requests())

    proc = fleet.invoke("deploy", "--dry-run", "--image", V3)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    # The region's own line (a wave's data gate names the replica regions it reads).
    assert out.index("wave 1") < out.index("syd") < out.index("wave 2") < out.index("── dfw")
    assert "on failure: rollback_wave" in out
    assert "spearhead" in out
    assert "gate.metrics" in out
    assert "Dry run: nothing was changed." in out
    assert len(fleet.mutating_requests()) == before


def test_rollback_puts_the_previous_release_back_then_a_named_one(
    fleet: LocalFleet, v2: dict[str, Any], records: list[str]
) -> None:
    rel1, rel2 = release_of(fleet, V1), release_of(fleet, V2)

    code, back, err = run_json(fleet, "rollback")

    assert code == 0, err
    assert back["outcome"] == "succeeded"
    assert back["release"] == rel1
    assert all(s["phase"] == "rollback" for s in back["steps"])
    assert_on(fleet, {r: (V1, rel1) for r in ALL})
    [run] = journal(fleet, "SELECT command, release FROM releases WHERE run = ?", back["run"])
    assert (run["command"], run["release"]) == ("rollback", rel1)
    assert_records(fleet, records)

    # A release the journal does not know is bad input, named in one line; nothing changes.
    unknown = fleet.invoke("rollback", "--to", "v9")
    assert unknown.returncode == 2, unknown.stdout + unknown.stderr
    [line] = unknown.stderr.strip().splitlines()
    assert line.startswith("error: --to: no release 'v9' on Fly or in the journal; known: ")
    assert rel1 in line

    # Forward again in one region, naming the release by its tag.
    code, forward, err = run_json(fleet, "rollback", "--to", "v2", "--region", "ams")

    assert code == 0, err
    assert forward["release"] == rel2
    assert {s["region"] for s in forward["steps"]} == {"ams"}
    assert_on(fleet, {"syd": (V1, rel1), "dfw": (V1, rel1), "ams": (V2, rel2)})
    assert_counts(fleet)
    assert_records(fleet, records)


def test_two_concurrent_deploys_one_proceeds_the_other_fails_fast_naming_it(
    fleet: LocalFleet,
) -> None:
    rel3 = release_of(fleet, V3)
    procs = [fleet.spawn("deploy", "--image", V3, capture=True) for _ in range(2)]
    try:
        loser = wait_for(
            lambda: next((p for p in procs if p.poll() is not None), None),
            timeout=60,
            every=0.05,
            what="one of the two deploys to end",
        )
        [winner] = [p for p in procs if p is not loser]
        # Refused without waiting for the lock: the other deploy still runs.
        winner_running = winner.poll() is None
        _, loser_err = loser.communicate(timeout=30)
        winner_out, winner_err = winner.communicate(timeout=240)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)

    assert loser.returncode == 1, loser_err
    assert winner_running, "the refused deploy ended only after the other one"
    assert "locked" in loser_err
    assert f"pid {winner.pid}" in loser_err
    assert socket.gethostname() in loser_err
    assert rel3 in loser_err
    assert "Traceback" not in loser_err
    assert winner.returncode == 0, winner_out + winner_err
    assert_on(fleet, {r: (V3, rel3) for r in ALL})


def test_a_release_failing_health_only_in_dfw_rolls_wave_2_back(
    fleet: LocalFleet, records: list[str]
) -> None:
    rel3 = release_of(fleet, V3)
    more = write_records(fleet, "v3-era")
    set_env(fleet, {"SAMPLE_APP_FAIL_HEALTH_REGIONS": "dfw"})
    try:
        rel4 = release_of(fleet, V4)
        code, result, err = run_json(fleet, "deploy", "--image", V4)
    finally:
        set_env(fleet)

    assert code == 1, err
    assert result["outcome"] == "rolled_back"
    failed = [s for s in result["steps"] if s["outcome"] == "failed"]
    assert [s["region"] for s in failed] == ["dfw"]
    assert "check 'servicecheck-00-http-8080'" in failed[0]["error"]
    rollback = result["rollback"]
    assert rollback["policy"] == "rollback_wave"
    assert rollback["regions"] == ["dfw", "ams"]
    assert rollback["release"] == rel3
    assert rollback["outcome"] == "succeeded"
    assert result["error"] == rollback["reason"] == failed[0]["error"]
    undone = {s["region"] for s in result["steps"] if s["phase"] == "rollback"}
    assert undone == {"dfw", "ams"}
    assert "rolled back dfw, ams" in err
    # syd passed its gates in wave 1 and keeps the new release, as the policy says.
    assert_on(fleet, {"syd": (V4, rel4), "dfw": (V3, rel3), "ams": (V3, rel3)})
    assert_counts(fleet)
    assert_records(fleet, [*records, *more])


def test_a_release_breaking_the_error_rate_is_rolled_back_by_the_metrics_gate(
    fleet: LocalFleet, records: list[str]
) -> None:
    before = releases_by_region(fleet)
    set_env(fleet, {"SAMPLE_APP_ERROR_RATE": "0.5"})
    try:
        code, result, err = run_json(fleet, "deploy", "--image", V5)
    finally:
        set_env(fleet)

    assert code == 1, err
    assert result["outcome"] == "rolled_back"
    [failed] = [s for s in result["steps"] if s["outcome"] == "failed"]
    assert failed["id"] == "syd:gate.metrics"
    assert "error rate" in failed["error"]
    assert result["rollback"]["policy"] == "rollback_region"
    assert result["rollback"]["regions"] == ["syd"]
    # Wave 2 never started.
    assert all(s["outcome"] == "skipped" for s in result["steps"] if s["wave"] == 2)
    [gate] = journal(
        fleet,
        "SELECT result FROM steps WHERE run = ? AND step_id = 'syd:gate.metrics'",
        result["run"],
    )
    figures = json.loads(gate["result"])["metrics"]
    assert figures["passed"] is False
    assert figures["error_rate"] > 0.05
    assert figures["requests"] > 0
    # syd is back on what it ran before; dfw and ams were never touched.
    assert releases_by_region(fleet) == before
    assert_counts(fleet)
    assert_records(fleet, records)
