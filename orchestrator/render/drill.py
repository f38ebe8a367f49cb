"""Show a drill as it happens, and summarise its report.

`DrillView` is a drill-bus subscriber. On a terminal it keeps a rich `Live` panel: one row per
phase (status, elapsed, what it did) and a line of live counters (where writes go, how many
were acknowledged or failed, the newest seq, the survivors' error rate). In a pipe or a file it
prints one line per finished phase and per warning instead. `drill_summary` renders a finished
`DrillReport`: the verdict, the objectives, the RTO phases and the RPO.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from orchestrator.drill.events import (
    DrillEvent,
    DrillFinished,
    DrillNote,
    DrillProgress,
    DrillStarted,
    PhaseFinished,
    PhaseStarted,
)
from orchestrator.drill.phases import Phase
from orchestrator.drill.report import DrillReport
from orchestrator.render.live import LivePanel, format_elapsed

__all__ = ["DrillView", "drill_summary"]

_PHASE_STYLE = {
    "pending": ("·", "dim"),
    "running": ("▶", "bold yellow"),
    "ok": ("✓", "green"),
    "failed": ("✗", "bold red"),
    "aborted": ("■", "bold yellow"),
    "skipped": ("-", "dim"),
}
_NOTE_STYLE = {"info": "cyan", "warning": "yellow", "error": "bold red"}
_VERDICT_STYLE = {
    "passed": "bold green",
    "failed": "bold red",
    "aborted": "bold yellow",
    "ready": "bold cyan",
}


@dataclass(slots=True)
class _Row:
    phase: Phase
    status: str = "pending"
    started: float | None = None
    finished: float | None = None
    detail: str = ""


class DrillView(LivePanel):
    """Render drill events on a console.

    Args:
        console: where to draw.
        live: draw a live panel (default: when the console is a terminal).
    """

    def __init__(self, console: Console, *, live: bool | None = None) -> None:
        self.console = console
        self._live_wanted = console.is_terminal if live is None else live
        self._live: Live | None = None
        self._rows: dict[Phase, _Row] = {p: _Row(p) for p in Phase}
        self._title = ""
        self._progress: DrillProgress | None = None
        self._notes: list[Text] = []

    def _after_live(self) -> None:
        self.console.print(self._phase_table(time.time()))
        for note in self._notes:
            self.console.print(note)

    def __call__(self, event: DrillEvent) -> None:
        """Take one event."""
        if isinstance(event, DrillStarted):
            what = f"drill of {event.region} ({event.backend})"
            if event.promote:
                what += f": {event.primary_region} fails over to {event.promote}"
            self._title = f"{event.app}: {what}" + (" [dry run]" if event.dry_run else "")
            self._line(Text(self._title, style="bold"))
        elif isinstance(event, PhaseStarted):
            row = self._rows[event.phase]
            row.status, row.started, row.finished = "running", event.at, None
        elif isinstance(event, PhaseFinished):
            row = self._rows[event.phase]
            row.status, row.finished, row.detail = event.outcome, event.at, event.detail
            if row.started is None:
                row.started = event.started_at
            self._line(self._phase_line(row))
        elif isinstance(event, DrillProgress):
            self._progress = event
        elif isinstance(event, DrillNote):
            if event.level == "info" and self._live is not None:
                return
            text = Text(f"! {event.message}", style=_NOTE_STYLE.get(event.level, ""))
            if event.level != "info":
                self._notes.append(text)
            self._line(text)
        elif isinstance(event, DrillFinished):
            style = _VERDICT_STYLE.get(event.verdict, "")
            self._line(Text(f"verdict: {event.verdict}", style=style))

    def _line(self, text: Text) -> None:
        if self._live is None:
            self.console.print(text, soft_wrap=True)

    def _phase_line(self, row: _Row) -> Text:
        mark, style = _PHASE_STYLE.get(row.status, ("?", ""))
        line = Text(f"{mark} ", style=style)
        line.append(row.phase.label, style="bold")
        if row.started is not None and row.finished is not None and row.status != "skipped":
            line.append(f"  {format_elapsed(row.finished - row.started)}", style="dim")
        if row.detail:
            line.append(f"  {row.detail}", style="red" if row.status == "failed" else "")
        return line

    def _phase_table(self, now: float) -> Table:
        # Details and titles are plain text ("[drill] scale_survivors"), never rich markup.
        table = Table(title=Text(self._title) if self._title else None, expand=False)
        table.add_column("phase")
        table.add_column("status")
        table.add_column("elapsed", justify="right")
        table.add_column("detail", overflow="ellipsis", max_width=90, no_wrap=True)
        for row in self._rows.values():
            mark, style = _PHASE_STYLE.get(row.status, ("?", ""))
            elapsed = None
            if row.started is not None and row.status != "skipped":
                elapsed = (row.finished or now) - row.started
            table.add_row(
                row.phase.label,
                Text(f"{mark} {row.status}", style=style),
                format_elapsed(elapsed),
                Text(row.detail),
            )
        return table

    def _render(self) -> RenderableType:
        parts: list[RenderableType] = [self._phase_table(time.time())]
        p = self._progress
        if p is not None:
            parts.append(
                Text(
                    f"writes → {p.primary_region}: {p.writes_acked} acknowledged, "
                    f"{p.writes_failed} failed, last seq {p.last_seq}; survivors' error rate "
                    f"{p.error_rate:.2f}; {format_elapsed(p.elapsed_s)} elapsed",
                    style="cyan",
                )
            )
        return Group(*parts)


def drill_summary(report: DrillReport) -> RenderableType:
    """Return the end-of-drill summary: verdict, objectives, RTO phases, RPO, integrity."""
    table = Table(title="objectives", expand=False)
    table.add_column("objective")
    table.add_column("target", justify="right")
    table.add_column("measured", justify="right")
    table.add_column("met")
    for name, obj in report.objectives.items():
        measured = "—" if obj.measured is None else f"{obj.measured:.3g}"
        if report.dry_run:
            met = Text("not run", style="dim")
        else:
            met = Text("yes", style="green") if obj.met else Text("no", style="bold red")
        table.add_row(name, f"{obj.target:g}", measured, met)
    lines: list[RenderableType] = [table]
    if report.rto is not None:
        rto = report.rto
        parts = [
            ("detect", rto.detect_s),
            ("promote", rto.promote_s),
            ("first healthy (RTO)", rto.first_healthy_s),
            ("steady state", rto.steady_state_s),
        ]
        shown = ", ".join(f"{n} {v:.2f}s" for n, v in parts if v is not None)
        lines.append(Text(f"recovery after T0: {shown}"))
    if report.rpo is not None:
        rpo = report.rpo
        lines.append(
            Text(
                f"recovery point: {rpo.records} record(s) lost ({rpo.seconds:.2f}s of writes); "
                f"last acknowledged seq {rpo.last_acked_seq}, newest kept {rpo.last_present_seq}"
            )
        )
    integ = report.integrity
    if integ.checked:
        state = "every replica matches the primary" if integ.ok else "; ".join(integ.problems())
        lines.append(
            Text(
                f"integrity: primary {', '.join(integ.primaries) or 'none'} "
                f"({integ.primary_region or '?'}), last_seq {integ.last_seq}: {state}; "
                f"fleet at the spec: {'yes' if integ.at_spec else 'no'}",
                style="" if integ.ok else "red",
            )
        )
    verdict = Text(
        f"Drill of {report.region}: {report.verdict.upper()}",
        style=_VERDICT_STYLE.get(report.verdict, ""),
    )
    if report.reason:
        verdict.append(f": {report.reason}")
    elif report.verdict == "ready":
        verdict.append(": the preflight passed; a drill without --dry-run measures the objectives")
    verdict.append(f"  ({format_elapsed(report.duration_s)})", style="dim")
    lines.append(verdict)
    return Group(*lines)
