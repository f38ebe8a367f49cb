"""Final summaries: how a deploy went, and what ``invoke status`` found."""

from __future__ import annotations

from datetime import datetime

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from orchestrator.execute.executor import DeployResult, StepReport
from orchestrator.execute.status import FleetStatus, MachineStatus
from orchestrator.plan.groups import local_slot
from orchestrator.render.live import STATUS_STYLE, format_elapsed

__all__ = ["deploy_summary", "outcome_line", "status_view"]

_OUTCOME_STYLE = {
    "succeeded": "bold green",
    "noop": "green",
    "failed": "bold red",
    "rolled_back": "bold yellow",
}


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    a = datetime.fromisoformat(start.replace("Z", "+00:00"))
    b = datetime.fromisoformat(end.replace("Z", "+00:00"))
    return (b - a).total_seconds()


def outcome_line(result: DeployResult) -> Text:
    """Return the one line that ends a deploy: outcome, release, time, and the error if any."""
    style = _OUTCOME_STYLE.get(result.outcome, "")
    took = format_elapsed(_seconds(result.started_at, result.finished_at))
    if result.outcome == "noop":
        text = Text(
            f"Nothing to change: {result.app} already runs release {result.release} "
            "(0 mutating steps)",
            style=style,
        )
        if result.error:
            text.append(f"\n{result.error}", style="red")
        return text
    # A rollback's steps are counted apart from the deploy's (its line below says how it went).
    phase = "deploy" if any(s.phase == "deploy" for s in result.steps) else "rollback"
    done = sum(
        1 for s in result.steps if s.mutating and s.outcome == "succeeded" and s.phase == phase
    )
    text = Text(f"Release {result.release} {result.outcome}", style=style)
    text.append(
        f" in {took}: {done}/{result.mutating_steps} mutating step(s) done"
        + (f", run {result.run}" if result.run is not None else "")
    )
    if result.error:
        text.append(f"\n{result.error}", style="red")
    if result.rollback is not None:
        report = result.rollback
        text.append(
            f"\n↩ {report.describe()}" + (f" (run {report.run})" if report.run is not None else ""),
            style="yellow" if report.ok else "bold red",
        )
    return text


def _step_row(step: StepReport, *, mark_rollback: bool) -> tuple[str, Text, str, str]:
    mark, style = STATUS_STYLE.get(step.outcome, ("?", ""))
    return (
        f"↩ {step.id}" if mark_rollback and step.phase == "rollback" else step.id,
        Text(f"{mark} {step.outcome}", style=style),
        format_elapsed(_seconds(step.started_at, step.finished_at)),
        (step.error or "").removeprefix(f"{step.id}: ") or step.detail or "",
    )


def deploy_summary(result: DeployResult) -> RenderableType:
    """Return the final table of a deploy (one row per step) and its outcome line."""
    if not result.steps:
        return outcome_line(result)
    table = Table(title=f"{result.app} release {result.release}", title_justify="left")
    table.add_column("step", style="bold")
    table.add_column("outcome")
    table.add_column("took", justify="right")
    table.add_column("what happened", overflow="fold")
    for step in result.steps:
        table.add_row(*_step_row(step, mark_rollback=result.rollback is not None))
    return Group(table, outcome_line(result))


def _health(machine: MachineStatus) -> Text:
    if machine.healthy:
        return Text("✓ healthy", style="green")
    if machine.state != "started":
        return Text(f"✗ {machine.state}", style="bold red")
    bad = [f"{n}: {s}" for n, s, _ in machine.checks if s != "passing"]
    if bad:
        return Text("✗ " + ", ".join(bad), style="bold red")
    if machine.has_checks and not machine.checks:
        return Text("✗ no check results", style="bold red")
    return Text(f"✗ /status {machine.app_error or machine.app_status}", style="bold red")


def _slot_text(slot: int | None, group: str | None) -> str:
    if slot is None:
        return "-" if group is None else f"{group} -"
    return str(slot) if group is None else f"{group} {local_slot(slot)}"


def status_view(status: FleetStatus) -> RenderableType:
    """Return ``invoke status``'s table: one row per machine, grouped by region."""
    if not status.exists:
        return Text(f"{status.app}: the app does not exist yet on the {status.backend} backend")
    table = Table(title=f"{status.app} ({status.backend})", title_justify="left")
    # Ids are copied into other commands: never cut them short.
    for name in ("region", "machine", "slot", "state", "release", "role", "size", "volume"):
        table.add_column(name, no_wrap=name in ("machine", "release", "volume"))
    table.add_column("health")
    # With several process groups, a slot is named by its group, as fly status groups them.
    grouped = len({m.process_group for ms in status.regions.values() for m in ms}) > 1
    for code, machines in status.regions.items():
        if not machines:
            table.add_row(code, Text("no machines", style="dim"), *[""] * 7)
            continue
        for i, m in enumerate(machines):
            size = f"{m.cpus}x {m.cpu_kind} {m.memory_mb}MB"
            volume = m.volume_id or "-"
            table.add_row(
                code if i == 0 else "",
                m.id,
                _slot_text(m.slot, m.process_group if grouped else None),
                m.state,
                m.release or "-",
                m.role or "?",
                size,
                volume,
                _health(m),
            )
    bad = status.unhealthy
    footer = (
        Text(f"{len(bad)} machine(s) unhealthy", style="bold red")
        if bad
        else Text("all machines healthy", style="green")
    )
    return Group(table, footer)
