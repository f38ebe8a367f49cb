"""The interrupt and crash matrices of drills, scales, rollbacks and deploys: points and runs.

Shared by `tests/reliability/test_interrupt_matrix.py` (a subset in CI, every point with
``--runslow``) and ``bench/reliability.py`` (every point, as many rounds as asked). Each
``*_point`` function stops the orchestrator at one point of one command, runs the documented
recovery and checks the end conditions, raising ``AssertionError`` with what did not hold; it
leaves the rig ready for the next point. The orchestrator runs as its own process and is
stopped by its test hook (`orchestrator.execute.failpoints`): ``kill -9`` (the process SIGKILLs
itself, no cleanup) or ``sigint@`` (it sends itself SIGINT, as an operator's Ctrl-C, and
handles it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from execute.localfleet import lock_holder

from .harness import RecordWriter, Rig, check_converged

__all__ = [
    "DEPLOY_POINTS",
    "DRILL_POINTS",
    "MATRICES",
    "ROLLBACK_POINTS",
    "SCALE_POINTS",
    "deploy_point",
    "drill_point",
    "prepare",
    "rollback_point",
    "scale_point",
]

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
SCALE_POINTS: tuple[tuple[str, dict[str, int]], ...] = (
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


def prepare(rig: Rig) -> None:
    """Give a fresh rig the drills' short objectives and deploy it."""
    waves = rig.root / "regions" / "waves.toml"
    text = waves.read_text()
    waves.write_text(text[: text.index("[drill]")] + DRILL_SECTION)
    done = rig.deploy()
    assert done.outcome == "succeeded", done.error


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


def drill_point(rig: Rig, point: str, round_: int = 0) -> None:
    """Stop ``invoke drill --region syd`` at ``point``; ``drill --resume`` ends at one primary.

    While stopped, ``status`` never calls two primaries healthy. After recovery: one primary,
    in syd, the fleet at the spec (`check_converged`, the old primary's kept volumes allowed),
    no lease held, the region files untouched, the state file gone.
    """
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
            # Leave the fleet usable for the next point, whatever failed here.
            rig.invoke("drill", "--abort", timeout=300)
    assert lock_holder(rig.root, rig.local.endpoint) is None
    status = rig.invoke("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert len(_healthy_primaries(rig)) == 1
    check_converged(rig, volumes_before=before | kept)
    assert _region_files(rig.root) == files


def scale_point(rig: Rig, case: tuple[str, dict[str, int]], round_: int = 0) -> None:
    """Stop ``invoke scale`` at a point; its file has not moved, and the same scale finishes.

    The scales are syd 2 → 3, a size change and 3 → 2; every acknowledged record must be on
    every machine after, and syd is put back at 2 machines of 256 MB.
    """
    point, flags = case
    if flags.get("count") == 1:
        # The scale-down needs a machine above the spec's to remove; put it there first.
        assert rig.scale("syd", count=2).ok
    files = _region_files(rig.root)
    before = rig.volume_ids()
    args = [f"--{k}={v}" for k, v in flags.items()]
    with RecordWriter(rig, f"scale-{point}-{round_}") as writer:
        _stopped(rig, point, "scale", "--region", "syd", *args, "--yes", "--json")
        # The file is never ahead of the fleet.
        assert _region_files(rig.root) == files
        again = rig.scale("syd", **flags)
        assert again.ok, again
    assert _region_files(rig.root) != files
    check_converged(rig, volumes_before=before, acked=writer.acked)
    # Back to the starting size for the next point.
    assert rig.scale("syd", count=2, memory=256).ok


def rollback_point(rig: Rig, point: str, round_: int = 0) -> None:
    """Stop ``invoke rollback`` (v2 back to v1) at ``point``; ``deploy --resume`` finishes it.

    It ends on v1 everywhere with every acknowledged record kept.
    """
    old_tag = rig.image_tag()
    rig.set_image(f"rb-{abs(hash(point)) % 10_000}-{round_}")
    assert rig.deploy().ok
    before = rig.volume_ids()
    with RecordWriter(rig, f"rollback-{point}-{round_}") as writer:
        _stopped(rig, point, "rollback")
        resumed = rig.deploy(resume=True)
        assert resumed.ok, resumed
    rig.set_image(old_tag)
    check_converged(rig, volumes_before=before, acked=writer.acked)


def deploy_point(rig: Rig, point: str, round_: int = 0) -> None:
    """Ctrl-C a deploy of a new release at ``point``; ``deploy --resume`` finishes it."""
    rig.set_image(f"ctrlc-{abs(hash(point)) % 10_000}-{round_}")
    before = rig.volume_ids()
    with RecordWriter(rig, f"deploy-{point}-{round_}") as writer:
        _stopped(rig, point, "deploy")
        assert lock_holder(rig.root, rig.local.endpoint) is None
        resumed = rig.deploy(resume=True)
        assert resumed.ok, resumed
    check_converged(rig, volumes_before=before, acked=writer.acked)


# matrix → (its points, the run of one point, a point's name)
MATRICES: dict[str, tuple[tuple[Any, ...], Callable[..., None], Callable[[Any], str]]] = {
    "drill": (DRILL_POINTS, drill_point, str),
    "scale": (SCALE_POINTS, scale_point, lambda case: str(case[0])),
    "rollback": (ROLLBACK_POINTS, rollback_point, str),
    "deploy": (DEPLOY_POINTS, deploy_point, str),
}
