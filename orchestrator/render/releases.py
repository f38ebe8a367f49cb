"""Show the app's releases as recorded on Fly (``invoke releases``)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from orchestrator.execute.ledger import ReleaseEntry, RunIntent

__all__ = ["releases_view"]

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
    if intent is None or intent.phase == "finished":
        return table
    gated = ", ".join(intent.gated) or "none yet"
    note = Text(
        f"\nlast run: {intent.command} of {intent.release} by {intent.by}, {intent.phase}; "
        f"gates passed in: {gated}",
        style="dim",
    )
    return Group(table, note)
