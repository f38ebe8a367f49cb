"""`invoke drill`, end to end: a copy of the sample fleet, deployed on a real local Fly.

The tests of this module share one fleet and one local Fly and run in file order: bad input
(nothing may be sent), a dry run, a drill of a replica region, a drill of the primary region
(fail over to dfw and back, with ``invoke status`` run from a second process while the drill
holds the failed-over state), a drill its guard aborts, and last a drill with replication to
the promoted region held back, which keeps the primary in dfw (``--no-failback``). Every other
drill must leave the fleet at the spec with exactly one primary, which the next one relies on.
Objectives and intervals are short (the test's waves.toml).
Every process is stopped by PID at the end, even on failure.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from execute.localfleet import APP, REPO, LocalFleet, copy_fleet, wait_for

from orchestrator.drill.fault import StopAndCordon
from orchestrator.fly.client import FlyClient
from orchestrator.settings import Token

pytestmark = pytest.mark.timeout(300)

DRILL_DEFAULTS = {
    "rto": '"30s"',
    "rpo_records": "15",
    "rpo_seconds": "3",
    "max_error_rate": "0.5",
    "max_duration": '"120s"',
    "baseline": '"2s"',
    "scale_survivors": "false",
}
SPEC_COUNTS = {"syd": 2, "dfw": 2, "ams": 1}


def set_drill(fleet: LocalFleet, **overrides: str) -> None:
    """Rewrite the fleet's ``[drill]`` section of regions/waves.toml."""
    path = fleet.root / "regions" / "waves.toml"
    text = path.read_text()
    head = text[: text.index("[drill]")]
    values = {**DRILL_DEFAULTS, **overrides}
    body = "".join(f"  {k} = {v}\n" for k, v in values.items())
    path.write_text(f"{head}[drill]\n{body}")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    """Copy the sample fleet outside the repo, run a local Fly for it, and deploy it."""
    root = copy_fleet(tmp_path_factory.mktemp("drill") / "fleet")
    # The executor polls checks every 0.2 s instead of 1 s: same steps, shorter waits.
    (root / "invoke.yaml").write_text("orchestrator:\n  poll: 0.2\n")
    local = LocalFleet.start(root)
    try:
        set_drill(local)
        deployed = local.invoke("deploy", "--json")
        assert deployed.returncode == 0, deployed.stderr
        yield local
    finally:
        local.stop()


def drill(fleet: LocalFleet, *args: str) -> tuple[int, dict[str, Any], str]:
    """Run ``invoke drill ARGS --json``; return the exit code, the report and stderr."""
    done = fleet.invoke("drill", *args, "--json", timeout=240.0)
    report = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, report, done.stderr


def status(fleet: LocalFleet) -> dict[str, Any]:
    """Return ``invoke status --json``."""
    done = fleet.invoke("status", "--json")
    return json.loads(done.stdout)


def roles(snapshot: dict[str, Any]) -> dict[str, list[str | None]]:
    """Return region → the roles its machines report."""
    return {
        code: [m["role"] for m in region["machines"]]
        for code, region in snapshot["regions"].items()
    }


def assert_at_spec_with_one_primary(fleet: LocalFleet) -> dict[str, Any]:
    """Check the fleet after a drill: counts, health, one primary in syd; return the status."""
    snapshot = status(fleet)
    assert snapshot["healthy"], snapshot
    counts = {code: len(r["machines"]) for code, r in snapshot["regions"].items()}
    assert counts == SPEC_COUNTS
    primaries = [
        (code, m["id"])
        for code, r in snapshot["regions"].items()
        for m in r["machines"]
        if m["role"] == "primary"
    ]
    assert len(primaries) == 1, roles(snapshot)
    assert primaries[0][0] == "syd"
    assert all(m["config_primary"] == "syd" for m in machine_envs(fleet)), "all follow syd"
    return snapshot


