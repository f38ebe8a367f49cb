"""The embedded local Fly: the Machines API on loopback, machines as local processes.

Start one with ``control.ensure_running(state_dir)`` (or ``cli.up(root)``), stop it with
``control.stop(state_dir)``; ``python -m orchestrator.localfly serve`` runs it in the
foreground. See docs/local-fly.md.
"""

from __future__ import annotations

from orchestrator.localfly.control import (
    Endpoint,
    LocalStatus,
    StopSummary,
    ensure_running,
    status,
    stop,
)

__all__ = ["Endpoint", "LocalStatus", "StopSummary", "ensure_running", "status", "stop"]
