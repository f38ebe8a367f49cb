"""Show an ``invoke rehearse`` verdict and its figures."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from orchestrator.commands.rehearse import Rehearsal

__all__ = ["rehearsal_view"]


def rehearsal_view(r: Rehearsal) -> RenderableType:
    """Return the verdict line and a table of what was checked."""
    verdict = Text(
        f"Rehearsal of {r.release} in {r.region} {'passed' if r.passed else 'failed'} "
        f"in {r.duration_s:.1f}s",
        style="green" if r.passed else "red",
    )
    table = Table(show_header=True, title_justify="left")
    table.add_column("check")
    table.add_column("result")
    if r.source_volume:
        table.add_row("data", f"fork {r.fork or '?'} of {r.source_volume}")
    table.add_row("machine", f"{r.machine or '?'} (cordoned: outside the proxy's rotation)")
    if r.release_command is not None:
        table.add_row("release command", f"exit {r.release_command.get('exit_code')}")
    if r.health:
        checks = r.health.get("checks") or {}
        said = ", ".join(f"{k} {v}" for k, v in sorted(checks.items())) or "none"
        table.add_row("checks", said)
        seq = r.health.get("last_seq")
        role = r.health.get("role") or ""
        said = f"{r.health.get('status')} {role}".strip()
        table.add_row("/status", said if seq is None else f"{said} last_seq {seq}")
    m = r.metrics
    if m is not None:
        p95 = "n/a" if m.p95_ms is None else f"{m.p95_ms:g} ms"
        table.add_row(
            "metrics",
            f"{m.requests} requests in {m.bake_s:g}s: error rate {m.error_rate:.3f} "
            f"(max {m.max_error_rate:g}), p95 {p95} (max {m.max_p95_ms:g} ms)",
        )
    parts: list[RenderableType] = [verdict, table]
    for problem in r.problems:
        parts.append(Text(f"✗ {problem}", style="red"))
    if r.cleaned:
        parts.append(Text(f"destroyed first what a killed rehearsal left: {', '.join(r.cleaned)}"))
    parts.append(Text("the rehearsal machine and the fork are destroyed", style="dim"))
    return Group(*parts)