def machine_envs(fleet: LocalFleet) -> list[dict[str, Any]]:
    """Return each live machine's id, region and configured PRIMARY_REGION (and its env)."""
    return [
        {
            "id": m["id"],
            "region": m["region"],
            "config_primary": m["config"]["env"].get("PRIMARY_REGION"),
            "env": m["config"]["env"],
        }
        for m in fleet.machines()
    ]


def primary_records(fleet: LocalFleet, snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """Return every record the primary holds."""
    primary = next(
        m["id"]
        for r in snapshot["regions"].values()
        for m in r["machines"]
        if m["role"] == "primary"
    )
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        resp = fleet.app_request("GET", f"/records?after={after}&limit=1000", machine_id=primary)
        resp.raise_for_status()
        page = resp.json()["records"]
        out += page
        if len(page) < 1000:
            return out
        after = page[-1]["seq"]


def check_rpo_against_records(report: dict[str, Any], records: list[dict[str, Any]]) -> set[int]:
    """Check that exactly the writes counted as lost are missing; return their canary numbers."""
    drill_id = report["details"]["drill_id"]
    present = {
        r["data"]["n"]
        for r in records
        if isinstance(r.get("data"), dict) and r["data"].get("drill") == drill_id
    }
    acked = report["canary"]["old_primary_acks"]
    t0 = report["t0"]
    missing = {n for n, _seq, _at in acked if n not in present}
    assert missing == set(report["rpo"]["lost_canary_ns"])
    assert len(missing) == report["rpo_records"]
    # Every write acknowledged before the fault is there, unless it is one of those counted.
    assert all(n in present or n in missing for n, _seq, at in acked if at < t0)
    return missing


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        # (more cases are unit tests of check_request, in test_plans.py)
        ((), "--region: name the region"),
        (("--region", "lhr"), "--region: region 'lhr' is not in the fleet"),
        (("--region", "syd", "--promote", "syd"), "--promote: cannot promote 'syd'"),
    ],
)
def test_bad_input_exits_2_and_sends_nothing(
    fleet: LocalFleet, args: tuple[str, ...], says: str
) -> None:
    before = len(fleet.requests_log())
    done = fleet.invoke("drill", *args)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert done.stderr.strip().count("\n") == 0, "one line"
    assert len(fleet.requests_log()) == before


def test_dry_run_checks_and_changes_nothing(fleet: LocalFleet) -> None:
    before = len(fleet.mutating_requests())
    code, report, err = drill(fleet, "--region", "syd", "--dry-run")
    assert code == 0, err
    assert report["verdict"] == "ready"
    assert report["dry_run"] is True
    assert [p["name"] for p in report["phases"]] == ["preflight"]
    assert report["details"]["would_promote"] == "dfw"
    assert report["details"]["preflight"]["ok"] is True
    assert len(fleet.mutating_requests()) == before


# -- a replica region ----------------------------------------------------------------------------


def test_drill_of_a_replica_region_loses_nothing_and_survivors_take_its_traffic(
    fleet: LocalFleet, tmp_path: Path
) -> None:
    answered = tmp_path / "answered-by"
    probe = (
        "import httpx, sys; r = httpx.get(sys.argv[1] + '/', headers={'Host': "
        f"'{APP}.fly.dev', 'fly-prefer-region': 'dfw'}}); open(sys.argv[2], 'w').write("
        "r.headers.get('fly-region', ''))"
    )
    hook = (
        f'[ "$DRILL_PHASE" = verify ] && {shlex.quote(sys.executable)} -c {shlex.quote(probe)} '
        f"{fleet.endpoint.proxy_url} {shlex.quote(str(answered))}; true"
    )
    code, report, err = drill(fleet, "--region", "dfw", "--hook", hook)
    assert code == 0, err
    assert report["verdict"] == "passed", report["reason"]
    assert report["promoted"] is None
    assert report["rpo_records"] == 0
    assert report["rpo_s"] == 0
    # Users steered to dfw were served by the survivors while it was down.
    served_by = report["details"]["served_by"]
    assert served_by
    assert set(served_by) <= {"syd", "ams"}
    assert answered.read_text() in ("syd", "ams")
    names = [p["name"] for p in report["phases"]]
    assert names[:4] == ["preflight", "steady_state", "fault", "detect"]
    skipped = {p["name"] for p in report["phases"] if p["outcome"] == "skipped"}
    assert {"promote", "reseed", "failback"} <= skipped
    assert report["integrity"]["ok"]
    assert_at_spec_with_one_primary(fleet)


