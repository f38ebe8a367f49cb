"""Draw ``invoke scale``: desired beside observed per region, and what a change wrote."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from orchestrator.commands.scale import VolumeExtend
from orchestrator.fleetconfig.edit import RegionEdit
from orchestrator.scale.report import SIZE_KEYS, RegionScale, ScaleReport
from orchestrator.scale.usage import CPU_LIMIT_PCT, MEMORY_LIMIT_PCT, VOLUME_LIMIT_PCT, RegionUsage

__all__ = ["edits_view", "extends_view", "scale_report_view"]

_LABELS = {
    "count": "COUNT",
    "cpu_kind": "KIND",
    "cpus": "CPUS",
    "memory_mb": "MEMORY",
    "volume_size_gb": "VOLUME",
}
_UNITS = {"memory_mb": " MB", "volume_size_gb": " GB"}


def _value(key: str, value: Any) -> str:
    if value is None:
        return "-"
    return f"{value}{_UNITS.get(key, '')}"


def _observed(entry: RegionScale, key: str) -> str:
    obs = entry.observed
    value = obs.value(key)
    if value is not None:
        text = _value(key, value)
    elif key in ("cpu_kind", "cpus", "memory_mb") and obs.count:
        text = "mixed"
    elif key == "volume_size_gb" and obs.volumes:
        text = "mixed: " + ", ".join(f"{s} GB" for s in obs.volume_sizes)
    else:
        text = "-"
    if key == "count" and obs.count and obs.started != obs.count:
        text += f" ({obs.started} started)"
    if key == "volume_size_gb" and obs.volumes:
        unattached = f", {obs.unattached} unattached" if obs.unattached else ""
        text += f" ({obs.volumes} volume{'s' if obs.volumes != 1 else ''}{unattached})"
    return text


def _region_header(entry: RegionScale) -> Text:
    title = Text(entry.code, style="bold blue")
    if entry.group is not None:
        title.append(f"  process group {entry.group}", style="bold")
    if entry.role:
        title.append(f"  {entry.role}", style="dim")
    if entry.desired is not None:
        title.append(f"  {entry.desired.source}", style="dim")
        if entry.desired.preset:
            title.append(f"  ({entry.desired.preset})", style="dim")
    else:
        title.append("  no region file: these machines are not in the spec", style="yellow")
    return title


def _region_table(entry: RegionScale) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("", style="bold")
    table.add_column("desired")
    table.add_column("observed")
    table.add_column("")
    for key in SIZE_KEYS:
        desired = _value(key, entry.desired.value(key)) if entry.desired is not None else "-"
        drift = key in entry.drift
        table.add_row(
            _LABELS[key],
            desired,
            Text(_observed(entry, key), style="bold yellow" if drift else ""),
            Text("≠ drift", style="bold yellow") if drift else Text("✓", style="green"),
        )
    sizes = entry.observed.sizes
    if len(sizes) > 1:
        table.caption = "sizes: " + ", ".join(
            f"{g.machines} x {g.cpu_kind} {g.cpus} CPU {g.memory_mb} MB" for g in sizes
        )
        table.caption_justify = "left"
    return table


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _usage_view(usage: RegionUsage) -> RenderableType:
    parts: list[RenderableType] = []
    p95 = "-" if usage.p95_ms is None else f"{usage.p95_ms:g} ms"
    rate = "-" if usage.error_rate is None else f"{usage.error_rate:.1%}"
    p95_limit = f" (limit {usage.max_p95_ms:g} ms)" if usage.max_p95_ms is not None else ""
    rate_limit = f" (limit {usage.max_error_rate:.0%})" if usage.max_error_rate is not None else ""
    line = Text("usage  ", style="bold")
    line.append(
        f"CPU {_pct(usage.cpu_pct)} (limit {CPU_LIMIT_PCT:.0f}%)  "
        f"memory {_pct(usage.memory_pct)} (limit {MEMORY_LIMIT_PCT:.0f}%)  "
        f"volume {_pct(usage.volume_pct)} full (limit {VOLUME_LIMIT_PCT:.0f}%)\n"
    )
    line.append(f"       p95 {p95}{p95_limit}  errors {rate}{rate_limit}")
    parts.append(line)
    for m in usage.machines:
        if m.error:
            parts.append(Text(f"  {m.machine_id}: {m.error}", style="dim"))
    for warning in usage.warnings:
        parts.append(Text(f"  ! {warning}", style="bold yellow"))
    return Group(*parts)


def scale_report_view(report: ScaleReport) -> RenderableType:
    """Return one table per region (COUNT, KIND, CPUS, MEMORY, VOLUME) and a drift summary."""
    parts: list[RenderableType] = [
        Text(
            f"{report.app} ({report.backend}): desired (regions/*.toml) beside observed "
            "(Machines API)",
            style="bold",
        )
    ]
    for entry in report.regions:
        parts.append(Text(""))
        parts.append(_region_header(entry))
        parts.append(_region_table(entry))
        if entry.usage is not None:
            parts.append(_usage_view(entry.usage))
    parts.append(Text(""))
    drifted = report.drifted
    if drifted:
        names = ", ".join(f"{r.code} ({', '.join(r.drift)})" for r in drifted)
        fix = " ".join(f"--region {r.code}" for r in drifted if r.desired is not None)
        line = Text(f"drift in {names}", style="bold yellow")
        if fix:
            line.append(f"; `invoke deploy {fix}` converges it", style="yellow")
        parts.append(line)
    else:
        parts.append(Text("every region is at its desired size", style="green"))
    return Group(*parts)


def edits_view(edits: Sequence[RegionEdit], *, dry_run: bool = False) -> RenderableType:
    """Return one line per region file: the values that change, or that none does."""
    lines = []
    for edit in edits:
        line = Text(f"{edit.path}: ", style="bold")
        if edit.changes:
            line.append(", ".join(f"{c.key} {c.old} → {c.new}" for c in edit.changes))
            if dry_run:
                line.append("  (dry run: not written)", style="dim")
        else:
            line.append("already says so; nothing to write", style="dim")
        lines.append(line)
    return Group(*lines)


def extends_view(extends: Sequence[VolumeExtend]) -> RenderableType:
    """Return one line per volume a scale would extend."""
    return Group(
        *(
            Text(f"{x.region}: extend volume {x.volume_id} from {x.from_gb} GB to {x.to_gb} GB")
            for x in extends
        )
    )
