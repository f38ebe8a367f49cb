"""One or two lines of cost: the fleet's month now, and what a change adds or saves."""

from __future__ import annotations

from rich.text import Text

from orchestrator.cost import Cost
from orchestrator.pricing import FLY_PRICES, format_usd

__all__ = ["cost_lines"]


def _parts(cost: Cost) -> str:
    parts = [
        f"{cost.machine_count} machines {format_usd(cost.machines)}",
        f"{cost.volume_gb} GB volumes {format_usd(cost.volumes)}",
    ]
    if cost.snapshots is not None:
        parts.append(f"snapshots {format_usd(cost.snapshots)}")
    return ", ".join(parts)


def cost_lines(now: Cost, after: Cost | None = None, *, what: str = "after this plan") -> Text:
    """Return the month's cost at Fly.io prices (dated), and the change ``after`` brings."""
    text = Text()
    text.append(f"monthly cost: {format_usd(now.total)}", style="bold")
    text.append(f" ({_parts(now)})")
    if after is not None:
        delta = after.total - now.total
        if delta == 0:
            text.append(f"\n{what}: no change to it")
        else:
            text.append(
                f"\n{what}: {format_usd(delta, signed=True)}/month → {format_usd(after.total)} "
                f"({_parts(after)})",
                style="yellow" if delta > 0 else "green",
            )
    text.append(
        f"\nprices: {FLY_PRICES.source} of {FLY_PRICES.as_of.isoformat()}, running all month",
        style="dim",
    )
    return text
