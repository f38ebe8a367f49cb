"""Views of ``invoke ssh`` without a command: processes, volume and memory of one machine."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from orchestrator.ssh import Inspection

__all__ = ["inspection_view"]


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB"


def inspection_view(found: Inspection) -> RenderableType:
    """Return the processes table and the volume and memory lines of a machine."""
    m = found.machine
    table = Table(title=f"{m.id} ({m.name or m.region}) in {m.region}", title_justify="left")
    table.add_column("pid", justify="right")
    table.add_column("rss", justify="right")
    table.add_column("cpu", justify="right")
    table.add_column("listening")
    table.add_column("command", overflow="fold")
    for p in found.processes:
        table.add_row(
            str(p.pid),
            _mb(p.rss_bytes),
            f"{p.cpu_ms / 1000:.1f}s",
            ", ".join(p.listening),
            p.command,
        )
    lines = Text()
    if found.volume_path is None:
        lines.append("volume: none mounted\n")
    elif found.volume is None:
        lines.append(f"volume {found.volume_path}: df gave no answer\n", style="yellow")
    else:
        size, used, free, share = (found.volume.split() + ["?"] * 4)[:4]
        lines.append(f"volume {found.volume_path}: {used} used of {size} ({share}), {free} free\n")
    share_used = found.memory_used
    if share_used is None:
        lines.append(f"memory: processes hold {_mb(found.rss_bytes)}")
    else:
        style = "yellow" if share_used > 0.8 else ""
        lines.append(
            f"memory: processes hold {_mb(found.rss_bytes)} of {found.memory_mb} MB "
            f"({share_used:.0%})",
            style=style,
        )
    return Group(table, lines)
