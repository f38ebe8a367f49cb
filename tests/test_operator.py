"""What an operator sees when things go wrong: the words, the exit code and the next step.

Each failure has one kind (bad input, exit 2; Fly or the network, exit 1 with the resume hint;
a release that failed its gates, exit 1 without it), decided once, and each error is said once.
The tests run `invoke` in a copy of the sample fleet against a real local Fly.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from execute.localfleet import (
    APP,
    INVOKE,
    REPO,
    LocalFleet,
    copy_fleet,
    kill_leftovers,
    leftover_processes,
    wait_for,
)

from orchestrator.localfly import control
from orchestrator.plan.config import config_digest

pytestmark = pytest.mark.timeout(600)

V2 = "registry.fly.io/sample-app:v2"
UNKNOWN = "registry.fly.io/no-such-app:v1"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    """Copy the sample fleet, run a local Fly for it and deploy syd once."""
    local = LocalFleet.start(copy_fleet(tmp_path_factory.mktemp("operator") / "fleet"))
    try:
        first = local.invoke("deploy", "--region", "syd")
        assert first.returncode == 0, first.stdout + first.stderr
        yield local
    finally:
        local.stop()


@pytest.fixture
def faults(fleet: LocalFleet) -> Iterator[Any]:
    """Set the local Fly's faults with the returned function; clear them after, always."""

    def put(body: dict[str, Any]) -> None:
        resp = fleet.api("PUT", "/_localfly/faults", json=body)
        assert resp.status_code == 200, resp.text

    try:
        yield put
    finally:
        fleet.api("DELETE", "/_localfly/faults")


def _images(fleet: LocalFleet, region: str) -> set[str]:
    return {m["config"]["image"] for m in fleet.machines(region)}


def test_status_says_the_local_fly_is_stopped_and_starts_nothing(tmp_path: Path) -> None:
    root = copy_fleet(tmp_path / "fresh")
    idle = LocalFleet(root=root, endpoint=None)  # type: ignore[arg-type]
    try:
        proc = idle.invoke("status")

        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "the local Fly is not running" in proc.stderr
        assert "invoke local.up" in proc.stderr
        assert "once Fly answers" not in proc.stderr
        assert not control.status(idle.state_dir).running
        assert not leftover_processes(idle.state_dir)
    finally:
        kill_leftovers(idle.state_dir)


def test_deploy_says_it_started_a_local_fly_and_how_to_stop_it(tmp_path: Path) -> None:
    root = copy_fleet(tmp_path / "fresh")
    state_dir = root / ".localfly"
    idle = LocalFleet(root=root, endpoint=None)  # type: ignore[arg-type]
    try:
        proc = idle.invoke("deploy", "--region", "syd", "--dry-run")

        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "started the local Fly in the background" in proc.stdout
        assert "invoke local.down" in proc.stdout
        # Nothing exists yet: the plan's whole cost is what it adds.
        assert "monthly cost: $0.00" in proc.stdout
        assert "after this plan: +$" in proc.stdout
        assert control.status(state_dir).running
        again = idle.invoke("deploy", "--region", "syd", "--dry-run")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "started the local Fly" not in again.stdout
    finally:
        idle.stop()


def test_an_image_fly_refuses_is_bad_input_without_the_resume_hint(fleet: LocalFleet) -> None:
    before = _images(fleet, "syd")

    proc = fleet.invoke("deploy", "--region", "syd", "--image", UNKNOWN)

    assert proc.returncode == 2, proc.stdout + proc.stderr
    error, hint = proc.stderr.strip().splitlines()
    # Which machine goes first is the leader's choice (the primary's machine goes last).
    assert re.match(r"error: syd:machine\.update:\d+: ", error), error
    assert "422" in error
    assert "Fly refused the request as invalid" in hint
    assert "--resume` carries on" not in proc.stdout + proc.stderr
    assert "network" not in proc.stdout + proc.stderr
    assert _images(fleet, "syd") == before


def test_a_fly_failure_exits_1_with_the_resume_hint_that_then_works(
    fleet: LocalFleet, faults: Any
) -> None:
    before = _images(fleet, "syd")
    faults({"rules": [{"operation": "Machines_update", "status": 403, "times": 1}]})

    proc = fleet.invoke("deploy", "--region", "syd", "--image", V2)

    assert proc.returncode == 1, proc.stdout + proc.stderr
    error, hint = proc.stderr.strip().splitlines()
    assert "403" in error
    assert hint.endswith("once Fly answers, `invoke deploy --resume` carries on")
    assert "rolled back" not in proc.stdout + proc.stderr
    assert _images(fleet, "syd") == before

    resumed = fleet.invoke("deploy", "--resume")

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _images(fleet, "syd") == {V2}


