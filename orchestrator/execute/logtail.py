"""The tail of a machine's output, for messages about a machine that failed.

Fly serves machine logs through its log pipeline, not the Machines API; the embedded local Fly
keeps each machine's output in a file. While a deploy runs against the local Fly,
:data:`MACHINE_LOGS` names its ``machines/`` directory (set by the deploy) and :func:`output`
quotes the last lines; against Fly.io it says how to read them with ``fly logs``.
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path

__all__ = ["MACHINE_LOGS", "TAIL_LINES", "output", "tail"]

MACHINE_LOGS: ContextVar[Path | None] = ContextVar("machine_logs", default=None)
TAIL_LINES = 20
# The local Fly's own lines in a machine's log (process started, exited...).
_LOCAL_PREFIX = "[localfly]"


def tail(machine_id: str, lines: int = TAIL_LINES) -> list[str]:
    """Return the last lines the machine's process wrote (``[]`` when unknown)."""
    logs = MACHINE_LOGS.get()
    if logs is None:
        return []
    try:
        text = (logs / machine_id / "log").read_text(errors="replace")
    except OSError:
        return []
    own = [line for line in text.splitlines() if not line.startswith(_LOCAL_PREFIX)]
    return own[-lines:]


def output(machine_id: str, lines: int = TAIL_LINES) -> str:
    """Return one phrase quoting the machine's last output lines, or where to find them."""
    if MACHINE_LOGS.get() is None:
        return f"its output: `fly logs --machine {machine_id}`"
    found = tail(machine_id, lines)
    if not found:
        return "it printed nothing"
    return "last lines of its output: " + " | ".join(found)
