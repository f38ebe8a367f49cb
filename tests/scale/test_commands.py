"""`invoke scale`, `status` and `logs` end to end, in a copy of the sample fleet on a local Fly.

The module's tests share one fleet (syd deployed, 2 machines) and run in file order as one story:
what `status` and `scale` show is what the API holds; bad flags change nothing; syd goes to 3
machines and back to 1, and the volumes left behind keep their records; a deploy afterwards is a
no-op; then the lock, a dry run, volume growth, usage, and logs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import pytest
from execute.localfleet import APP, INVOKE, REPO, LocalFleet, wait_for

from orchestrator.execute.lock import DeployLock

from .conftest import run_invoke

pytestmark = pytest.mark.timeout(300)

SIZE = ("count", "cpu_kind", "cpus", "memory_mb", "volume_size_gb")


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def _region_files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "regions").iterdir())}


def _api_log_size(fleet: LocalFleet) -> int:
    return len(fleet.requests_log())


def _api_calls_since(fleet: LocalFleet, mark: int) -> list[dict[str, Any]]:
    return [r for r in fleet.requests_log()[mark:] if str(r.get("path", "")).startswith("/v1")]


def _mutating(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in calls if c.get("mutating") or c.get("method") not in ("GET", "HEAD")]


def _guest(machine: dict[str, Any]) -> tuple[str, int, int]:
    g = machine["config"]["guest"]
    return (g["cpu_kind"], g["cpus"], g["memory_mb"])


# -- what status and scale show is what the API holds -------------------------------------------


def test_status_json_reports_what_the_local_fly_holds(fleet: LocalFleet) -> None:
    status = _json(fleet.invoke("status", "--json"))
    volumes = {v["id"]: v for v in fleet.volumes()}
    expected: dict[str, list[dict[str, Any]]] = {}
    for m in fleet.machines():
        checks = m.get("checks") or []
        mount = (m["config"].get("mounts") or [{}])[0]
        role = fleet.app_request("GET", "/status", machine_id=m["id"]).json()["role"]
        expected.setdefault(m["region"], []).append(
            {
                "id": m["id"],
                "state": m["state"],
                "release": m["config"]["metadata"]["fly_release_id"],
                "image": m["config"]["image"],
                "checks_passing": bool(checks) and all(c["status"] == "passing" for c in checks),
                "role": role,
                "cpu_kind": m["config"]["guest"]["cpu_kind"],
                "cpus": m["config"]["guest"]["cpus"],
                "memory_mb": m["config"]["guest"]["memory_mb"],
                "volume": {"id": mount["volume"], "size_gb": volumes[mount["volume"]]["size_gb"]},
            }
        )
    assert status["app"] == APP
    assert status["backend"] == "local"
    got = {
        code: [{k: m[k] for k in expected[code][0]} for m in region["machines"]]
        for code, region in status["regions"].items()
    }
    assert got == expected
    assert {m["role"] for m in got["syd"]} <= {"primary", "replica"}
    only = _json(fleet.invoke("status", "--region", "syd", "--json"))
    assert list(only["regions"]) == ["syd"]


def test_scale_shows_desired_beside_observed(fleet: LocalFleet) -> None:
    shown = _json(fleet.invoke("scale", "--json"))
    assert set(shown["regions"]) == {"syd", "dfw", "ams"}
    syd = shown["regions"]["syd"]
    for side in ("desired", "observed"):
        assert set(SIZE) <= set(syd[side])
    assert {k: syd["desired"][k] for k in SIZE} == {
        "count": 2,
        "cpu_kind": "shared",
        "cpus": 1,
        "memory_mb": 256,
        "volume_size_gb": 1,
    }
    machines = fleet.machines("syd")
    assert {k: syd["observed"][k] for k in (*SIZE, "volumes")} == {
        "count": len(machines),
        "cpu_kind": "shared",
        "cpus": 1,
        "memory_mb": 256,
        "volume_size_gb": 1,
        "volumes": len(fleet.volumes("syd")),
    }
    assert syd["drift"] == []
    # dfw has a file but no machines yet: drift on the count, sizes unknown.
    dfw = shown["regions"]["dfw"]
    assert dfw["observed"]["count"] == 0
    assert dfw["observed"]["cpu_kind"] is None
    assert dfw["drift"] == ["count"]
    table = fleet.invoke("scale", "--region", "syd")
    assert table.returncode == 0, table.stderr
    for word in ("COUNT", "KIND", "CPUS", "MEMORY", "VOLUME", "desired", "observed"):
        assert word in table.stdout
    assert "dfw" not in table.stdout


# -- bad flags change nothing -------------------------------------------------------------------

BAD_FLAGS = [
    ("--region syd --vm shared-cpu-1x --memory 4096", "--memory", "allowed 256\u20132048 MB"),
    ("--region syd --cpu 3", "--cpu", "allowed 1, 2, 4, 6, 8"),
    ("--region syd --vm performance-3x", "--vm", "performance-2x or performance-4x"),
    ("--region syd --memory 100", "--memory", "allowed 256\u20132048 MB"),
    ("--region syd --count -1", "--count", "from 0 to 1000"),
    ("--region xyz --count 2", "--region", "known regions are ams, arn"),
    ("--region lhr --count 2", "--region", "the fleet has ams, dfw, syd"),
    ("--count 2 --memory 512", "--region", "the fleet has ams, dfw, syd"),
    (
        "--region syd --count 3 --vm performance-4x --memory 4096",
        "--memory",
        "allowed 8192\u201332768 MB",
    ),
    ("--region syd --vm performance-1x --cpu 2 --memory 2048", "--memory", "4096"),
    ("--region syd --volume-size 0", "--volume-size", "from 1 to 500"),
    ("--region syd --count 0", "--count", "at least 1 machine"),
    ("--region syd --count three", "--count", "expected a whole number"),
    ("--region syd --dry-run", "--dry-run", "nothing to change"),
    ("--region syd --usage --count 2", "--usage", "only when showing"),
]


def test_bad_flags_exit_2_name_the_flag_and_change_nothing(
    fleet: LocalFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _region_files(fleet.root)
    mark = _api_log_size(fleet)
    # The installed command itself, once...
    proc = fleet.invoke("scale", *BAD_FLAGS[0][0].split())
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: --memory: 4096 MB is not allowed for shared-cpu-1x (1 shared CPU): "
        "allowed 256\u20132048 MB in steps of 256"
    ]
    assert proc.stdout == ""
    # ...and the whole table through the same parser and task, in-process.
    for flags, flag, allowed in BAD_FLAGS:
        code = run_invoke(f"invoke scale {flags}")
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert code == 2, (flags, out, err)
        assert len(lines) == 1, (flags, err)
        assert lines[0].startswith(f"error: {flag}: "), (flags, err)
        assert allowed in lines[0], (flags, err)
        assert out == "", (flags, out)
    assert _region_files(fleet.root) == files
    # Not a single API request, not even a read.
    assert _api_calls_since(fleet, mark) == []


# -- horizontal scaling keeps volumes and their data ---------------------------------------------


def _records_on_volume(fleet: LocalFleet, volume_id: str, scratch: Path) -> list[str]:
    """Return the ``data`` of every record in a volume's database (read from a copy)."""
    data = fleet.state_dir / "volumes" / volume_id / "data"
    copy = scratch / volume_id
    shutil.copytree(data, copy)
    db = sqlite3.connect(copy / "records.db")
    try:
        return [row[0] for row in db.execute("SELECT data FROM records ORDER BY seq")]
    finally:
        db.close()


