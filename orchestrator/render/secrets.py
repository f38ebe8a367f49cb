"""Views of ``invoke secrets``: names and digests, never values."""

from __future__ import annotations

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from orchestrator.appsecrets import SecretListing, SecretsResult

__all__ = ["secrets_change_line", "secrets_view"]


def secrets_view(listing: SecretListing) -> RenderableType:
    """Return the table of the app's secrets and how many machines run the current set."""
    table = Table(title=f"Secrets of {listing.app}", title_justify="left")
    table.add_column("name")
    table.add_column("digest")
    table.add_column("updated")
    for name, digest, updated in listing.secrets:
        table.add_row(name, digest, updated or "-")
    if not listing.secrets:
        table.add_row(Text("(none)", style="dim"), "", "")
    behind = listing.machines - listing.current
    rolled = Text(
        f"{listing.current}/{listing.machines} machine(s) run the current secrets",
        style="green" if not behind else "yellow",
    )
    if behind:
        rolled.append("; `invoke deploy` rolls them out to the rest")
    table.caption = rolled.plain
    return table


def secrets_change_line(result: SecretsResult) -> Text:
    """Return the line that says what ``secrets set``/``unset`` did (names only)."""
    names = ", ".join(result.names)
    if result.version is None:
        return Text(result.note or "nothing changed", style="yellow")
    text = Text(f"Secrets {names} now at version {result.version}", style="bold")
    if result.note:
        text.append(f"\n{result.note}")
    if result.restored:
        text.append("\nthe rollout failed: the previous values were put back", style="yellow")
    return text
