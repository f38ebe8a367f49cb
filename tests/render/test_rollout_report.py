"""The rollout report: Markdown and HTML with an SVG timeline of every step, gates' figures."""

from __future__ import annotations

from pathlib import Path

from orchestrator.execute.events import GateResult
from orchestrator.execute.results import DeployResult, RollbackReport, StepReport
from orchestrator.plan.steps import Step, StepKind
from orchestrator.render.rollout_report import GateLog, to_html, to_markdown, write_rollout_reports


def _step(sid: str, start: int, end: int, outcome: str = "succeeded", phase: str = "deploy"):
    region, kind = sid.split(":")[0], sid.split(":")[1]
    return StepReport(
        id=sid,
        kind=kind,
        region=region,
        wave=1 if region == "syd" else 2,
        started_at=f"2026-01-01T10:00:{start:02d}.000000Z",
        finished_at=f"2026-01-01T10:00:{end:02d}.000000Z",
        outcome=outcome,  # type: ignore[arg-type]
        error=f"{sid}: check failing" if outcome == "failed" else None,
        mutating=kind.startswith(("machine", "volume")),
        phase=phase,  # type: ignore[arg-type]
    )


STEPS = (
    _step("syd:machine.update:1", 0, 2),
    _step("syd:gate.health", 2, 3),
    _step("syd:gate.metrics", 3, 6),
    _step("dfw:machine.update:1", 6, 9, "failed"),
    _step("dfw:machine.update:1", 9, 11, phase="rollback"),
)
RESULT = DeployResult(
    release="v2-95c318e0",
    outcome="rolled_back",
    mutating_steps=2,
    steps=STEPS,
    error="dfw:machine.update:1: check failing",
    run=7,
    app="sample-fleet",
    started_at="2026-01-01T10:00:00.000000Z",
    finished_at="2026-01-01T10:00:11.000000Z",
    rollback=RollbackReport(
        "rollback_wave", ("dfw",), "v1-92d1226d", "check failing", 8, "succeeded"
    ),
)


def _gates() -> GateLog:
    log = GateLog()
    gate = Step(id="syd:gate.metrics", kind=StepKind.GATE_METRICS, region="syd", wave=1)
    figures = {"requests": 113, "errors": 0, "error_rate": 0.0, "p95_ms": 2.5, "max_p95_ms": 500}
    log(GateResult(gate, True, "passed", figures))
    return log


def test_markdown_lists_every_step_and_the_gates_figures() -> None:
    text = to_markdown(RESULT, _gates(), command="deploy")

    assert text.startswith("# Deploy report: sample-fleet, release v2-95c318e0")
    assert "| 2 | dfw | ↩ dfw:machine.update:1 | succeeded |" in text
    assert "| syd:gate.metrics | passed | requests 113, errors 0" in text
    assert "p95_ms 2.5" in text
    assert "rolled back dfw to v1-92d1226d" in text


def test_html_draws_a_bar_per_step_on_a_row_per_wave_and_region() -> None:
    page = to_html(RESULT, _gates(), command="deploy")

    assert page.count('<rect class="step"') == len(STEPS)
    assert "wave 1 · syd" in page
    assert "wave 2 · dfw" in page
    assert "↩ wave 2 · dfw" in page
    assert 'fill="#c62828"' in page  # the failed update


def test_both_files_are_written_beside_each_other(tmp_path: Path) -> None:
    md, page = write_rollout_reports(RESULT, tmp_path / "out" / "r.html", command="rollback")

    assert (md.name, page.name) == ("r.md", "r.html")
    assert md.read_text().startswith("# Rollback report")
    assert "<svg" in page.read_text()