# -- the primary region --------------------------------------------------------------------------


def test_drill_of_the_primary_fails_over_measures_and_fails_back(
    fleet: LocalFleet, tmp_path: Path
) -> None:
    set_drill(fleet, scale_survivors="true")
    before = status(fleet)
    assert roles(before)["syd"].count("primary") == 1
    assert "primary" not in roles(before)["dfw"] + roles(before)["ams"]
    during = tmp_path / "status-during.json"
    invoke = f"{shlex.quote(str(Path(sys.executable).with_name('invoke')))} --search-root {REPO}"
    hook = f'[ "$DRILL_PHASE" = verify ] && {invoke} status --json > {during}; true'
    report_path = tmp_path / "report" / "drill.md"
    started = time.monotonic()
    code, report, err = drill(
        fleet, "--region", "syd", "--hook", hook, "--report", str(report_path)
    )
    took = time.monotonic() - started
    assert code == 0, err
    assert report["verdict"] == "passed", report["reason"]
    assert report["region"] == "syd"
    assert report["promoted"] == "dfw"
    assert 0 < report["rto_s"] <= 30
    assert report["rto"]["detect_s"] <= report["rto_s"]
    assert report["objectives"]["rto_s"]["met"]
    assert [p["name"] for p in report["phases"]] == [
        "preflight",
        "steady_state",
        "fault",
        "detect",
        "promote",
        "scale_up",
        "verify",
        "restore",
        "reseed",
        "scale_back",
        "failback",
        "integrity",
    ]
    assert all(p["outcome"] == "ok" for p in report["phases"])
    # While the drill held the failed-over state, a second process saw dfw primary, syd gone
    # dark, and ams carrying syd's two machines.
    mid = json.loads(during.read_text())
    mid_roles = roles(mid)
    assert mid_roles["dfw"].count("primary") == 1
    assert mid_roles["syd"] == [None, None]
    assert len(mid_roles["ams"]) == 1 + 2
    assert report["details"]["scaled_up"] == {"ams": 2}
    # Afterwards: at the spec, one primary (in syd), and the data adds up.
    after = assert_at_spec_with_one_primary(fleet)
    missing = check_rpo_against_records(report, primary_records(fleet, after))
    assert len(missing) == report["rpo_records"]
    assert report["integrity"]["ok"]
    # The old primary's volumes are kept, unattached, with whatever was lost on them.
    kept = set(report["details"]["old_volumes"])
    unattached = {v["id"] for v in fleet.volumes("syd") if not v.get("attached_machine_id")}
    assert kept
    assert kept <= unattached
    assert report_path.read_text().startswith("# Drill report")
    assert "<svg" in report_path.with_suffix(".html").read_text()
    print(f"primary drill: {took:.1f}s, RTO {report['rto_s']}s, RPO {report['rpo_records']}")