def _write(fleet: LocalFleet, machine_id: str, data: str) -> None:
    """Write a record on ``machine_id``, or on the region's writer when it is not the one."""

    def written() -> bool:
        resp = fleet.app_request(
            "POST", "/records", machine_id=machine_id, json_body={"data": data}
        )
        if resp.status_code == 409:
            leader = resp.json().get("leader")
            resp = fleet.app_request(
                "POST", "/records", machine_id=leader, region="syd", json_body={"data": data}
            )
        return resp.status_code in (200, 201)

    wait_for(written, what=f"a record written for {machine_id}")


def _has_record(fleet: LocalFleet, machine_id: str, marker: str) -> bool:
    return any(marker in str(r.get("data")) for r in fleet.records(machine_id))


def test_scale_to_3_and_back_to_1_keeps_the_volumes_with_their_records(
    fleet: LocalFleet, tmp_path: Path
) -> None:
    before = (fleet.root / "regions" / "syd.toml").read_text()
    up = _json(fleet.invoke("scale", "--region", "syd", "--count", "3", "--json"))
    assert up["outcome"] == "succeeded"
    assert up["changes"]["syd"]["changes"] == [{"key": "count", "old": 2, "new": 3}]
    machines = fleet.machines("syd")
    assert len(machines) == 3
    assert all(m["state"] == "started" for m in machines)
    assert len(fleet.volumes("syd")) == 3

    # A record per machine, written through the proxy; a machine that is not the writer gets
    # its record from the primary and must replicate it.
    markers = {m["id"]: f"kept-{m['id']}-{uuid.uuid4().hex[:6]}" for m in machines}
    for m in machines:
        _write(fleet, m["id"], markers[m["id"]])
    for m in machines:
        wait_for(lambda m=m: _has_record(fleet, m["id"], markers[m["id"]]), what="the record")

    volume_of = {m["id"]: m["config"]["mounts"][0]["volume"] for m in machines}
    down = _json(fleet.invoke("scale", "--region", "syd", "--count", "1", "--json"))
    assert down["outcome"] == "succeeded"
    destroyed = [s for s in down["steps"] if s["kind"] == "machine.destroy"]
    assert [s["id"] for s in destroyed] == ["syd:machine.destroy:3", "syd:machine.destroy:2"]

    left = fleet.machines("syd")
    assert [m["id"] for m in left] == [machines[0]["id"]]
    live_volumes = {v["id"]: v for v in fleet.volumes("syd")}
    for gone in machines[1:]:
        vid = volume_of[gone["id"]]
        assert vid in live_volumes, f"volume {vid} of {gone['id']} was destroyed"
        assert live_volumes[vid].get("attached_machine_id") in (None, "")
        kept = _records_on_volume(fleet, vid, tmp_path)
        assert any(markers[gone["id"]] in data for data in kept), kept

    # The file says 1 now, and nothing else in it moved.
    after = (fleet.root / "regions" / "syd.toml").read_text()
    assert after == before.replace("count = 2", "count = 1")

    # A deploy of the region afterwards has nothing to do.
    mark = _api_log_size(fleet)
    again = _json(fleet.invoke("deploy", "--region", "syd", "--json"))
    assert again["outcome"] == "noop"
    assert again["mutating_steps"] == 0
    assert _mutating(_api_calls_since(fleet, mark)) == []


