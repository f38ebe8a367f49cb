"""A picture of a rollout: ``--report PATH`` of ``deploy``, ``rollback`` and ``scale``.

Two files, like the drill's report (`orchestrator.render.drill_report.report_paths`): Markdown and a
self-contained HTML page. Both hold the outcome, a timeline of every step per wave and region
(the HTML as an inline SVG: one row per region, one bar per step from its start to its end,
coloured by kind, red when it failed; an automatic rollback's steps on rows of their own), and
each gate with its figures (a metrics gate's requests, error rate and p95 against its limits).

`GateLog` is an event subscriber that keeps the gates' figures while the run goes; the rest
is pure: a `DeployResult` in, text out.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator.execute.events import Event, GateResult, RollbackStarted
from orchestrator.execute.results import DeployResult, StepReport
from orchestrator.render.drill_report import report_paths

__all__ = ["GateLog", "to_html", "to_markdown", "write_rollout_reports"]

# Bar colours by step kind (the part before the dot); a failed step is drawn red whatever it is.
_KIND_COLOUR = {
    "volume": "#1565c0",
    "machine": "#ef6c00",
    "gate": "#2e7d32",
}
_FAILED = "#c62828"
_SKIPPED = "#9e9e9e"
_OUTCOME_COLOUR = {
    "succeeded": "#2e7d32",
    "noop": "#2e7d32",
    "failed": "#c62828",
    "rolled_back": "#ef6c00",
}


@dataclass
class GateLog:
    """Keep each gate's verdict and figures as the run emits them (a bus subscriber).

    Keys are ``<phase>:<step id>`` (``deploy:syd:gate.metrics``, ``rollback:syd:gate.health``).
    """

    gates: dict[str, tuple[bool, str, Mapping[str, Any] | None]] = field(default_factory=dict)
    _phase: str = "deploy"

    def __call__(self, event: Event) -> None:
        """Take one event."""
        if isinstance(event, RollbackStarted):
            self._phase = "rollback"
        elif isinstance(event, GateResult):
            figures = dict(event.figures) if event.figures is not None else None
            self.gates[f"{self._phase}:{event.step.id}"] = (event.passed, event.detail, figures)


def _at(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _seconds(step: StepReport) -> float | None:
    start, end = _at(step.started_at), _at(step.finished_at)
    return None if start is None or end is None else (end - start).total_seconds()


def _title(result: DeployResult, command: str) -> str:
    what = {"deploy": "Deploy", "rollback": "Rollback", "scale": "Scale"}.get(command, command)
    return f"{what} report: {result.app}, release {result.release}"


def _summary(result: DeployResult) -> list[str]:
    lines = [
        f"outcome: {result.outcome}",
        f"run {result.run}, started {result.started_at}, finished {result.finished_at}",
        f"{result.mutating_steps} mutating step(s), {len(result.steps)} step(s) in all",
    ]
    if result.error:
        lines.append(f"first error: {result.error}")
    if result.rollback is not None:
        lines.append(result.rollback.describe())
    return lines


def _gate_rows(result: DeployResult, gates: GateLog) -> list[tuple[str, str, str, str]]:
    rows = []
    for step in result.steps:
        if not step.kind.startswith("gate."):
            continue
        verdict = {"succeeded": "passed", "failed": "failed"}.get(step.outcome, step.outcome)
        passed_detail_figures = gates.gates.get(f"{step.phase}:{step.id}")
        figures = ""
        if passed_detail_figures is not None and passed_detail_figures[2]:
            f = passed_detail_figures[2]
            figures = ", ".join(
                f"{k} {f[k]:.3g}" if isinstance(f[k], float) else f"{k} {f[k]}"
                for k in (
                    "requests",
                    "errors",
                    "error_rate",
                    "p95_ms",
                    "max_error_rate",
                    "max_p95_ms",
                )
                if k in f and f[k] is not None
            )
        detail = (step.error or "").removeprefix(f"{step.id}: ") or step.detail or ""
        name = f"↩ {step.id}" if step.phase == "rollback" else step.id
        rows.append((name, verdict, figures or "—", detail))
    return rows


def to_markdown(result: DeployResult, gates: GateLog | None = None, *, command: str) -> str:
    """Return the report as Markdown: summary, steps by wave and region, gates."""
    gates = gates or GateLog()
    lines = [f"# {_title(result, command)}", ""]
    lines += [f"- {line}" for line in _summary(result)]
    lines += ["", "## Timeline", "", "| wave | region | step | outcome | start | took |"]
    lines.append("|---|---|---|---|---|---|")
    for step in result.steps:
        took = _seconds(step)
        name = f"↩ {step.id}" if step.phase == "rollback" else step.id
        lines.append(
            f"| {step.wave} | {step.region} | {name} | {step.outcome} | "
            f"{step.started_at or '—'} | {'—' if took is None else f'{took:.1f}s'} |"
        )
    rows = _gate_rows(result, gates)
    if rows:
        lines += ["", "## Gates", "", "| gate | verdict | figures | detail |", "|---|---|---|---|"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines) + "\n"


def _svg_timeline(result: DeployResult, width: int = 900) -> str:
    """Return an inline SVG: a row per (phase, wave, region), a bar per step that ran."""
    ran = [s for s in result.steps if s.started_at and s.finished_at]
    rows: list[tuple[str, int, str]] = []
    for s in result.steps:
        key = (s.phase, s.wave, s.region)
        if key not in rows:
            rows.append(key)
    label_w, row_h, top = 170, 26, 34
    plot_w = width - label_w - 20
    height = top + row_h * max(len(rows), 1) + 30
    starts = [_at(s.started_at) for s in ran]
    ends = [_at(s.finished_at) for s in ran]
    t0 = min((t for t in starts if t), default=None)
    t1 = max((t for t in ends if t), default=None)
    span = max((t1 - t0).total_seconds(), 0.001) if t0 and t1 else 1.0

    def x(when: datetime | None) -> float:
        if when is None or t0 is None:
            return float(label_w)
        return label_w + plot_w * (when - t0).total_seconds() / span

    e = html.escape
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" '
        'font-size="12">',
        f'<text x="{label_w}" y="16" fill="#555">0 s</text>',
        f'<text x="{label_w + plot_w}" y="16" fill="#555" text-anchor="end">{span:.1f} s</text>',
    ]
    for i, (phase, wave, region) in enumerate(rows):
        y = top + i * row_h
        label = f"{'↩ ' if phase == 'rollback' else ''}wave {wave} · {region}"
        parts.append(f'<text x="4" y="{y + 16}">{e(label)}</text>')
        parts.append(
            f'<line x1="{label_w}" y1="{y + row_h - 2}" x2="{label_w + plot_w}" '
            f'y2="{y + row_h - 2}" stroke="#eee"/>'
        )
        for s in ran:
            if (s.phase, s.wave, s.region) != (phase, wave, region):
                continue
            left, right = x(_at(s.started_at)), x(_at(s.finished_at))
            colour = _KIND_COLOUR.get(s.kind.split(".")[0], "#555")
            if s.outcome == "failed":
                colour = _FAILED
            elif s.outcome in ("skipped", "cancelled"):
                colour = _SKIPPED
            took = _seconds(s) or 0.0
            parts.append(
                f'<rect class="step" x="{left:.1f}" y="{y + 4}" width="{max(right - left, 3):.1f}"'
                f' height="{row_h - 10}" fill="{colour}" rx="2">'
                f"<title>{e(s.id)}: {e(s.outcome)} in {took:.1f}s</title></rect>"
            )
    legend_y = top + row_h * max(len(rows), 1) + 18
    legend_x = label_w
    for name, colour in (*_KIND_COLOUR.items(), ("failed", _FAILED)):
        parts.append(
            f'<rect x="{legend_x}" y="{legend_y - 10}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{legend_x + 16}" y="{legend_y}">{e(name)}</text>'
        )
        legend_x += 110
    parts.append("</svg>")
    return "".join(parts)


def to_html(result: DeployResult, gates: GateLog | None = None, *, command: str) -> str:
    """Return the report as one self-contained HTML page with an inline SVG timeline."""
    gates = gates or GateLog()
    e = html.escape
    colour = _OUTCOME_COLOUR.get(result.outcome, "#000")
    summary = "".join(f"<li>{e(line)}</li>" for line in _summary(result))
    steps = "".join(
        f"<tr><td>{s.wave}</td><td>{e(s.region)}</td>"
        f"<td>{e(('↩ ' if s.phase == 'rollback' else '') + s.id)}</td><td>{e(s.outcome)}</td>"
        f"<td>{'—' if _seconds(s) is None else f'{_seconds(s):.1f}s'}</td>"
        f"<td>{e((s.error or '').removeprefix(f'{s.id}: ') or s.detail or '')}</td></tr>"
        for s in result.steps
    )
    gate_rows = "".join(
        f"<tr><td>{e(a)}</td><td>{e(b)}</td><td>{e(c)}</td><td>{e(d)}</td></tr>"
        for a, b, c, d in _gate_rows(result, gates)
    )
    gates_html = (
        "<h2>Gates</h2><table><tr><th>gate</th><th>verdict</th><th>figures</th>"
        f"<th>detail</th></tr>{gate_rows}</table>"
        if gate_rows
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{e(_title(result, command))}</title>
<style>
body {{ font-family: sans-serif; max-width: 960px; margin: 2em auto; color: #222; }}
.outcome {{ font-size: 1.4em; font-weight: bold; color: {colour}; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; font-size: 0.9em; }}
</style></head><body>
<h1>{e(_title(result, command))}</h1>
<p class="outcome">{e(result.outcome.upper())}</p>
<ul>{summary}</ul>
<h2>Timeline</h2>
{_svg_timeline(result)}
{gates_html}
<h2>Steps</h2>
<table><tr><th>wave</th><th>region</th><th>step</th><th>outcome</th><th>took</th>
<th>what happened</th></tr>{steps}</table>
</body></html>
"""


def write_rollout_reports(
    result: DeployResult, path: Path, *, command: str, gates: GateLog | None = None
) -> tuple[Path, Path]:
    """Write the Markdown and HTML reports for ``--report PATH``; return both paths."""
    md_path, html_path = report_paths(path)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(to_markdown(result, gates, command=command), encoding="utf-8")
    html_path.write_text(to_html(result, gates, command=command), encoding="utf-8")
    return md_path, html_path
