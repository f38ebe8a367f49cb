"""Interrupt and crash matrices of the other fleet changes: drills, scales, rollbacks.

Deploy rollouts have their own crash matrix (`test_crashes.py`, `tests/rollout`). Here the
orchestrator runs as its own process and is stopped at a named point by its test hook
(`orchestrator.execute.failpoints`): ``kill -9`` (the process SIGKILLs itself, no cleanup) or
``sigint@`` (it sends itself SIGINT, as an operator's Ctrl-C, and handles it). Then the
documented recovery runs, and the end conditions are checked:

- **drills** (the primary region syd, so a promotion of dfw and a re-seed are part of it):
  stopped at phase boundaries; recovery is ``invoke drill --resume`` when the drill left its
  state, else nothing. While stopped, ``status`` never calls two primaries healthy. After
  recovery: one primary, in syd, the fleet at the spec (`check_converged`, the old primary's
  kept volumes allowed), no lease held, the region files untouched, the state file gone.
- **scales** (syd 2 → 3, 3 → 2, and a size change): stopped at step boundaries; the region
  file must not have moved, and the same ``invoke scale`` run again must reach the size and
  write the file, with every acknowledged record on every machine.
- **rollbacks** (from a deployed v2 back to v1): stopped at step boundaries; recovery is
  ``invoke deploy --resume`` (a stopped rollback is run again), ending on v1 everywhere with
  every acknowledged record kept.

- **deploys**: Ctrl-C'd during each wave (their kill -9 matrix is `test_crashes.py`); then
  ``invoke deploy --resume``.

CI runs a subset of each matrix (`CI`); ``--runslow`` runs every point (drills 14, scales 6,
rollbacks 6, deploys 2; 28 in all), and ``bench/reliability.py`` the deploy matrices' long variants.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from execute.localfleet import lock_holder

from .harness import RecordWriter, Rig, check_converged

pytestmark = pytest.mark.timeout(600)

DRILL_SECTION = (
    "[drill]\n"
    '  rto = "30s"\n  rpo_records = 15\n  rpo_seconds = 3\n  max_error_rate = 0.5\n'
    '  max_duration = "120s"\n  baseline = "1s"\n  scale_survivors = false\n'
)

# Drill points: where the drill process is stopped. sigint@ points stop at the end of that
# phase (the first Ctrl-C); the others are a kill -9 there.
DRILL_POINTS = (
    "sigint@drill_phase_started:preflight",
    "sigint@drill_phase_started:steady_state",
    "sigint@drill_phase_started:fault",
    "sigint@drill_phase_started:detect",
    "sigint@drill_phase_started:verify",
    "sigint@drill_phase_started:restore",
    "sigint@drill_phase_started:reseed",
    "sigint@drill_phase_started:failback",
    "drill_phase_started:fault",
    "drill_phase_finished:fault",
    "drill_promoting:dfw",
    "drill_phase_finished:promote",
    "drill_phase_started:restore",
    "drill_phase_started:reseed",
)
SCALE_POINTS = (
    ("sigint@step_started:syd:machine.create:3", {"count": 3}),
    ("create_sent:syd:machine.create:3", {"count": 3}),
    ("sigint@update_sent:syd:machine.update:1", {"memory": 512}),
    ("step_finished:syd:machine.update:1", {"memory": 512}),
    ("sigint@step_started:syd:machine.destroy:2", {"count": 1}),
    ("step_finished:syd:machine.destroy:2", {"count": 1}),
)
ROLLBACK_POINTS = (
    "sigint@step_started:syd:machine.update:1",
    "update_sent:syd:machine.update:1",
    "sigint@update_sent:syd:machine.update:2",
    "step_finished:syd:gate.health",
    "sigint@step_started:dfw:machine.update:1",
    "update_sent:ams:machine.update:1",
)
DEPLOY_POINTS = (
    "sigint@update_sent:syd:machine.update:1",
    "sigint@step_started:dfw:machine.update:2",
)
# What CI runs: points of every kind (Ctrl-C and kill -9; before, during and after the
# promotion; a scale-up, a resize and a scale-down; both waves of a rollback).
CI = {
    "sigint@drill_phase_started:steady_state",
    "sigint@drill_phase_started:detect",
    "drill_phase_finished:fault",
    "sigint@drill_phase_started:reseed",
    "sigint@step_started:syd:machine.create:3",
    "step_finished:syd:machine.destroy:2",
    "sigint@step_started:dfw:machine.update:1",
    "sigint@update_sent:syd:machine.update:1",
}


def _params(points: Any, key: Any = lambda p: p) -> list[Any]:
    return [
        pytest.param(p, id=str(key(p)), marks=() if key(p) in CI else pytest.mark.slow)
        for p in points
    ]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """A deployed sample fleet of the module's own, with short drill objectives."""
    rig = Rig.start(tmp_path_factory.mktemp("interrupts") / "fleet")
    try:
        waves = rig.root / "regions" / "waves.toml"
        text = waves.read_text()
        waves.write_text(text[: text.index("[drill]")] + DRILL_SECTION)
        done = rig.deploy()
        assert done.outcome == "succeeded", done.error
        yield rig
    finally:
        rig.stop()


