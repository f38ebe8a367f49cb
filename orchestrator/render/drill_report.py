"""Write a drill report for people: Markdown (with a Mermaid gantt) or HTML (with an SVG timeline).

``invoke drill --report PATH`` writes both: ``PATH`` in the format its extension names (``.md``
or ``.html``) and the same name with the other extension next to it (`report_paths`). Both show
the verdict, the objectives, the RTO phases, the RPO and the integrity check, and a timeline
of the phases with the fault (T0) marked. Pure: a `DrillReport` (``orchestrator.drill.report``,
the data, whose JSON is ``--json``) in, text out.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from orchestrator.drill.phases import Phase, iso_utc
from orchestrator.drill.report import DrillReport

__all__ = ["report_paths", "to_html", "to_markdown", "write_reports"]

# The gantt's sections: the phases between the fault and a recovered service, and those that
# put the fleet back.
_FAILOVER_PHASES = frozenset(
    {Phase.FAULT, Phase.DETECT, Phase.PROMOTE, Phase.SCALE_UP, Phase.VERIFY}
)
_FAILBACK_PHASES = frozenset(
    {Phase.RESTORE, Phase.RESEED, Phase.FAILBACK, Phase.SCALE_BACK, Phase.INTEGRITY}
)

_OBJECTIVE_LABELS = {
    "rto_s": ("recovery time (RTO)", "s"),
    "rpo_records": ("data lost (RPO)", " records"),
    "rpo_s": ("data lost (RPO)", "s"),
    "max_error_rate": ("survivor error rate", ""),
    "max_duration_s": ("drill duration", "s"),
}
_OUTCOME_COLOUR = {
    "ok": "#2e7d32",
    "failed": "#c62828",
    "aborted": "#ef6c00",
    "skipped": "#9e9e9e",
}
_VERDICT_COLOUR = {
    "passed": "#2e7d32",
    "failed": "#c62828",
    "aborted": "#ef6c00",
    "ready": "#00838f",
}


def report_paths(path: Path) -> tuple[Path, Path]:
    """Return (markdown path, html path) for ``--report PATH``.

    ``.html``/``.htm`` give the HTML there and Markdown beside it; anything else (``.md``, no
    extension) gives Markdown there and ``.html`` beside it.
    """
    if path.suffix.lower() in (".html", ".htm"):
        return path.with_suffix(".md"), path
    if path.suffix.lower() == ".md":
        return path, path.with_suffix(".html")
    return path, path.with_name(path.name + ".html")


def write_reports(report: DrillReport, path: Path) -> tuple[Path, Path]:
    """Write the Markdown and HTML reports for ``--report PATH``; return both paths."""
    md_path, html_path = report_paths(path)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(to_markdown(report), encoding="utf-8")
    html_path.write_text(to_html(report), encoding="utf-8")
    return md_path, html_path


def _num(value: float | None, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "—"
    if unit == " records":
        return f"{int(value)}{unit}"
    return f"{value:.{digits}f}{unit}"


def _objective_rows(report: DrillReport) -> list[tuple[str, str, str, str, bool]]:
    rows = []
    for key, obj in report.objectives.items():
        label, unit = _OBJECTIVE_LABELS.get(key, (key, ""))
        rows.append((key, label, _num(obj.target, unit), _num(obj.measured, unit), obj.met))
    return rows


def _rto_rows(report: DrillReport) -> list[tuple[str, str]]:
    rto = report.rto
    if rto is None:
        return []
    return [
        ("detect: the probes see the region down", _num(rto.detect_s, "s")),
        ("promote: the new primary runs as primary", _num(rto.promote_s, "s")),
        ("first healthy: a write is acknowledged again (the RTO)", _num(rto.first_healthy_s, "s")),
        ("steady state: writes and reads steadily served", _num(rto.steady_state_s, "s")),
    ]


def _headline(report: DrillReport) -> str:
    what = f"drill of {report.region}"
    if report.promoted:
        what += f": primary failed over {report.primary_region} → {report.promoted}"
    elif report.region != report.primary_region:
        what += f" (a replica region; {report.primary_region} stayed primary)"
    return what


def _gantt(report: DrillReport) -> list[str]:
    """Return a Mermaid gantt of the phases (seconds since the drill started)."""
    lines = [
        "```mermaid",
        "gantt",
        f"    title {report.app}: {_headline(report)}",
        "    dateFormat X",
        "    axisFormat %M:%S",
    ]
    start = report.started_at
    section = None
    for span in report.phases:
        if span.finished_at is None:
            continue
        now = "preparation"
        if span.phase in _FAILOVER_PHASES:
            now = "fail-over"
        elif span.phase in _FAILBACK_PHASES:
            now = "fail-back"
        if now != section:
            lines.append(f"    section {now}")
            section = now
        begin = round((span.started_at - start) * 1000)
        end = max(begin + 1, round((span.finished_at - start) * 1000))
        tag = {"failed": "crit, ", "aborted": "crit, ", "skipped": "done, "}.get(span.outcome, "")
        # Mermaid's X format is seconds; milliseconds keep sub-second phases visible.
        lines.append(f"    {span.phase.label} :{tag}{begin / 1000:.3f}, {end / 1000:.3f}")
    lines.append("```")
    return lines


def _text_timeline(report: DrillReport, width: int = 60) -> list[str]:
    """Return a fixed-width text picture of the phases, for terminals and plain viewers."""
    total = max(report.duration_s, 1e-6)
    out = []
    for span in report.phases:
        end = span.finished_at if span.finished_at is not None else report.finished_at
        a = int((span.started_at - report.started_at) / total * width)
        b = max(a + 1, int((end - report.started_at) / total * width))
        bar = " " * a + ("#" if span.outcome == "ok" else "x") * (b - a)
        dur = _num(end - span.started_at, "s", 1)
        out.append(f"{span.phase.label:>18} |{bar:<{width}}| {dur}")
    if report.t0 is not None:
        at = int((report.t0 - report.started_at) / total * width)
        out.append(f"{'T0 (fault)':>18} |{' ' * at}^")
    return out


def to_markdown(report: DrillReport) -> str:
    """Return the report as Markdown, with a Mermaid gantt and a text timeline."""
    lines = [
        f"# Drill report: {report.app}, region {report.region}",
        "",
        f"**Verdict: {report.verdict.upper()}**" + (f": {report.reason}" if report.reason else ""),
        "",
        f"- {_headline(report)}",
        f"- backend: {report.backend}; started {iso_utc(report.started_at)}, took "
        f"{report.duration_s:.1f}s",
    ]
    if report.t0 is not None:
        lines.append(f"- fault injected (T0) at {iso_utc(report.t0)}")
    if report.dry_run:
        lines.append("- dry run: nothing was changed")
    lines += [
        "",
        "## Objectives",
        "",
        "| objective | target | measured | met |",
        "|---|---|---|---|",
    ]
    for _key, label, target, measured, met in _objective_rows(report):
        shown = "not run" if report.dry_run else ("yes" if met else "**no**")
        lines.append(f"| {label} | ≤ {target} | {measured} | {shown} |")
    rto_rows = _rto_rows(report)
    if rto_rows:
        lines += ["", "## Recovery time (seconds after T0)", "", "| phase | time |", "|---|---|"]
        lines += [f"| {name} | {value} |" for name, value in rto_rows]
    if report.rpo is not None:
        rpo = report.rpo
        lines += [
            "",
            "## Recovery point",
            "",
            f"- newest write the old primary acknowledged: seq {rpo.last_acked_seq}",
            f"- newest of those the new primary holds: seq {rpo.last_present_seq}",
            f"- lost: {rpo.records} record(s), spanning {rpo.seconds:.3f}s of writes",
        ]
        if rpo.lost:
            seqs = ", ".join(str(a.seq) for a in rpo.lost[:50])
            more = f" (+{len(rpo.lost) - 50} more)" if len(rpo.lost) > 50 else ""
            lines.append(f"- lost canary writes (seq): {seqs}{more}")
    lines += ["", "## Traffic through the proxy", ""]
    lines += _traffic_md(report)
    lines += ["", "## Integrity after the drill", ""]
    integ = report.integrity
    if integ.checked:
        lines.append(
            f"- primary: {', '.join(integ.primaries) or 'none'} ({integ.primary_region or '?'}), "
            f"last_seq {integ.last_seq}, records digest `{(integ.digest or '')[:16]}`"
        )
        lines.append(f"- replicas matching the primary: {'all' if integ.ok else 'NOT all'}")
        lines += [f"  - {p}" for p in integ.problems()]
        lines.append(f"- fleet at the spec: {'yes' if integ.at_spec else 'no'}")
        lines += [f"  - {p}" for p in integ.spec_problems]
    else:
        lines.append("- not checked")
    lines += ["", "## Timeline", ""]
    lines += _gantt(report)
    lines += [
        "",
        "```text",
        *_text_timeline(report),
        "```",
        "",
        "| phase | started | took | outcome | detail |",
        "|---|---|---|---|---|",
    ]
    for span in report.phases:
        took = _num(span.duration_s, "s")
        detail = span.detail.replace("|", "\\|")
        lines.append(
            f"| {span.phase.label} | {iso_utc(span.started_at)} | {took} | {span.outcome} | "
            f"{detail} |"
        )
    notes = report.details.get("notes")
    if isinstance(notes, list) and notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    lines += [
        "",
        "<details><summary>Raw report (JSON)</summary>",
        "",
        "```json",
        json.dumps(report.to_json(), indent=2, sort_keys=True),
        "```",
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)


_TRAFFIC_HEADER = ("window", "requests", "errors", "error rate", "p50", "p95")


def _traffic_rows(report: DrillReport) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for name, stats in (("before the fault", report.baseline), ("during fail-over", report.during)):
        if stats is None:
            rows.append((name, "—", "—", "—", "—", "—"))
            continue
        rows.append(
            (
                name,
                str(stats.requests),
                str(stats.errors),
                f"{stats.error_rate:.3f}",
                _num(stats.p50_ms, " ms", 1),
                _num(stats.p95_ms, " ms", 1),
            )
        )
    return rows


def _canary_line(report: DrillReport) -> str | None:
    canary = report.canary
    if not canary:
        return None
    return (
        f"Canary writer: {canary.get('acked', 0)} acknowledged, {canary.get('failed', 0)} "
        f"failed of {canary.get('attempted', 0)} writes every "
        f"{canary.get('interval_ms', '?')} ms."
    )


def _traffic_md(report: DrillReport) -> list[str]:
    out = ["| " + " | ".join(_TRAFFIC_HEADER) + " |", "|---|---|---|---|---|---|"]
    out += ["| " + " | ".join(row) + " |" for row in _traffic_rows(report)]
    canary = _canary_line(report)
    if canary:
        out += ["", canary]
    return out


def _traffic_html(report: DrillReport) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in _TRAFFIC_HEADER)
    body = "".join(
        "<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>"
        for row in _traffic_rows(report)
    )
    canary = _canary_line(report)
    return f"<table><tr>{head}</tr>{body}</table>" + (f"<p>{e(canary)}</p>" if canary else "")


def _svg_timeline(report: DrillReport, width: int = 760) -> str:
    """Return an inline SVG: one bar per phase on a time axis, T0 marked."""
    label_w, row_h, top = 150, 22, 30
    plot_w = width - label_w - 20
    total = max(report.duration_s, 1e-6)
    height = top + row_h * len(report.phases) + 30

    def x(t: float) -> float:
        return label_w + (t - report.started_at) / total * plot_w

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="drill timeline" '
        'font-family="sans-serif" font-size="12">'
    ]
    # About ten ticks, on a round number of seconds.
    tick = next((t for t in (1, 2, 5, 10, 15, 30, 60, 120, 300) if total / t <= 12), 600)
    for i in range(0, int(total) + 1, tick):
        xt = label_w + i / total * plot_w
        parts.append(
            f'<line x1="{xt:.1f}" y1="{top - 8}" x2="{xt:.1f}" y2="{height - 24}" '
            'stroke="#e0e0e0"/>'
        )
        parts.append(f'<text x="{xt:.1f}" y="{height - 8}" text-anchor="middle">{i}s</text>')
    for row, span in enumerate(report.phases):
        y = top + row * row_h
        end = span.finished_at if span.finished_at is not None else report.finished_at
        x0, x1 = x(span.started_at), max(x(span.started_at) + 2.0, x(end))
        colour = _OUTCOME_COLOUR.get(span.outcome, "#1565c0")
        if span.outcome == "ok":
            colour = "#1565c0" if span.phase is not Phase.FAULT else "#6a1b9a"
        title = html.escape(
            f"{span.phase.label}: {end - span.started_at:.2f}s, {span.outcome}"
            + (f" ({span.detail})" if span.detail else "")
        )
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 14}" text-anchor="end">'
            f"{html.escape(span.phase.label)}</text>"
        )
        parts.append(
            f'<rect x="{x0:.1f}" y="{y + 3}" width="{x1 - x0:.1f}" height="{row_h - 6}" '
            f'rx="3" fill="{colour}"><title>{title}</title></rect>'
        )
    if report.t0 is not None:
        xt = x(report.t0)
        parts.append(
            f'<line x1="{xt:.1f}" y1="{top - 12}" x2="{xt:.1f}" y2="{height - 24}" '
            'stroke="#c62828" stroke-dasharray="4 3" stroke-width="1.5"/>'
        )
        parts.append(
            f'<text x="{xt + 4:.1f}" y="{top - 14}" fill="#c62828">T0: {report.region} down</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def to_html(report: DrillReport) -> str:
    """Return the report as one self-contained HTML page with an inline SVG timeline."""
    e = html.escape
    colour = _VERDICT_COLOUR.get(report.verdict, "#000")
    rows = "".join(
        f"<tr><td>{e(label)}</td><td>≤ {e(target)}</td><td>{e(measured)}</td>"
        + (
            "<td>not run</td></tr>"
            if report.dry_run
            else f'<td style="color:{"#2e7d32" if met else "#c62828"}">'
            f"{'yes' if met else 'no'}</td></tr>"
        )
        for _key, label, target, measured, met in _objective_rows(report)
    )
    rto = "".join(
        f"<tr><td>{e(name)}</td><td>{e(value)}</td></tr>" for name, value in _rto_rows(report)
    )
    phases = "".join(
        f"<tr><td>{e(s.phase.label)}</td><td>{e(iso_utc(s.started_at))}</td>"
        f"<td>{e(_num(s.duration_s, 's'))}</td><td>{e(s.outcome)}</td><td>{e(s.detail)}</td></tr>"
        for s in report.phases
    )
    rpo = ""
    if report.rpo is not None:
        r = report.rpo
        rpo = (
            "<h2>Recovery point</h2><ul>"
            f"<li>newest write the old primary acknowledged: seq {r.last_acked_seq}</li>"
            f"<li>newest of those the new primary holds: seq {r.last_present_seq}</li>"
            f"<li>lost: {r.records} record(s), spanning {r.seconds:.3f}s of writes</li></ul>"
        )
    integ = report.integrity
    problems = "".join(f"<li>{e(p)}</li>" for p in (*integ.problems(), *integ.spec_problems))
    integrity = (
        f"<p>Primary: {e(', '.join(integ.primaries) or 'none')} "
        f"({e(integ.primary_region or '?')}), last_seq {integ.last_seq}; replicas match: "
        f"{'yes' if integ.ok else 'no'}; fleet at the spec: {'yes' if integ.at_spec else 'no'}</p>"
        + (f"<ul>{problems}</ul>" if problems else "")
        if integ.checked
        else "<p>Not checked.</p>"
    )
    traffic = _traffic_html(report)
    raw = e(json.dumps(report.to_json(), indent=2, sort_keys=True))
    reason = f": {e(report.reason)}" if report.reason else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Drill report: {e(report.app)} {e(report.region)}</title>
<style>
body {{ font-family: sans-serif; max-width: 900px; margin: 2em auto; color: #212121; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }}
td, th {{ border: 1px solid #ddd; padding: 4px 8px; text-align: left; }}
.verdict {{ font-size: 1.4em; font-weight: bold; color: {colour}; }}
pre {{ background: #f5f5f5; padding: 8px; overflow: auto; }}
</style></head><body>
<h1>Drill report: {e(report.app)}, region {e(report.region)}</h1>
<p class="verdict">{e(report.verdict.upper())}{reason}</p>
<p>{e(_headline(report))}. Backend {e(report.backend)}; started {e(iso_utc(report.started_at))},
took {report.duration_s:.1f}s.</p>
<h2>Timeline</h2>
{_svg_timeline(report)}
<h2>Objectives</h2>
<table><tr><th>objective</th><th>target</th><th>measured</th><th>met</th></tr>{rows}</table>
<h2>Recovery time (seconds after T0)</h2>
<table>{rto}</table>
{rpo}
<h2>Traffic through the proxy</h2>
{traffic}
<h2>Integrity after the drill</h2>
{integrity}
<h2>Phases</h2>
<table><tr><th>phase</th><th>started</th><th>took</th><th>outcome</th><th>detail</th></tr>{phases}</table>
<details><summary>Raw report (JSON)</summary><pre>{raw}</pre></details>
</body></html>
"""
