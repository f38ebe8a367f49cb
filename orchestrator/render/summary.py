"""Final summaries: how a deploy went, and what ``invoke status`` found."""

from __future__ import annotations

from datetime import datetime

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from orchestrator.execute.executor import DeployResult, StepReport
from orchestrator.execute.status import FleetStatus, MachineStatus
from orchestrator.plan.eta import duration_text
from orchestrator.plan.groups import local_slot
from orchestrator.render.fit import NARROW, FitWidth
from orchestrator.render.live import STATUS_STYLE, format_elapsed

__all__ = ["NARROW", "FitWidth", "deploy_summary", "outcome_line", "status_view"]


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
    # The error itself is the command's last word (on stderr, with what to do next); the
    # line here only says how the rollback went, so nothing is printed twice.
    if result.rollback is not None:
        report = result.rollback
        run = f" (run {report.run})" if report.run is not None else ""
        where = ", ".join(report.regions) or "no region"
        to = f" to {report.release}" if report.release else ""
        how = "succeeded" if report.ok else "failed"
        text.append(
            f"\n↩ rollback of {where}{to} {how}{run}",
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

    def table(narrow: bool) -> Table:
        t = Table(
            title=f"{result.app} release {result.release}",
            title_justify="left",
            box=box.SIMPLE_HEAD if narrow else box.HEAVY_HEAD,
            pad_edge=not narrow,
            padding=(0, 1, 0, 0) if narrow else (0, 1),
            show_edge=not narrow,
        )
        t.add_column("step", style="bold", no_wrap=True)
        t.add_column("outcome", no_wrap=True)
        t.add_column("took", justify="right", no_wrap=True)
        t.add_column("what happened", overflow="fold", ratio=1)
        for step in result.steps:
            t.add_row(*_step_row(step, mark_rollback=result.rollback is not None))
        return t

    return Group(FitWidth(lambda: table(False), lambda _: table(True)), outcome_line(result))


def wave_timing_lines(result: DeployResult) -> Text:
    """Return one line per wave: how long it took beside how long it was expected to take."""
    text = Text()
    for w in result.waves:
        took = "did not run" if w.actual_s is None else f"took {duration_text(w.actual_s)}"
        text.append(f"wave {w.wave} ({', '.join(w.regions)}): {took}, ")
        text.append(f"expected {duration_text(w.expected_s)}\n", style="dim")
    return text


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


def _narrow_status(status: FleetStatus) -> Table:
    """Return the status table for 80 columns: volume and size under the machine id."""
    table = Table(
        title=f"{status.app} ({status.backend})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1, 0, 0),
        show_edge=False,
    )
    table.add_column("region", no_wrap=True)
    table.add_column("machine", no_wrap=True)
    for name in ("slot", "state", "release", "role"):
        table.add_column(name, no_wrap=True)
    table.add_column("health", overflow="fold", ratio=1)
    grouped = len({m.process_group for ms in status.regions.values() for m in ms}) > 1
    for code, machines in status.regions.items():
        if not machines:
            table.add_row(code, Text("no machines", style="dim"), *[""] * 5)
            continue
        for i, m in enumerate(machines):
            who = Text(m.id)
            who.append(f"\n{m.volume_id or 'no volume'}", style="dim")
            who.append(f"\n{m.cpus}x {m.cpu_kind} {m.memory_mb}MB", style="dim")
            table.add_row(
                code if i == 0 else "",
                who,
                _slot_text(m.slot, m.process_group if grouped else None),
                m.state,
                m.release or "-",
                m.role or "?",
                _health(m),
            )
    return table


def _slot_text(slot: int | None, group: str | None) -> str:
    if slot is None:
        return "-" if group is None else f"{group} -"
    return str(slot) if group is None else f"{group} {local_slot(slot)}"


def status_view(status: FleetStatus) -> RenderableType:
    """Return ``invoke status``'s table: one row per machine, grouped by region.

    On 80 columns each machine's volume and size go under its id, so no column is cut.
    """
    if not status.exists:
        return Text(f"{status.app}: the app does not exist yet on the {status.backend} backend")
    bad = status.unhealthy
    footer = (
        Text(f"{len(bad)} machine(s) unhealthy", style="bold red")
        if bad
        else Text("all machines healthy", style="green")
    )
    split = status.split_brain
    if split is not None:
        # Healthy machines on both sides of a split are the problem, not a reassurance.
        footer = Text(f"fleet problem: {split}", style="bold red")
        if bad:
            footer.append(f"\n{len(bad)} machine(s) unhealthy")
    return Group(FitWidth(lambda: _wide_status(status), lambda _: _narrow_status(status)), footer)


def _wide_status(status: FleetStatus) -> Table:
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
    return table
