"""The command line's words for a next step the engine names (`NextStep`).

Kept free of rich, so the notifications say the same as the terminal.
"""

from __future__ import annotations

from orchestrator.execute.events import NextStep

__all__ = ["FLEET_ROLES_HELP", "next_step_text", "with_next_step"]

_WORDS = {
    NextStep.RESUME: "run `invoke deploy --resume` to converge",
    NextStep.ROLLBACK: "`invoke rollback` puts the previous release back",
    NextStep.PROMOTE_OR_ABORT: "`invoke promote` continues, `invoke abort` stops (from any host)",
}

# After the writable-primary gate failed (`ErrorKind.FLEET` on a run's result).
FLEET_ROLES_HELP = (
    "Run `invoke status` to see each machine's role; after an interrupted drill, `invoke drill "
    "--resume` or `invoke drill --abort`"
)


def next_step_text(step: NextStep) -> str:
    """Return the command that takes ``step``, in the words the operator reads."""
    return _WORDS[step]


def with_next_step(message: str, step: NextStep | None) -> str:
    """Return ``message`` followed by its next step's words (``message`` alone without one)."""
    return f"{message}; {_WORDS[step]}" if step is not None else message
