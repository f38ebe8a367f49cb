"""The command line, end to end: `invoke ...` in a copy of the sample fleet, on a real local Fly.

The tests of this module share one fleet directory and one local Fly, and run in file order as
one story: bad input first (nothing may be sent), then a first deploy of syd, a re-run that
changes nothing, a rolling update to v2 that keeps the data, dfw seeded from syd, and a release
that fails its health checks. Every process is stopped by PID at the end, even on failure.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from execute.localfleet import (
    APP,
    LocalFleet,
    copy_fleet,
    hold_lock,
    leftover_processes,
    wait_for,
)

pytestmark = pytest.mark.timeout(600)

V2 = "registry.fly.io/sample-app:v2"
UNHEALTHY = "registry.fly.io/sample-app:v3-unhealthy"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    """Copy the sample fleet outside the repo and run a local Fly for it."""
    root = copy_fleet(tmp_path_factory.mktemp("tasks") / "fleet")
    # Checks polled every 0.2 s instead of every second: the same steps, shorter waits.
    (root / "invoke.yaml").write_text("orchestrator:\n  poll: 0.2\n")
    local = LocalFleet.start(root)
    try:
        yield local
    finally:
        local.stop()


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.stdout.lstrip().startswith("{"), proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def _journal_steps(root: Path, run: int) -> dict[str, sqlite3.Row]:
    db = sqlite3.connect(root / ".orchestrator" / "journal.db")
    db.row_factory = sqlite3.Row
    try:
        rows = db.execute("SELECT * FROM steps WHERE run = ?", (run,)).fetchall()
    finally:
        db.close()
    return {r["step_id"]: r for r in rows}


# -- bad input ----------------------------------------------------------------------------------


def _broken_copy(fleet: LocalFleet, tmp_path: Path) -> Path:
    """Copy the fleet's files into tmp_path, sharing the fleet's local Fly (its state dir)."""
    root = copy_fleet(tmp_path / "broken")
    (root / ".localfly").symlink_to(fleet.state_dir, target_is_directory=True)
    return root


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


BAD_INPUT = {
    "unknown region": (None, ["deploy", "--region", "xyz"], "--region"),
    "memory beyond the preset": (
        lambda root: _replace(root / "regions/syd.toml", "memory_mb = 256", "memory_mb = 4096"),
        ["deploy", "--region", "syd"],
        "regions/syd.toml",
    ),
    "negative count": (
        lambda root: _replace(root / "regions/dfw.toml", "count = 2", "count = -1"),
        ["deploy", "--region", "dfw"],
        "regions/dfw.toml",
    ),
    "malformed TOML": (
        lambda root: (root / "fly.toml").write_text('app = "sample-fleet"\n[build\nimage = 1\n'),
        ["deploy", "--region", "syd"],
        "fly.toml",
    ),
    "region file in no wave": (
        lambda root: (root / "regions/ord.toml").write_text(
            (root / "regions/ams.toml").read_text()
        ),
        ["deploy"],
        "ord",
    ),
    "unknown plan format": (None, ["plan", "--format", "yaml"], "--format"),
    "PromQL window past the bake": (
        lambda root: (root / "regions/waves.toml").write_text(
            (root / "regions/waves.toml").read_text()
            + '[prometheus]\n  url = "local"\n[[defaults.query]]\n  name = "up"\n'
            + '  query = "sum(up)"\n  threshold = 1\n  window = "1m"\n'
        ),
        ["deploy", "--region", "syd"],
        "regions/waves.toml: defaults.query[1].window",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_exits_2_with_one_line_and_sends_nothing(
    fleet: LocalFleet, tmp_path: Path, case: str
) -> None:
    edit, args, names = BAD_INPUT[case]
    root = _broken_copy(fleet, tmp_path)
    if edit is not None:
        edit(root)
    before = len(fleet.mutating_requests())

    proc = fleet.invoke(*args, cwd=root)

    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert names in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert len(fleet.mutating_requests()) == before


# -- the deploy story ---------------------------------------------------------------------------


def test_deploy_syd_creates_two_volumes_and_two_machines(fleet: LocalFleet) -> None:
    proc = fleet.invoke("deploy", "--region", "syd")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    machines = fleet.machines("syd")
    assert len(machines) == 2
    assert all(m["state"] == "started" for m in machines)
    assert {m["config"]["metadata"]["orch_slot"] for m in machines} == {"1", "2"}
    volumes = fleet.volumes("syd")
    assert len(volumes) == 2
    mounted = {m["config"]["mounts"][0]["volume"] for m in machines}
    assert mounted == {v["id"] for v in volumes}
    assert "syd:gate.health" in proc.stdout
    assert "succeeded" in proc.stdout


def test_deploying_again_changes_nothing_and_says_so(fleet: LocalFleet) -> None:
    before = len(fleet.mutating_requests())

    text = fleet.invoke("deploy", "--region", "syd")
    as_json = fleet.invoke("deploy", "--region", "syd", "--json")

    assert text.returncode == 0, text.stdout + text.stderr
    assert "Nothing to change" in text.stdout
    assert as_json.returncode == 0, as_json.stderr
    result = _json(as_json)
    assert result["outcome"] == "noop"
    assert result["mutating_steps"] == 0
    assert result["error"] is None
    assert len(fleet.mutating_requests()) == before


def test_a_second_deploy_is_refused_and_names_the_holder(fleet: LocalFleet) -> None:
    with hold_lock(fleet.root, fleet.endpoint, release="v9-test", command="deploy"):
        proc = fleet.invoke("deploy", "--region", "syd")
    assert proc.returncode == 1
    assert "locked" in proc.stderr
    assert f"pid {os.getpid()}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_update_to_v2_goes_one_machine_at_a_time_and_keeps_the_records(fleet: LocalFleet) -> None:
    written = [f"before-v2-{i}" for i in range(3)]
    for data in written:
        fleet.write_record(data, region="syd")

    proc = fleet.invoke("deploy", "--region", "syd", "--image", V2, "--json")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = _json(proc)
    assert result["outcome"] == "succeeded"
    assert result["mutating_steps"] == 2
    for step in result["steps"]:
        assert set(step) >= {"id", "kind", "region", "wave", "started_at", "finished_at", "outcome"}
    # How long the wave was expected to take, beside how long it took.
    [wave] = result["waves"]
    assert wave["regions"] == ["syd"]
    assert wave["expected_s"] > 0
    assert wave["actual_s"] >= wave["expected_s"] * 0.5
    machines = fleet.machines("syd")
    assert {m["config"]["image"] for m in machines} == {V2}
    # max_unavailable = 1: the spearhead finished before the other update started (the
    # machine holding the primary role goes last, whichever slot it has).
    steps = _journal_steps(fleet.root, result["run"])
    updates = [steps["syd:machine.update:1"], steps["syd:machine.update:2"]]
    first, second = sorted(updates, key=lambda s: s["started_at"])
    assert first["outcome"] == second["outcome"] == "succeeded"
    assert first["finished_at"] <= second["started_at"]
    # The records are still there, on the writer and on its follower.
    for machine in machines:
        wait_for(
            lambda m=machine: set(written) <= {r["data"] for r in fleet.records(m["id"])},
            timeout=30,
            what=f"the records on {machine['id']}",
        )


def test_deploy_dfw_forks_syd_volumes_with_their_records(fleet: LocalFleet) -> None:
    marker = "seeded-from-syd"
    fleet.write_record(marker, region="syd")
    syd_volumes = {v["id"] for v in fleet.volumes("syd")}

    proc = fleet.invoke("deploy", "--region", "dfw")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    dfw = fleet.machines("dfw")
    assert len(dfw) == 2
    dfw_volumes = fleet.volumes("dfw")
    assert len(dfw_volumes) == 2
    # Each dfw volume was created as a fork of a syd volume...
    for volume in dfw_volumes:
        sources = [
            v for v in syd_volumes if f"forked volume {volume['id']} from {v}" in proc.stdout
        ]
        assert sources, f"{volume['id']} is not a fork of a syd volume:\n{proc.stdout}"
    # ...and the app on each dfw machine serves syd's records.
    for machine in dfw:
        wait_for(
            lambda m=machine: marker in {r["data"] for r in fleet.records(m["id"])},
            timeout=30,
            what=f"{marker!r} on dfw machine {machine['id']}",
        )
    assert syd_volumes == {v["id"] for v in fleet.volumes("syd")}


def test_status_json_has_the_documented_shape(fleet: LocalFleet) -> None:
    proc = fleet.invoke("status", "--json")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    status = _json(proc)
    assert status["app"] == APP
    assert status["backend"] == "local"
    assert set(status["regions"]) == {"syd", "dfw"}
    primary = fleet.primary("syd")
    roles = {}
    for code, region in status["regions"].items():
        for m in region["machines"]:
            assert set(m) >= {
                "id",
                "state",
                "release",
                "image",
                "checks_passing",
                "role",
                "cpu_kind",
                "cpus",
                "memory_mb",
                "volume",
            }
            assert m["checks_passing"] is True
            assert set(m["volume"]) == {"id", "size_gb"}
            roles.setdefault(code, set()).add(m["role"])
    # One writer, in the primary region; everything else follows it.
    assert roles == {"syd": {"primary", "replica"}, "dfw": {"replica"}}
    [writer] = [m for m in status["regions"]["syd"]["machines"] if m["role"] == "primary"]
    assert writer["id"] == primary


def test_plan_json_is_identical_across_runs(fleet: LocalFleet) -> None:
    first = fleet.invoke("plan", "--format", "json")
    second = fleet.invoke("plan", "--format", "json")

    assert first.returncode == second.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    plan = json.loads(first.stdout)
    assert set(plan) >= {"release", "waves", "steps"}
    assert plan["waves"] == [["syd"], ["dfw", "ams"]]
    for step in plan["steps"]:
        assert set(step) >= {"id", "kind", "region", "machine", "wave", "mutating", "depends_on"}


def _step_started(root: Path, step: str) -> bool:
    db = sqlite3.connect(root / ".orchestrator" / "journal.db")
    try:
        row = db.execute(
            "SELECT s.started_at FROM steps s JOIN releases r ON r.run = s.run"
            " WHERE s.step_id = ? ORDER BY s.run DESC LIMIT 1",
            (step,),
        ).fetchone()
    except sqlite3.OperationalError:
        return False  # the journal's tables are not there yet
    finally:
        db.close()
    return row is not None and row[0] is not None


def test_a_deploy_killed_mid_create_is_resumed_without_duplicates(fleet: LocalFleet) -> None:
    proc = fleet.spawn("deploy", "--region", "ams")
    try:
        wait_for(
            lambda: _step_started(fleet.root, "ams:machine.create:1"),
            timeout=120,
            every=0.02,
            what="the ams create to start",
        )
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    db = sqlite3.connect(fleet.root / ".orchestrator" / "journal.db")
    try:
        killed, finished = db.execute(
            "SELECT run, finished_at FROM releases ORDER BY run DESC LIMIT 1"
        ).fetchone()
    finally:
        db.close()
    assert finished is None

    resumed = fleet.invoke("deploy", "--resume")

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming run {killed}" in resumed.stdout
    assert "stale lock" in resumed.stdout
    assert "ams:gate.health" in resumed.stdout
    [machine] = fleet.machines("ams")
    assert machine["state"] == "started"
    [volume] = fleet.volumes("ams")
    assert machine["config"]["mounts"][0]["volume"] == volume["id"]
    db = sqlite3.connect(fleet.root / ".orchestrator" / "journal.db")
    try:
        (resumed_from,) = db.execute(
            "SELECT resumed_from FROM releases ORDER BY run DESC LIMIT 1"
        ).fetchone()
    finally:
        db.close()
    assert resumed_from == killed


def test_a_release_failing_its_checks_exits_1_naming_machine_and_check(fleet: LocalFleet) -> None:
    before = {m["id"]: m["config"]["image"] for m in fleet.machines("dfw")}
    proc = fleet.invoke("deploy", "--region", "dfw", "--image", UNHEALTHY)

    assert proc.returncode == 1, proc.stdout + proc.stderr
    spearhead = fleet.machines("dfw")[0]
    error, rolled_back = proc.stderr.strip().splitlines()
    assert error.startswith("error: dfw:machine.update:1:")
    assert spearhead["id"] in error
    assert "check 'servicecheck-00-http-8080'" in error
    assert rolled_back.startswith("rolled back dfw to ")
    assert "Traceback" not in proc.stdout + proc.stderr
    # The journal has it: the spearhead failed with the error, the rest was skipped, and the
    # wave's on_failure (rollback_wave) put dfw back in a rollback run of its own.
    db = sqlite3.connect(fleet.root / ".orchestrator" / "journal.db")
    try:
        run, outcome, run_error = db.execute(
            "SELECT run, outcome, error FROM releases WHERE command = 'deploy'"
            " ORDER BY run DESC LIMIT 1"
        ).fetchone()
        rollback_outcome, rollback_of = db.execute(
            "SELECT outcome, rollback_of FROM releases ORDER BY run DESC LIMIT 1"
        ).fetchone()
    finally:
        db.close()
    assert outcome == "rolled_back"
    assert "check 'servicecheck-00-http-8080'" in run_error
    assert (rollback_outcome, rollback_of) == ("succeeded", run)
    steps = _journal_steps(fleet.root, run)
    assert steps["dfw:machine.update:1"]["outcome"] == "failed"
    assert spearhead["id"] in steps["dfw:machine.update:1"]["error"]
    assert steps["dfw:machine.update:2"]["outcome"] == "skipped"
    # Both machines run what they ran before, and status says the region is healthy again.
    assert {m["id"]: m["config"]["image"] for m in fleet.machines("dfw")} == before
    status = fleet.invoke("status", "--region", "dfw")
    assert status.returncode == 0, status.stdout + status.stderr


def _deploy_runs(root: Path) -> list[tuple[int, str]]:
    path = root / ".orchestrator" / "journal.db"
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    try:
        rows = db.execute(
            "SELECT run, outcome FROM releases WHERE command = 'deploy' ORDER BY run"
        ).fetchall()
    finally:
        db.close()
    return [(int(run), str(outcome)) for run, outcome in rows]


def test_the_token_is_in_no_output_journal_or_lock(fleet: LocalFleet) -> None:
    token = fleet.endpoint.token
    runs_before = _deploy_runs(fleet.root)
    outputs = [fleet.invoke("status", "--json"), fleet.invoke("deploy", "--region", "syd")]

    # Both commands really ran and talked to the local Fly (a command that failed early
    # would leak nothing and prove nothing).
    status, deploy = outputs
    assert status.returncode == 0, status.stdout + status.stderr
    assert _json(status)["app"] == APP
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    runs_after = _deploy_runs(fleet.root)
    assert len(runs_after) == len(runs_before) + 1
    assert runs_after[-1][1] in ("succeeded", "noop")
    for proc in outputs:
        assert token not in proc.stdout + proc.stderr
    # journal.db and its WAL (the deploy lock lives on Fly, not in a file)
    written = [p for p in (fleet.root / ".orchestrator").iterdir() if p.is_file()]
    assert any(p.name == "journal.db" for p in written)
    for path in written:
        assert token.encode() not in path.read_bytes(), path


def test_local_down_leaves_no_process(fleet: LocalFleet) -> None:
    proc = fleet.invoke("local.down")

    assert proc.returncode == 0, proc.stderr
    wait_for(
        lambda: not leftover_processes(fleet.state_dir),
        timeout=30,
        what="every local Fly process to end",
    )


def test_plan_says_how_long_the_rollout_should_take(fleet: LocalFleet) -> None:
    shown = fleet.invoke("plan", "--image", "registry.fly.io/sample-app:v9")

    assert shown.returncode == 0, shown.stderr
    # The whole rollout and each wave, from the local Fly's profile.
    assert re.search(r"expected \d+(m \d\ds|s) \(the local Fly's \w+ profile", shown.stdout)
    assert re.search(r"wave 1  ~\d+", shown.stdout), shown.stdout
    assert re.search(r"wave 2  ~\d+", shown.stdout), shown.stdout