def test_a_failed_automatic_rollback_is_said_once_with_how_to_finish_it(
    fleet: LocalFleet, faults: Any
) -> None:
    spearhead = fleet.machines("syd")[0]["id"]
    # Its checks fail whatever it runs: the deploy fails its gate, and so does the rollback.
    faults({"failing_checks": [spearhead]})

    proc = fleet.invoke("deploy", "--region", "syd", "--image", "registry.fly.io/sample-app:v3")

    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert out.count("rollback of syd to") == 2, out  # the summary line and the error's
    assert out.count("rollback of syd to v2-") == 2, out
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: syd:machine.update:1:")
    assert lines[1].startswith("rollback of syd to v2-")
    assert "failed: " in lines[1]
    assert lines[2] == (
        "the fleet is part-way back: `invoke deploy --resume` finishes the rollback"
    )
    assert len(lines) == 3
    # The failure's text is in the failed steps' lines and the error lines, no more.
    assert out.count("check failing (injected") == 4, out


def test_logs_show_the_last_100_lines_in_time_order_and_since(fleet: LocalFleet) -> None:
    for i in range(120):  # enough request lines that the default limit bites
        fleet.app_request("GET", f"/?n={i}", region="syd")

    default = fleet.invoke("logs", "--region", "syd")
    five = fleet.invoke("logs", "--region", "syd", "--lines", "5")
    recent = fleet.invoke("logs", "--region", "syd", "--since", "1h", "--lines", "100000")
    future = fleet.invoke("logs", "--region", "syd", "--since", "2999-01-01T00:00:00Z")

    assert default.returncode == five.returncode == recent.returncode == 0, default.stderr
    lines = default.stdout.splitlines()
    assert len(lines) == 100
    assert len(five.stdout.splitlines()) == 5
    stamps = [line.split(" | ", 1)[1][:24] for line in lines if " | 20" in line]
    assert stamps == sorted(stamps)  # the two machines' lines, merged by time
    assert len(recent.stdout.splitlines()) > 120
    assert future.returncode == 0
    assert future.stdout == ""


def test_logs_of_an_unknown_machine_say_so_in_one_short_line(fleet: LocalFleet) -> None:
    proc = fleet.invoke("logs", "--machine", "nope")

    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: --machine: no machine 'nope' in sample-fleet; machines: ")
    assert len(line) < 160


def test_scaling_the_primary_to_one_machine_warns_first(fleet: LocalFleet) -> None:
    files = {p.name: p.read_text() for p in (fleet.root / "regions").iterdir()}

    primary = fleet.invoke("scale", "--region", "syd", "--count", "1", "--dry-run")
    replica = fleet.invoke("scale", "--region", "dfw", "--count", "1", "--dry-run")

    assert primary.returncode == 0, primary.stdout + primary.stderr
    warning = " ".join(primary.stderr.split())
    assert warning.startswith("! warning: syd is the primary region: with 1 machine there,")
    assert "no spare" in warning
    assert "warning" not in replica.stderr
    assert {p.name: p.read_text() for p in (fleet.root / "regions").iterdir()} == files


def test_a_global_deploy_names_the_wave_with_nothing_to_change(fleet: LocalFleet) -> None:
    # syd first, so that only wave 2 has something to do.
    first = fleet.invoke("deploy", "--region", "syd", "--image", V2)
    assert first.returncode == 0, first.stdout + first.stderr

    proc = fleet.invoke("deploy", "--image", V2)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "· wave 1 syd: nothing to change" in proc.stdout
    assert "wave 2" not in proc.stdout  # dfw and ams both change
    assert _images(fleet, "dfw") == _images(fleet, "ams") == {V2}


def test_a_rollback_says_from_which_release_to_which(fleet: LocalFleet) -> None:
    proc = fleet.invoke("rollback", "--region", "syd", "--to", "v1")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    [header] = [line for line in proc.stdout.splitlines() if "rolling back" in line]
    assert header.startswith("sample-fleet: rolling back syd from v2-")
    assert " to v1-" in header


def test_plan_after_a_primary_move_shows_the_env_change(fleet: LocalFleet) -> None:
    # What a drill that promoted dfw leaves on a machine: its env names dfw as the primary, its
    # release is unchanged, and its digest is the new config's.
    machine = fleet.machines("syd")[-1]
    original = copy.deepcopy(machine["config"])
    config = machine["config"]
    config["env"]["PRIMARY_REGION"] = "dfw"
    config["metadata"]["orch_config_digest"] = config_digest(config)
    resp = fleet.api("POST", f"/v1/apps/{APP}/machines/{machine['id']}", json={"config": config})
    assert resp.status_code == 200, resp.text
    try:
        proc = fleet.invoke("plan", "--region", "syd")

        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"update {machine['id']}: env PRIMARY_REGION dfw → syd" in proc.stdout
        release = config["metadata"]["fly_release_id"]
        assert f"{release} → {release}" not in proc.stdout
    finally:
        # Machines that disagree on the primary region are a split fleet, which the next
        # deploy of this module's fleet would rightly refuse: put the machine back.
        back = fleet.api(
            "POST", f"/v1/apps/{APP}/machines/{machine['id']}", json={"config": original}
        )
        assert back.status_code == 200, back.text


