"""Show the app's releases as recorded on Fly (``invoke releases``)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from orchestrator.execute.ledger import ReleaseEntry, RunIntent
from orchestrator.execute.restoredata import RestorePreview

__all__ = ["releases_view", "restore_points_view", "restore_preview_text"]

_STYLES = {
    "succeeded": "green",
    "noop": "dim",
    "running": "yellow",
    "interrupted": "yellow",
    "failed": "red",
    "rolled_back": "red",
}


def releases_view(
    app: str, entries: Sequence[ReleaseEntry], intent: RunIntent | None
) -> RenderableType:
    """Return the releases, newest first, like ``fly releases``; the current run's intent after."""
    if not entries:
        return Text(f"no releases of {app!r} recorded on Fly yet", style="dim")
    table = Table(title=f"{app}: releases (recorded on Fly)", title_justify="left")
    for column in ("release", "image", "command", "outcome", "by", "when"):
        table.add_column(column)
    for e in entries:
        outcome = e.outcome
        by = f"{e.by} {e.ci_url}".strip()
        table.add_row(
            e.release, e.image, e.command, Text(outcome, style=_STYLES.get(outcome, "")), by, e.at
        )
    points = restore_points_view(entries)
    parts: list[RenderableType] = [table] if points is None else [table, points]
    if intent is None or intent.phase == "finished":
        return Group(*parts) if len(parts) > 1 else table
    gated = ", ".join(intent.gated) or "none yet"
    note = Text(
        f"\nlast run: {intent.command} of {intent.release} by {intent.by}, {intent.phase}; "
        f"gates passed in: {gated}",
        style="dim",
    )
    return Group(*parts, note)


def restore_points_view(entries: Sequence[ReleaseEntry]) -> RenderableType | None:
    """Return each release's restore points (snapshots taken before it), or None if none."""
    table = Table(title="restore points (rollback --restore-data)", title_justify="left")
    for column in ("release", "region", "slot", "machine", "snapshot", "last_seq", "taken"):
        table.add_column(column)
    rows = 0
    for e in entries:
        for p in e.restore_points:
            seq = p.get("last_seq")
            table.add_row(
                e.release,
                str(p.get("region", "")),
                str(p.get("slot", "")),
                str(p.get("machine", "")),
                str(p.get("snapshot", "")),
                "?" if seq is None else str(seq),
                str(p.get("at", "")),
            )
            rows += 1
    return table if rows else None


def restore_preview_text(preview: RestorePreview) -> str:
    """Say what ``rollback --restore-data`` restores and which records it loses."""
    lost = preview.records_lost
    head = (
        f"Restoring data puts {len(preview.slots)} machine(s) back on volumes restored from the "
        f"snapshots taken before {preview.release} ({preview.taken_at or 'time unknown'})."
    )
    loss = (
        "The records written since cannot be counted (the app's /status did not say); they are "
        "lost."
        if lost is None
        else f"{lost} record(s) written since are lost."
    )
    lines = [head, loss]
    for s in preview.slots:
        p = s.point
        now = "?" if s.last_seq_now is None else str(s.last_seq_now)
        then = "?" if p.last_seq is None else str(p.last_seq)
        lost_here = "?" if s.lost is None else str(s.lost)
        lines.append(
            f"  {p.region} slot {p.slot}: {s.machine or 'no machine'} last_seq {now} -> {then} "
            f"from {p.snapshot} ({lost_here} lost); its volume {p.volume} is kept"
        )
    return "\n".join(lines)