def test_a_dry_run_writes_nothing_and_changes_nothing(fleet: LocalFleet) -> None:
    files = _region_files(fleet.root)
    mark = _api_log_size(fleet)
    plan = _json(fleet.invoke("scale", "--region", "syd", "--count", "2", "--dry-run", "--json"))
    assert plan["mutating_steps"] == 2  # reuse a kept volume, create the machine
    ensure = next(s for s in plan["steps"] if s["kind"] == "volume.ensure")
    assert ensure["params"]["reuse"]
    assert plan["changes"]["syd"] == {
        "file": "regions/syd.toml",
        "written": False,
        "changes": [{"key": "count", "old": 1, "new": 2}],
    }
    assert _region_files(fleet.root) == files
    assert _mutating(_api_calls_since(fleet, mark)) == []
    assert len(fleet.machines("syd")) == 1


def test_a_scale_waits_for_no_one_while_a_deploy_holds_the_lock(fleet: LocalFleet) -> None:
    files = _region_files(fleet.root)
    mark = _api_log_size(fleet)
    # The lock is held until the command ends: a scale that waited for it would never end
    # (how fast it is refused is measured by bench/latency.py).
    with DeployLock(fleet.root, APP, release="v9-test", command="deploy"):
        proc = fleet.invoke("scale", "--region", "syd", "--count", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "is locked" in proc.stderr
    assert f"pid {os.getpid()}" in proc.stderr
    assert _region_files(fleet.root) == files
    assert _mutating(_api_calls_since(fleet, mark)) == []


def test_volume_size_grows_every_volume_of_the_region(fleet: LocalFleet) -> None:
    grown = _json(fleet.invoke("scale", "--region", "syd", "--volume-size", "2", "--json"))
    assert grown["outcome"] == "succeeded"
    extends = [s for s in grown["steps"] if s["kind"] == "volume.extend"]
    volumes = fleet.volumes("syd")
    assert len(extends) == len(volumes) == 3
    assert all(v["size_gb"] == 2 for v in volumes)
    shown = _json(fleet.invoke("scale", "--region", "syd", "--json"))["regions"]["syd"]
    assert shown["observed"]["volume_size_gb"] == 2
    assert shown["observed"]["unattached_volumes"] == 2
    assert shown["drift"] == []


def test_usage_reports_cpu_memory_latency_errors_and_volume(fleet: LocalFleet) -> None:
    (machine,) = fleet.machines("syd")
    for _ in range(5):
        assert fleet.app_request("GET", "/records?after=0", machine_id=machine["id"]).is_success
    shown = _json(fleet.invoke("scale", "--region", "syd", "--usage", "--json"))
    usage = shown["regions"]["syd"]["usage"]
    (measured,) = usage["machines"]
    assert measured["id"] == machine["id"]
    assert measured["error"] is None
    assert measured["requests"] >= 5
    assert 0 < measured["memory_pct"] < 100
    assert measured["cpu_pct"] is not None
    assert measured["p95_ms"] is not None
    assert measured["volume"]["used_bytes"] > 0
    assert usage["limits"]["cpu_pct"] == 80.0
    assert usage["limits"]["memory_pct"] == 85.0
    assert usage["limits"]["p95_ms"] == 500.0  # the wave's threshold from waves.toml
    assert usage["error_rate"] == 0.0
    assert usage["warnings"] == []


# -- logs -----------------------------------------------------------------------------------------


def test_logs_prefix_each_line_with_region_and_machine(fleet: LocalFleet) -> None:
    (machine,) = fleet.machines("syd")
    out = fleet.invoke("logs", "--region", "syd")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines
    assert all(line.startswith(f"syd {machine['id']} | ") for line in lines)
    assert any("[localfly]" in line and " exec " in line for line in lines)
    one = fleet.invoke("logs", "--machine", machine["id"], "--lines", "1")
    assert one.returncode == 0, one.stderr
    assert len(one.stdout.splitlines()) == 1
    # A machine the scale-down destroyed keeps its log.
    listed = fleet.api("GET", f"/v1/apps/{APP}/machines", params={"include_deleted": "true"})
    gone = next(m for m in listed.json() if m["state"] == "destroyed")
    old = fleet.invoke("logs", "--machine", gone["id"], "--lines", "2")
    assert old.returncode == 0, old.stderr
    assert [line.split(" | ")[0] for line in old.stdout.splitlines()] == [
        f"{gone['region']} {gone['id']}"
    ] * 2
    missing = fleet.invoke("logs", "--machine", "nope")
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: --machine: no machine 'nope'")


def _reader(stream: Any, queue: Queue[str]) -> None:
    for line in stream:
        queue.put(line)


@pytest.fixture
def follower(fleet: LocalFleet) -> Iterator[subprocess.Popen[str]]:
    """Run `invoke logs --follow`; killed by PID at teardown if it is still running."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLY_")}
    proc = subprocess.Popen(
        [str(INVOKE), "--search-root", str(REPO), "logs", "--region", "syd", "--follow"],
        cwd=fleet.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_logs_follow_prints_new_lines_until_ctrl_c(
    fleet: LocalFleet, follower: subprocess.Popen[str]
) -> None:
    (machine,) = fleet.machines("syd")
    lines: Queue[str] = Queue()
    threading.Thread(target=_reader, args=(follower.stdout, lines), daemon=True).start()
    marker = f"follow-{uuid.uuid4().hex[:8]}"
    seen: list[str] = []

    def marker_printed() -> bool:
        # Keep asking until the follower is up and has printed the request's log line.
        fleet.app_request("GET", f"/records?after=0&{marker}=1", machine_id=machine["id"])
        try:
            while True:
                seen.append(lines.get(timeout=0.2))
        except Empty:
            pass
        return any(marker in line for line in seen)

    wait_for(marker_printed, timeout=30, what="the follower to print the new line")
    hit = next(line for line in seen if marker in line)
    assert hit.startswith(f"syd {machine['id']} | GET /records")
    os.kill(follower.pid, signal.SIGINT)
    assert follower.wait(timeout=30) == 0


def test_logs_against_fly_io_say_to_use_fly_logs(fleet: LocalFleet) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLY_")}
    env["FLY_API_TOKEN"] = "fo1_not-a-real-token"
    # Loopback, so nothing could leave the machine even if a request were made.
    env["FLY_FLAPS_BASE_URL"] = "http://127.0.0.1:9"
    proc = subprocess.run(
        [str(INVOKE), "--search-root", str(REPO), "logs", "--region", "syd"],
        cwd=fleet.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: invoke logs: ")
    assert "fly logs --app sample-fleet --region syd" in line
    assert "Traceback" not in proc.stderr
