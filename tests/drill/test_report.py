"""The drill report: DESIGN.md's JSON shape, the verdict's objectives, Markdown and HTML."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.drill.clock import PhaseClock
from orchestrator.drill.measure import Ack, compute_rpo, compute_rto, traffic_stats
from orchestrator.drill.phases import Phase, PhaseSpan
from orchestrator.drill.report import DrillReport, Integrity, judge
from orchestrator.fleetconfig.model import DrillObjectives
from orchestrator.render.drill_report import report_paths, to_html, to_markdown, write_reports

T = 1_800_000_000.0


def report(verdict: str = "passed") -> DrillReport:
    spans = [
        PhaseSpan(Phase.PREFLIGHT, T, T + 0.5),
        PhaseSpan(Phase.STEADY_STATE, T + 0.5, T + 2.5),
        PhaseSpan(Phase.FAULT, T + 2.5, T + 2.6),
        PhaseSpan(Phase.DETECT, T + 2.6, T + 2.8),
        PhaseSpan(Phase.PROMOTE, T + 2.8, T + 6.0, detail="dfw promoted"),
        PhaseSpan(Phase.SCALE_UP, T + 6.0, T + 6.0, "skipped", "off"),
        PhaseSpan(Phase.VERIFY, T + 6.0, T + 7.0),
        PhaseSpan(Phase.RESTORE, T + 7.0, T + 8.0),
        PhaseSpan(Phase.INTEGRITY, T + 8.0, T + 9.0),
    ]
    acks = [Ack(n, 10 + n, "syd", "m1", T + n / 10, T + n / 10 + 0.01) for n in range(1, 6)]
    rpo = compute_rpo(acks, {11: 1, 12: 2, 13: 3})
    rto = compute_rto(
        T + 2.5, detected_at=T + 2.7, promoted_at=T + 5.9, first_write_at=T + 4.0, steady_at=T + 6.5
    )
    objectives = judge(
        DrillObjectives(rto_s=60, rpo_records=1, rpo_s=5),
        rto=rto,
        rpo=rpo,
        error_rate=0.0,
        duration_s=9.0,
    )
    return DrillReport(
        app="sample-fleet",
        backend="local",
        region="syd",
        primary_region="syd",
        promoted="dfw",
        verdict=verdict,  # type: ignore[arg-type]
        reason=None if verdict == "passed" else "rpo_records 2 > 1",
        started_at=T,
        finished_at=T + 9.0,
        t0=T + 2.5,
        phases=spans,
        objectives=objectives,
        rto=rto,
        rpo=rpo,
        baseline=traffic_stats([]),
        integrity=Integrity(
            primaries=("m9",), primary_region="syd", last_seq=20, checked=True, at_spec=True
        ),
    )


def test_json_has_design_md_keys_and_phase_objects() -> None:
    data = report("failed").to_json()
    assert {
        "region",
        "promoted",
        "verdict",
        "rto_s",
        "rpo_records",
        "rpo_s",
        "phases",
        "objectives",
    } <= set(data)
    assert data["region"] == "syd"
    assert data["promoted"] == "dfw"
    assert data["verdict"] == "failed"
    assert data["rto_s"] == 1.5
    assert data["rpo_records"] == 2
    assert data["rpo_s"] == 0.2
    first = data["phases"][0]
    assert {"name", "started_at", "finished_at"} <= set(first)
    assert first["name"] == "preflight"
    assert first["started_at"].endswith("Z")
    assert set(data["objectives"]) == {
        "rto_s",
        "rpo_records",
        "rpo_s",
        "max_error_rate",
        "max_duration_s",
    }
    assert data["objectives"]["rpo_records"] == {"target": 1.0, "measured": 2.0, "met": False}
    json.dumps(data)  # serialisable as is


def test_judge_marks_an_unmeasured_objective_as_not_met() -> None:
    objectives = judge(DrillObjectives(), rto=None, rpo=None, error_rate=None, duration_s=3.0)
    assert not objectives["rto_s"].met
    assert objectives["rto_s"].measured is None
    assert objectives["max_duration_s"].met


def test_exit_code_follows_the_verdict() -> None:
    assert report("passed").exit_code == 0
    assert report("failed").exit_code == 1
    assert report("aborted").exit_code == 1


def test_markdown_has_the_objectives_the_rpo_and_a_gantt_of_the_phases() -> None:
    text = to_markdown(report("failed"))
    assert "**Verdict: FAILED**: rpo_records 2 > 1" in text
    assert "```mermaid\ngantt" in text
    assert "section fail-over" in text
    assert "promote :2.800, 6.000" in text
    assert "- lost: 2 record(s)" in text
    assert "T0 (fault)" in text


def test_html_has_an_inline_svg_timeline_with_t0() -> None:
    page = to_html(report())
    assert page.startswith("<!doctype html>")
    assert "<svg" in page
    assert "T0: syd down" in page
    assert page.count("<rect") == len(report().phases)


def test_html_traffic_is_a_table_not_markdown_text() -> None:
    page = to_html(report())
    section = page[page.index("<h2>Traffic through the proxy</h2>") :]
    section = section[: section.index("<h2>", 4)] if "<h2>" in section[4:] else section
    assert "<th>error rate</th>" in section
    assert "<td>before the fault</td>" in section
    assert "|---" not in section
    assert "<pre>" not in section


def test_report_paths_write_both_formats(tmp_path: Path) -> None:
    assert report_paths(tmp_path / "r.md") == (tmp_path / "r.md", tmp_path / "r.html")
    assert report_paths(tmp_path / "r.html") == (tmp_path / "r.md", tmp_path / "r.html")
    assert report_paths(tmp_path / "r") == (tmp_path / "r", tmp_path / "r.html")
    md, html = write_reports(report(), tmp_path / "out" / "drill.html")
    assert md.read_text().startswith("# Drill report")
    assert "<svg" in html.read_text()


def test_phase_clock_times_phases_and_records_failures() -> None:
    times = iter([1.0, 2.0, 3.0, 3.0, 4.0, 5.0])
    events: list[object] = []
    clock = PhaseClock(events.append, now=lambda: next(times))
    with clock.phase(Phase.PREFLIGHT) as span:
        span.detail = "fine"
    clock.skip(Phase.PROMOTE, "replica region")
    try:
        with clock.phase(Phase.VERIFY):
            raise ValueError("no write acknowledged")
    except ValueError:
        pass
    assert [(s.phase, s.outcome, s.duration_s) for s in clock.spans] == [
        (Phase.PREFLIGHT, "ok", 1.0),
        (Phase.PROMOTE, "skipped", 0.0),
        (Phase.VERIFY, "failed", 1.0),
    ]
    assert clock.spans[-1].detail == "no write acknowledged"
    assert len(events) == 6