def test_plan_status_and_scale_show_the_monthly_cost(fleet: LocalFleet) -> None:
    plan = fleet.invoke("plan", "--region", "dfw", env={"COLUMNS": "80"})
    status = fleet.invoke("status", "--region", "syd", "--json")
    scale = fleet.invoke("scale", "--region", "syd", env={"COLUMNS": "80"})

    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "monthly cost: $" in plan.stdout
    assert "prices: https://fly.io/docs/about/pricing/ of " in plan.stdout
    assert status.returncode in (0, 1), status.stderr
    cost = json.loads(status.stdout)["monthly_cost"]
    assert float(cost["total_usd"]) > 0
    assert cost["machines"] == len(fleet.machines("syd"))
    assert cost["snapshots_usd"] is not None  # read from each volume's snapshots
    assert scale.returncode == 0, scale.stdout + scale.stderr
    assert "monthly cost: $" in scale.stdout
    assert "desired sizes: " in scale.stdout


def test_deploy_report_opens_in_chromium_with_its_timeline_drawn(
    fleet: LocalFleet, tmp_path: Path
) -> None:
    from PIL import Image
    from render.chromium import screenshot

    before = _images(fleet, "syd")
    image = V2 if before != {V2} else "registry.fly.io/sample-app:v4"
    report = tmp_path / "reports" / "deploy.html"

    proc = fleet.invoke("deploy", "--region", "syd", "--image", image, "--report", str(report))

    assert proc.returncode == 0, proc.stdout + proc.stderr
    md = report.with_suffix(".md")
    assert f"report written to {md} and {report}" in proc.stdout
    assert "| 1 | syd | syd:machine.update:1 | succeeded |" in md.read_text()
    assert "requests " in md.read_text()  # the metrics gate's figures
    png = Image.open(screenshot(report, tmp_path / "deploy.png")).convert("RGB")
    counts: dict[tuple[int, int, int], int] = {}
    for pixel in png.getdata():
        counts[pixel] = counts.get(pixel, 0) + 1
    machine_bars = counts.get((0xEF, 0x6C, 0x00), 0)
    gate_bars = counts.get((0x2E, 0x7D, 0x32), 0)
    # Bars, not just the legend's 12x12 swatch: the updates and gates were drawn to scale.
    assert machine_bars > 3 * 144, machine_bars
    assert gate_bars > 3 * 144, gate_bars


def _terminal_env() -> dict[str, str]:
    # What a shell in a fresh terminal has: no COLUMNS (the terminal says 80), no Fly token.
    return {k: v for k in ("PATH", "HOME") if (v := os.environ.get(k))}


def _screen_when(term: Any, text: str, timeout: float = 120) -> str:
    def shown() -> str | None:
        screen = str(term.screen())
        return screen if text in screen else None

    found: str = wait_for(shown, timeout=timeout, every=0.05, what=f"{text!r} on the terminal")
    return found


def test_the_live_view_and_the_tables_fit_an_80x24_terminal(fleet: LocalFleet) -> None:
    from render.terminal import terminal, unwrapped

    invoke = [str(INVOKE), "--search-root", str(REPO)]
    with terminal(80, 24) as term:
        term.run(
            [*invoke, "deploy", "--region", "syd", "--image", "registry.fly.io/sample-app:v6"],
            cwd=fleet.root,
            env=_terminal_env(),
        )
        live = _screen_when(term, "▶ running")
        assert unwrapped(term), live
        header = next(line for line in live.splitlines() if "elapsed" in line)
        assert header.split() == ["wave", "region", "step", "status", "elapsed", "detail"]
        final = term.wait_finished()
        assert unwrapped(term), final
        assert "succeeded" in final
        assert any(line.startswith("syd:gate.metrics ") for line in final.splitlines()), final
    commands = (["status"], ["volumes"], ["plan", "--region", "dfw"], ["scale", "--region", "syd"])
    for args in commands:
        with terminal(80, 24) as term:
            term.run([*invoke, *args], cwd=fleet.root, env=_terminal_env())
            screen = term.wait_finished()
            assert unwrapped(term), f"{args}:\n{screen}"
            assert "…" not in screen, f"{args}: a cell was cut short:\n{screen}"


def test_status_of_a_booting_machine_says_to_look_again(tmp_path: Path) -> None:
    root = copy_fleet(tmp_path / "slow")
    slow = LocalFleet(root=root, endpoint=None)  # type: ignore[arg-type]
    try:
        # Machines take 20-60 s from create to running here: long enough to look meanwhile.
        up = slow.invoke("local.up", "--profile", "realistic", "--time-factor", "20")
        assert up.returncode == 0, up.stdout + up.stderr
        slow.endpoint = control.ensure_running(slow.state_dir)
        created = slow.api("POST", "/v1/apps", json={"name": APP, "org_slug": "personal"})
        assert created.status_code in (200, 201), created.text
        machine = slow.api(
            "POST",
            f"/v1/apps/{APP}/machines",
            json={"region": "syd", "config": {"image": "registry.fly.io/sample-app:v1"}},
        )
        assert machine.status_code == 200, machine.text

        proc = slow.invoke("status")

        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert machine.json()["id"] in proc.stderr, proc.stdout
        assert proc.stderr.strip().endswith(
            "still booting: run `invoke status` again in a few seconds"
        ), proc.stdout
    finally:
        slow.stop()
