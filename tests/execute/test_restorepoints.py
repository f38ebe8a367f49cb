"""The data features end to end on one small fleet: rehearsals, restore points, the drill-age
warning and the data-health gate.

One local Fly (fast profile), two machines in syd and one in dfw (ams emptied): v1 with
records; rehearsals (one killed); v2 (snapshots first), more records, the rollback with the
data; last, a dfw machine made to lag holds a deploy. Everything goes through ``invoke`` and
HTTP. The tests run in file order and share the fleet.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import tarfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from rollout.helpers import start_rollout_fleet

from execute.localfleet import APP, LocalFleet, wait_for
from orchestrator.drill.history import DrillRecord, record_drill

V2 = "registry.fly.io/sample-app:v2"


def _digest(records: Sequence[Mapping[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(list(records), sort_keys=True).encode()).hexdigest()


def _images(fleet: LocalFleet) -> dict[str, str]:
    return {m["id"]: m["config"]["image"] for m in fleet.machines()}


def _shape(fleet: LocalFleet) -> list[tuple[str, str, str, str]]:
    """Return each syd machine's id, version, image and volume."""
    return [
        (m["id"], m["version"], m["config"]["image"], m["config"]["mounts"][0]["volume"])
        for m in fleet.machines("syd")
    ]


def _tables_digest(data_dir: Path) -> str:
    """Digest the sample app's records and set-aside records in a copy of its data dir."""
    db = sqlite3.connect(data_dir / "records.db")
    try:
        rows = [
            *db.execute("SELECT 'r', seq, data, at FROM records ORDER BY seq"),
            *db.execute("SELECT 'o', seq, data, at FROM orphaned_records ORDER BY seq, at"),
        ]
    finally:
        db.close()
    assert rows, f"no records in {data_dir}"
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def _set(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    """Two syd machines and one dfw machine at v1, 5 records; an RPO budget of 1 record, 60 s."""
    local = start_rollout_fleet(tmp_path_factory.mktemp("restore") / "fleet")
    try:
        regions = local.root / "regions"
        _set(regions / "dfw.toml", "\ncount = 2\n", "\ncount = 1\n")
        _set(regions / "ams.toml", "\ncount = 1\n", "\ncount = 0\n")
        _set(regions / "waves.toml", "rpo_records = 20\n", "rpo_records = 1\n")
        _set(regions / "waves.toml", "rpo_seconds = 5\n", "rpo_seconds = 60\n")
        first = local.invoke("deploy")
        assert first.returncode == 0, first.stdout + first.stderr
        for i in range(5):
            local.write_record(f"before-{i}")
        yield local
    finally:
        local.stop()


def _fleet_shape(fleet: LocalFleet) -> tuple[list[tuple[str, str, str, str]], list[str]]:
    """Return every fleet machine's id, version, image and state, and every volume's id."""
    machines = [(m["id"], m["version"], m["config"]["image"], m["state"]) for m in fleet.machines()]
    return machines, [v["id"] for v in fleet.volumes()]


def _leftovers(fleet: LocalFleet) -> list[str]:
    """Return the live rehearsal machines and fork volumes."""
    machines = fleet.api("GET", "/v1/apps/sample-fleet/machines").json()
    found = [
        m["id"]
        for m in machines
        if (m["config"].get("metadata") or {}).get("orch_role") == "rehearsal"
        and m["state"] not in ("destroyed", "destroying")
    ]
    found += [v["id"] for v in fleet.volumes() if v["name"] == "rehearsal"]
    return found


def test_rehearse_runs_the_release_on_a_fork_and_leaves_the_fleet_exactly_as_it_was(
    fleet: LocalFleet,
) -> None:
    before = _fleet_shape(fleet)
    done = fleet.invoke("rehearse", "--region", "syd", "--image", V2, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    verdict = json.loads(done.stdout)
    assert verdict["verdict"] == "passed", verdict
    assert verdict["image"] == V2
    assert verdict["source_volume"] in before[1]
    assert verdict["fork"] not in before[1]
    assert verdict["health"]["last_seq"] == 5  # the fork holds the primary's records
    assert verdict["metrics"]["requests"] > 0
    assert verdict["metrics"]["error_rate"] <= verdict["metrics"]["max_error_rate"]
    # Outside the proxy's rotation: the balanced traffic never reached it.
    assert _fleet_shape(fleet) == before
    assert _leftovers(fleet) == []


def test_a_rehearsal_killed_midway_is_cleaned_up_by_the_next_rehearse(fleet: LocalFleet) -> None:
    before = _fleet_shape(fleet)
    killed = fleet.invoke(
        "rehearse", "--region", "syd", env={"ORCH_TEST_KILL_AT": "rehearsal_started"}
    )
    assert killed.returncode != 0
    left = _leftovers(fleet)
    assert len(left) == 2, left  # its machine and its fork
    fleet.invoke("unlock", "--force")  # the killed run's lock, as an operator would break it
    again = fleet.invoke("rehearse", "--region", "syd", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert set(json.loads(again.stdout)["cleaned"]) == set(left)
    assert _leftovers(fleet) == []
    assert _fleet_shape(fleet) == before


@pytest.fixture(scope="module")
def restore_point(fleet: LocalFleet) -> dict[str, Any]:
    """Deploy v2 to syd (restore points first), then write 3 records; return the figures."""
    primary = fleet.primary("syd")
    before = fleet.records(primary)
    machines = {m["id"]: m for m in fleet.machines("syd")}
    # The last passing drill of syd is 40 days old: over [drill] max_age (30 days by default).
    record_drill(fleet.root, DrillRecord("syd", "syd", "passed", time.time() - 40 * 86400))
    # A rehearsal killed midway: the deploy cleans up what it left.
    fleet.invoke("rehearse", "--region", "syd", env={"ORCH_TEST_KILL_AT": "rehearsal_started"})
    left = _leftovers(fleet)
    fleet.invoke("unlock", "--force")
    deployed = fleet.invoke("deploy", "--region", "syd", "--image", V2)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert len(left) == 2
    assert _leftovers(fleet) == []
    for i in range(3):
        fleet.write_record(f"after-{i}")
    listed = fleet.invoke("releases", "--json")
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)["releases"]
    said = deployed.stdout + deployed.stderr
    return {
        "records": before,
        "machines": machines,
        "entries": entries,
        "said": said,
        "left": left,
    }


def test_a_deploy_snapshots_each_syd_volume_first_and_releases_lists_them(
    fleet: LocalFleet, restore_point: dict[str, Any]
) -> None:
    newest = restore_point["entries"][0]
    assert newest["release"].startswith("v2-")
    points = newest["restore_points"]
    machines = restore_point["machines"]
    assert {p["machine"] for p in points} == set(machines)
    for p in points:
        assert p["volume"] == machines[p["machine"]]["config"]["mounts"][0]["volume"]
        assert p["last_seq"] == 5
        assert p["release_before"].startswith("v1-")
        snaps = fleet.api("GET", f"/v1/apps/sample-fleet/volumes/{p['volume']}/snapshots").json()
        assert [s["digest"] for s in snaps if s["id"] == p["snapshot"]] == [p["digest"]]
    table = fleet.invoke("releases")
    assert "restore points" in table.stdout
    assert all(p["snapshot"] in table.stdout for p in points)


def test_a_deploy_warns_when_the_primarys_last_passing_drill_is_older_than_max_age(
    restore_point: dict[str, Any],
) -> None:
    said = " ".join(restore_point["said"].split())
    assert f"destroyed what a killed rehearsal left: {', '.join(restore_point['left'])}" in said
    assert "the last passing drill of the primary region syd was 40 days ago" in said
    assert "max_age 30 days" in said


def test_restore_data_needs_yes_without_a_terminal_and_changes_nothing(
    fleet: LocalFleet, restore_point: dict[str, Any]
) -> None:
    before = _shape(fleet)
    refused = fleet.invoke("rollback", "--region", "syd", "--restore-data")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "--yes" in refused.stderr
    assert "3 record(s) written since are lost" in refused.stderr
    assert _shape(fleet) == before


def test_rollback_restore_data_brings_back_the_restore_points_records_byte_for_byte(
    fleet: LocalFleet, restore_point: dict[str, Any], tmp_path: Path
) -> None:
    old = restore_point["machines"]
    old_volumes = {m["config"]["mounts"][0]["volume"] for m in old.values()}
    points = restore_point["entries"][0]["restore_points"]
    done = fleet.invoke("rollback", "--region", "syd", "--restore-data", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 record(s) written since are lost" in done.stderr

    now = fleet.machines("syd")
    assert len(now) == 2
    assert not {m["id"] for m in now} & set(old)  # replaced: a mount cannot change in place
    assert all(m["config"]["image"].endswith(":v1") for m in now)
    restored = {m["config"]["mounts"][0]["volume"] for m in now}
    assert not restored & old_volumes
    # Each restored volume holds its snapshot's data files, byte for byte: the records and
    # the set-aside records read from a copy of each, digested the same way.
    state = fleet.state_dir
    for p in points:
        slot = str(p["slot"])
        machine = next(m for m in now if m["config"]["metadata"]["orch_slot"] == slot)
        volume = machine["config"]["mounts"][0]["volume"]
        snapped = tmp_path / p["snapshot"]
        with tarfile.open(state / "snapshots" / f"{p['snapshot']}.tar") as tar:
            tar.extractall(snapped, filter="data")
        copy = tmp_path / volume
        shutil.copytree(state / "volumes" / volume / "data", copy)
        assert _tables_digest(copy) == _tables_digest(snapped)
    # The app serves exactly the records of the restore point, from every syd machine.
    expected = _digest(restore_point["records"])
    for m in now:
        assert _digest(fleet.records(m["id"])) == expected
    # The old volumes are kept, and `invoke volumes` says why.
    listed = json.loads(fleet.invoke("volumes", "--json").stdout)["volumes"]
    kept = {v["id"]: v for v in listed if v["id"] in old_volumes}
    assert set(kept) == old_volumes
    assert {v["kept"]["reason"] for v in kept.values()} == {"restore"}


def test_a_replica_lagging_beyond_the_rpo_budget_holds_the_wave_then_fails_it(
    fleet: LocalFleet,
) -> None:
    slow = fleet.machines("dfw")[0]
    config = dict(slow["config"])
    config["env"] = {**config.get("env", {}), "SAMPLE_APP_REPLICATE_INTERVAL": "3600"}
    resp = fleet.api("POST", f"/v1/apps/{APP}/machines/{slow['id']}", json={"config": config})
    assert resp.status_code == 200, resp.text

    def answers() -> bool:
        got = fleet.app_request("GET", "/status", machine_id=slow["id"])
        return got.status_code == 200 and got.json().get("replication") is not None

    wait_for(answers, timeout=30, what="the slow dfw machine to start pulling")
    for i in range(3):
        fleet.write_record(f"unreplicated-{i}")
    before = _images(fleet)

    runtime = fleet.root.parent / "datagate-invoke.yaml"
    runtime.write_text("orchestrator:\n  lag_timeout: 3\n  poll: 0.2\n")
    held = fleet.invoke("-f", str(runtime), "deploy", "--image", V2)
    assert held.returncode == 1, held.stdout + held.stderr
    said = held.stdout + held.stderr
    assert "wave 1 holds: dfw lags the primary by" in said
    assert "dfw lags the primary by 3 record(s)" in said
    assert "RPO budget 1 record(s), 60s" in said
    assert "wave 1 did not start" in said
    # Nothing changed: no machine of any region moved to v2.
    assert _images(fleet) == before
