"""Stopping a drill: Ctrl-C, a second Ctrl-C, ``kill -9``; then ``--resume`` or ``--abort``.

Each test runs the real ``invoke drill --region syd`` (the primary region, so a promotion of
dfw is part of it) on a module's own deployed copy of the sample fleet, stops it at a known
phase (read from the drill's saved state, ``.orchestrator/drill.json``), and checks:

- the command ends with exit 130 and one line saying where it stopped and what to run, never
  a raw exception name;
- the fleet never has two regions taking writes: ``status`` exits 1 while the drill is
  unfinished, and names no two primaries that both serve;
- ``invoke drill --resume`` (or ``--abort``) ends with exactly one primary, in syd, the fleet
  at the spec, the state file gone, and the lost writes (if any) reported by sequence.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from execute.localfleet import LocalFleet, copy_fleet, wait_for

from drill.test_drills import assert_at_spec_with_one_primary, set_drill

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    """A deployed copy of the sample fleet on its own local Fly; stopped by PID after."""
    root = copy_fleet(tmp_path_factory.mktemp("drill-stop") / "fleet")
    (root / "invoke.yaml").write_text("orchestrator:\n  poll: 0.2\n")
    local = LocalFleet.start(root)
    try:
        set_drill(local)
        deployed = local.invoke("deploy", "--json")
        assert deployed.returncode == 0, deployed.stderr
        yield local
    finally:
        local.stop()


def _state_path(fleet: LocalFleet) -> Path:
    return fleet.root / ".orchestrator" / "drill.json"


def _state(fleet: LocalFleet) -> dict[str, Any] | None:
    try:
        return dict(json.loads(_state_path(fleet).read_text()))
    except (FileNotFoundError, ValueError):
        return None


def _reached(fleet: LocalFleet, phase: str) -> bool:
    state = _state(fleet)
    return state is not None and (state.get("phase") == phase or phase in state["finished_phases"])


def _start_drill(fleet: LocalFleet) -> subprocess.Popen[str]:
    return fleet.spawn("drill", "--region", "syd", capture=True)


def _stop(
    proc: subprocess.Popen[str], *signals: signal.Signals, fleet: LocalFleet | None = None
) -> tuple[int, str]:
    try:
        for i, sig in enumerate(signals):
            if i and fleet is not None:
                # Two identical signals sent back to back may arrive as one: wait until the
                # drill says it took the first.
                wait_for(
                    lambda: (_state(fleet) or {}).get("stop_requested") or proc.poll() is not None,
                    timeout=30,
                    every=0.02,
                    what="the drill to take the first Ctrl-C",
                )
            proc.send_signal(sig)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out + err


def _wait_for_promotion(fleet: LocalFleet, proc: subprocess.Popen[str]) -> None:
    """Wait until dfw was chosen for promotion (saved before its first machine changes)."""
    wait_for(
        lambda: (_state(fleet) or {}).get("promoting") == "dfw" or proc.poll() is not None,
        timeout=120,
        every=0.05,
        what="the drill to start promoting dfw",
    )
    assert proc.poll() is None, "the drill ended before it could be stopped"


def _wait_for_phase(fleet: LocalFleet, proc: subprocess.Popen[str], phase: str) -> None:
    wait_for(
        lambda: _reached(fleet, phase) or proc.poll() is not None,
        timeout=120,
        every=0.05,
        what=f"the drill to reach {phase}",
    )
    assert proc.poll() is None, "the drill ended before it could be stopped"


def _finish(fleet: LocalFleet, how: str) -> dict[str, Any]:
    done = fleet.invoke("drill", how, "--json", timeout=240.0)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Error" not in done.stderr
    report = dict(json.loads(done.stdout))
    assert _state(fleet) is None, "the state file outlived a finished drill"
    assert_at_spec_with_one_primary(fleet)
    return report


def test_first_ctrl_c_stops_at_the_next_phase_and_resume_finishes(fleet: LocalFleet) -> None:
    proc = _start_drill(fleet)
    _wait_for_promotion(fleet, proc)
    code, output = _stop(proc, signal.SIGINT)
    assert code == 130, output[-3000:]
    last = output.strip().splitlines()[-1]
    assert last.startswith("error: drill stopped by Ctrl-C after "), last
    assert "invoke drill --resume" in last
    assert "CancelledError" not in output
    assert "Traceback" not in output
    state = _state(fleet)
    assert state is not None
    assert state["promoting"] == "dfw"

    unfinished = fleet.invoke("status")
    assert unfinished.returncode == 1, unfinished.stdout

    again = fleet.invoke("drill", "--region", "ams")
    assert again.returncode == 1
    assert "invoke drill --resume" in again.stderr

    report = _finish(fleet, "--resume")
    assert report["details"]["resumed"] is True
    lost = report["details"]["lost_writes"]
    assert isinstance(lost["count"], int)


@pytest.mark.slow  # CI: the matrix's kill -9 after the fault, then --resume
def test_kill_9_during_the_promotion_then_abort_returns_to_syd(fleet: LocalFleet) -> None:
    proc = _start_drill(fleet)
    _wait_for_promotion(fleet, proc)
    code, _ = _stop(proc, signal.SIGKILL)
    assert code == -9
    split = fleet.invoke("status")
    assert split.returncode == 1
    deploy = fleet.invoke("deploy")
    assert deploy.returncode == 1, deploy.stdout[-2000:] + deploy.stderr[-2000:]
    report = _finish(fleet, "--abort")
    assert report["details"]["abort"] is True


def test_a_second_ctrl_c_stops_at_once_and_the_state_is_kept(fleet: LocalFleet) -> None:
    proc = _start_drill(fleet)
    _wait_for_promotion(fleet, proc)
    code, output = _stop(proc, signal.SIGINT, signal.SIGINT, fleet=fleet)
    assert code == 130, output[-3000:]
    last = output.strip().splitlines()[-1]
    assert "stopped at once (a second Ctrl-C)" in last, last
    assert "invoke drill --resume" in last
    assert "CancelledError" not in output
    state = _state(fleet)
    assert state is not None
    assert state["promoting"] == "dfw"
    assert fleet.invoke("status").returncode == 1
    _finish(fleet, "--resume")


@pytest.mark.slow  # CI: the matrix's Ctrl-C after detect (the region comes back)
def test_stopped_at_once_before_any_promotion_the_region_simply_comes_back(
    fleet: LocalFleet,
) -> None:
    proc = _start_drill(fleet)
    _wait_for_phase(fleet, proc, "detect")
    code, output = _stop(proc, signal.SIGINT, signal.SIGINT, fleet=fleet)
    assert code == 130, output[-3000:]
    assert "CancelledError" not in output
    # Nothing was promoted: syd came back as it was, and there is nothing to resume.
    assert _state(fleet) is None
    wait_for(lambda: fleet.invoke("status").returncode == 0, timeout=60, what="syd back")
    assert_at_spec_with_one_primary(fleet)
    nothing = fleet.invoke("drill", "--resume")
    assert nothing.returncode == 2
    assert nothing.stderr.strip() == (
        "error: --resume: no interrupted drill to resume; `invoke status` shows the fleet"
    )
