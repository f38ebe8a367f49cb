"""``invoke volumes``: one row per volume, and what a prune would do; fits 80 columns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from orchestrator.volumes import VolumeInfo, VolumeList

__all__ = ["format_bytes", "prune_view", "volumes_view"]


def format_bytes(value: int | None) -> str:
    """Format a byte count as ``512 B``, ``1.2 MB``, ``3.4 GB`` (``—`` when unknown)."""
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def _since(volume: VolumeInfo) -> str:
    since = volume.unattached_since()
    return since[:16].replace("T", " ") if since else "?"


def _where(volume: VolumeInfo) -> Text:
    if volume.attached_machine_id:
        return Text(volume.attached_machine_id)
    reason = volume.kept_reason or "not in the journal"
    run = f", run {volume.kept_by_run}" if volume.kept_by_run is not None else ""
    return Text(f"kept: {reason}{run}, since {_since(volume)}", style="yellow")


def _table(volumes: Sequence[VolumeInfo], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("region")
    table.add_column("volume", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("used", justify="right", no_wrap=True)
    table.add_column("machine / why kept", overflow="fold")
    for v in volumes:
        table.add_row(v.region, v.id, f"{v.size_gb} GB", format_bytes(v.bytes_used), _where(v))
    return table


def volumes_view(listing: VolumeList) -> RenderableType:
    """Return the list of volumes and a line counting the unattached ones."""
    if not listing.volumes:
        return Text(f"{listing.app}: no volumes")
    kept = listing.unattached
    gb = sum(v.size_gb for v in kept)
    footer = (
        Text(
            f"{len(kept)} unattached volume(s), {gb} GB: `invoke volumes prune` destroys them "
            "after asking",
            style="yellow",
        )
        if kept
        else Text("every volume is attached", style="green")
    )
    return Group(_table(listing.volumes, f"{listing.app} volumes ({listing.backend})"), footer)


def prune_view(
    doomed: Sequence[VolumeInfo],
    refused: Sequence[VolumeInfo],
    lacking: Mapping[str, int | None],
) -> RenderableType:
    """Return what a prune will destroy and what it refuses to, and why."""
    parts: list[RenderableType] = []
    if doomed:
        parts.append(_table(doomed, f"to destroy: {len(doomed)} volume(s)"))
    for v in refused:
        count = lacking.get(v.id)
        why = (
            "cannot tell whether it holds records the primary lacks"
            if count is None
            else f"holds {count} record(s) the primary lacks"
        )
        parts.append(Text(f"kept {v.id} ({v.region}): {why}; --force destroys it", style="red"))
    if not doomed:
        parts.append(Text("nothing to prune"))
    return Group(*parts)