def _region_files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "regions").iterdir())}


def _stopped(rig: Rig, point: str, *args: str) -> tuple[int, str]:
    code, child = rig.run_child(*args, env={"ORCH_TEST_KILL_AT": point}, timeout=240)
    output = child.out.read_text() + child.err.read_text()
    if point.startswith("sigint@"):
        assert code == 130, output[-3000:]
        assert "Traceback" not in output
        assert "CancelledError" not in output
        assert output.strip().splitlines()[-1].startswith(("error:", "interrupted")), output
    else:
        assert code in (-9, 255), output[-3000:]
    return code, output


def _healthy_primaries(rig: Rig) -> list[str]:
    status = rig.invoke("status", "--json")
    doc = json.loads(status.stdout)
    return [
        m["id"]
        for region in doc["regions"].values()
        for m in region["machines"]
        if m["role"] == "primary" and m["healthy"]
    ]


def _never_healthy_when_split(rig: Rig) -> None:
    """Assert that ``status`` does not call a fleet with two answering primaries healthy.

    A fenced old primary (cordoned: the proxy sends it nothing) still says ``primary`` when
    asked directly; ``status`` must then report the split and exit 1, not "all healthy".
    """
    status = rig.invoke("status", "--json")
    doc = json.loads(status.stdout)
    if len(_healthy_primaries(rig)) > 1:
        assert status.returncode == 1
        assert doc["split_brain"], doc
        assert doc["healthy"] is False


@pytest.mark.parametrize("point", _params(DRILL_POINTS))
def test_a_drill_stopped_anywhere_is_resumed_to_one_primary(rig: Rig, point: str) -> None:
    files = _region_files(rig.root)
    before = rig.volume_ids()
    state = rig.root / ".orchestrator" / "drill.json"
    try:
        _stopped(rig, point, "drill", "--region", "syd", "--json")
        _never_healthy_when_split(rig)
        kept: set[str] = set()
        if state.exists():
            resumed = rig.invoke("drill", "--resume", "--json", timeout=300)
            assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
            report = json.loads(resumed.stdout)
            kept = set(report["details"].get("old_volumes") or [])
            lost = report["details"]["lost_writes"]
            assert isinstance(lost["count"], int), lost
        assert not state.exists()
    finally:
        if state.exists():
            # Leave the module's fleet usable for the next point, whatever failed here.
            rig.invoke("drill", "--abort", timeout=300)
    assert lock_holder(rig.root, rig.local.endpoint) is None
    status = rig.invoke("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert len(_healthy_primaries(rig)) == 1
    check_converged(rig, volumes_before=before | kept)
    assert _region_files(rig.root) == files


@pytest.mark.parametrize("case", _params(SCALE_POINTS, key=lambda c: c[0]))
def test_a_scale_stopped_anywhere_keeps_its_file_and_finishes_when_run_again(
    rig: Rig, case: tuple[str, dict[str, int]]
) -> None:
    point, flags = case
    if flags.get("count") == 1:
        # The scale-down needs a machine above the spec's to remove; put it there first.
        assert rig.scale("syd", count=2).ok
    files = _region_files(rig.root)
    before = rig.volume_ids()
    args = [f"--{k}={v}" for k, v in flags.items()]
    with RecordWriter(rig, f"scale-{point}") as writer:
        _stopped(rig, point, "scale", "--region", "syd", *args, "--yes", "--json")
        # The file is never ahead of the fleet.
        assert _region_files(rig.root) == files
        again = rig.scale("syd", **flags)
        assert again.ok, again
    assert _region_files(rig.root) != files
    check_converged(rig, volumes_before=before, acked=writer.acked)
    # Back to the module's starting size for the next case.
    assert rig.scale("syd", count=2, memory=256).ok


@pytest.mark.parametrize("point", _params(ROLLBACK_POINTS))
def test_a_rollback_stopped_anywhere_is_resumed_to_the_previous_release(
    rig: Rig, point: str
) -> None:
    old_tag = rig.image_tag()
    rig.set_image(f"rb-{abs(hash(point)) % 10_000}")
    assert rig.deploy().ok
    before = rig.volume_ids()
    with RecordWriter(rig, f"rollback-{point}") as writer:
        _stopped(rig, point, "rollback")
        resumed = rig.deploy(resume=True)
        assert resumed.ok, resumed
    rig.set_image(old_tag)
    check_converged(rig, volumes_before=before, acked=writer.acked)


@pytest.mark.parametrize("point", _params(DEPLOY_POINTS))
def test_a_deploy_stopped_by_ctrl_c_is_resumed(rig: Rig, point: str) -> None:
    rig.set_image(f"ctrlc-{abs(hash(point)) % 10_000}")
    before = rig.volume_ids()
    with RecordWriter(rig, f"deploy-{point}") as writer:
        _stopped(rig, point, "deploy")
        assert lock_holder(rig.root, rig.local.endpoint) is None
        resumed = rig.deploy(resume=True)
        assert resumed.ok, resumed
    check_converged(rig, volumes_before=before, acked=writer.acked)
