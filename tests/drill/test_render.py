"""The drill's console view: lines in a pipe, a live phase table on a terminal."""

from __future__ import annotations

import io

from rich.console import Console

from orchestrator.drill.events import (
    DrillFinished,
    DrillNote,
    DrillProgress,
    DrillStarted,
    PhaseFinished,
    PhaseStarted,
)
from orchestrator.drill.phases import Phase
from orchestrator.render.drill import DrillView, drill_summary

from .test_report import report

EVENTS = [
    DrillStarted("sample-fleet", "local", "syd", "syd", "dfw", at=1.0),
    PhaseStarted(Phase.PREFLIGHT, at=1.0),
    PhaseFinished(Phase.SCALE_UP, "skipped", "[drill] scale_survivors is off", at=1.0),
    PhaseFinished(Phase.PREFLIGHT, "ok", "3 region(s) healthy", started_at=1.0, at=1.5),
    PhaseStarted(Phase.PROMOTE, at=2.0),
    DrillProgress("dfw", 40, 3, 41, 0.0, 2.5, at=2.5),
    DrillNote("promote dfw: machine m1 updated", "info", at=2.6),
    DrillNote("the hook after promote failed", "warning", at=2.7),
    PhaseFinished(Phase.PROMOTE, "aborted", "cancelled", started_at=2.0, at=3.0),
    DrillFinished("aborted", "the drill passed max_duration (4s) during promote", at=3.1),
]


def test_in_a_pipe_each_finished_phase_is_one_line() -> None:
    out = io.StringIO()
    view = DrillView(Console(file=out, width=200), live=False)
    with view:
        for event in EVENTS:
            view(event)
    text = out.getvalue()
    assert "sample-fleet: drill of syd (local): syd fails over to dfw" in text
    assert "✓ preflight  0.5s  3 region(s) healthy" in text
    assert "■ promote  1.0s  cancelled" in text
    assert "! the hook after promote failed" in text
    assert "verdict: aborted" in text


def test_on_a_terminal_the_live_panel_shows_phases_and_counters() -> None:
    out = io.StringIO()
    view = DrillView(Console(file=out, width=160, force_terminal=True), live=True)
    with view:
        for event in EVENTS[:6]:
            view(event)
        panel = Console(file=io.StringIO(), width=160, record=True)
        panel.print(view._render())
        shown = panel.export_text()
    assert "steady state" in shown  # every phase has a row, pending ones too
    assert "[drill] scale_survivors is off" in shown  # plain text, not rich markup
    assert "writes → dfw: 40 acknowledged, 3 failed, last seq 41" in shown


def test_summary_shows_verdict_objectives_and_rpo() -> None:
    console = Console(file=io.StringIO(), width=160, record=True)
    console.print(drill_summary(report("failed")))
    text = console.export_text()
    assert "Drill of syd: FAILED: rpo_records 2 > 1" in text
    assert "rpo_records" in text
    assert "recovery point: 2 record(s) lost" in text


def test_a_dry_run_says_ready_and_its_objectives_not_run() -> None:
    from dataclasses import replace

    from orchestrator.render.drill_report import to_html, to_markdown

    dry = replace(report("ready"), reason=None, dry_run=True)
    out = Console(file=io.StringIO(), width=120, record=True)
    out.print(drill_summary(dry))
    shown = out.export_text()

    assert "Drill of syd: READY: the preflight passed" in shown
    assert "PASSED" not in shown
    assert " no " not in shown
    assert shown.count("not run") == len(dry.objectives)
    assert dry.exit_code == 0
    assert "**no**" not in to_markdown(dry)
    assert "| not run |" in to_markdown(dry)
    assert ">no<" not in to_html(dry)
