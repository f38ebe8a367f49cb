"""Show the app's deploy lock (``invoke unlock``) and what ``--force`` broke."""

from __future__ import annotations

from rich.text import Text

from orchestrator.execute.lock import LockState

__all__ = ["lock_view"]


def lock_view(app: str, state: LockState, *, broke: bool) -> Text:
    """Return who holds ``app``'s deploy lock, or, after ``--force``, whom it was taken from."""
    if state.machine_id is None:
        return Text(f"app {app!r} has no deploy lock yet: nothing holds it", style="dim")
    if state.holder is None:
        text = Text(f"the deploy lock of {app!r} is free", style="green")
        if state.last_holder is not None:
            verb = "cleared the record of" if broke else "last held by"
            text.append(
                f"\n  {verb} {state.last_holder.describe()}, which ended without releasing it "
                "(killed, or its heartbeat stopped)"
            )
        return text
    age = state.heartbeat_age()
    beat = f"last heartbeat {age:.0f} s ago, " if age is not None else ""
    lapse = f"{beat}lapses in {state.expires_in():.0f} s unless renewed"
    if not broke:
        text = Text(f"the deploy lock of {app!r} is held\n", style="yellow")
        text.append(f"  by {state.holder.describe()}\n  {lapse}\n")
        text.append("  `invoke unlock --force` breaks it", style="dim")
        return text
    text = Text(f"broke the deploy lock of {app!r}\n", style="bold red")
    text.append(f"  it was held by {state.holder.describe()} ({lapse})\n")
    text.append(
        "  if that run is still alive, its next heartbeat finds the lock gone and it stops at "
        "once, leaving its work journaled as interrupted; `invoke deploy --resume` finishes it\n"
    )
    text.append(
        "  if it died, nothing else was running: the lock was only waiting for its lease to lapse"
    )
    return text