def test_the_fly_io_fault_cordons_and_stops_a_region_and_brings_it_back(
    fleet: LocalFleet,
) -> None:
    """On Fly.io a drill cannot freeze a region: it cordons and stops its machines instead."""
    token = fleet.endpoint.token
    secret = token.reveal() if hasattr(token, "reveal") else str(token)

    async def run(step: str) -> str:
        async with FlyClient(fleet.endpoint.api_url, Token(secret)) as client:
            fault = StopAndCordon(client, APP)
            if step == "inject":
                return await fault.inject("ams")
            fault.stopped = [m["id"] for m in fleet.machines("ams")]
            return await fault.clear("ams")

    assert "stopped 1 machine(s) in ams" in asyncio.run(run("inject"))
    down = fleet.machines("ams")
    assert [(m["state"], m.get("cordoned")) for m in down] == [("stopped", True)]
    served = fleet.app_request("GET", "/", region="ams")
    assert served.status_code == 200
    assert served.headers["fly-region"] != "ams"
    assert "started 1 machine(s) in ams" in asyncio.run(run("clear"))
    wait_for(
        lambda: status(fleet)["healthy"], timeout=60, what="ams to be started and healthy again"
    )
    assert [m.get("cordoned") for m in fleet.machines("ams")] == [False]


def test_a_drill_aborted_by_its_guard_restores_the_fleet_and_says_why(fleet: LocalFleet) -> None:
    set_drill(fleet, rto='"4s"', max_duration='"4s"')
    code, report, err = drill(fleet, "--region", "syd")
    assert code == 1, err
    assert report["verdict"] == "aborted"
    assert "max_duration (4s)" in report["reason"]
    assert "error: drill aborted" in err
    phases = {p["name"]: p for p in report["phases"]}
    assert phases["restore"]["outcome"] == "ok"
    assert phases["integrity"]["outcome"] == "ok"
    assert any(p["outcome"] == "aborted" for p in report["phases"])
    assert report["integrity"]["ok"]
    assert_at_spec_with_one_primary(fleet)


def test_held_back_replication_grows_the_rpo_and_fails_the_objective(fleet: LocalFleet) -> None:
    set_drill(fleet, rpo_records="5")
    # A fault on dfw only: its replicas pull once when they start, then not for an hour.
    for machine in fleet.machines("dfw"):
        config = machine["config"]
        config["env"]["SAMPLE_APP_REPLICATE_INTERVAL"] = "3600"
        resp = fleet.api(
            "POST",
            f"/v1/apps/{APP}/machines/{machine['id']}",
            json={"config": config, "current_version": machine["instance_id"]},
        )
        assert resp.status_code == 200, resp.text
    wait_for(
        lambda: all(
            m["state"] == "started"
            and m["config"]["env"].get("SAMPLE_APP_REPLICATE_INTERVAL") == "3600"
            and m["checks"]
            and all(c["status"] == "passing" for c in m["checks"])
            for m in fleet.machines("dfw")
        ),
        timeout=60,
        what="dfw's machines to restart with replication held back",
    )
    code, report, err = drill(fleet, "--region", "syd", "--no-failback")
    assert code == 1, err
    assert report["verdict"] == "failed"
    assert report["promoted"] == "dfw"
    assert not report["objectives"]["rpo_records"]["met"]
    assert "rpo_records" in report["reason"]
    # Nothing the canary wrote during the drill reached dfw: every acknowledged write is lost.
    acked = report["canary"]["old_primary_acks"]
    assert report["rpo_records"] == len(acked) > 5
    assert report["rpo_s"] > 1.0
    # --no-failback: dfw stays primary, syd was re-seeded from it and follows it.
    after = status(fleet)
    assert roles(after)["dfw"].count("primary") == 1
    assert "primary" not in roles(after)["syd"] + roles(after)["ams"]
    assert report["integrity"]["ok"]
    assert report["integrity"]["primary_region"] == "dfw"
    assert not report["integrity"]["at_spec"]
    assert "--no-failback" in report["integrity"]["spec_problems"][0]
    assert all(m["config_primary"] == "dfw" for m in machine_envs(fleet))
    check_rpo_against_records(report, primary_records(fleet, after))
    # The fault went with the promotion: dfw's machines run the spec's config, as primary.
    assert all("SAMPLE_APP_REPLICATE_INTERVAL" not in m["env"] for m in machine_envs(fleet))
