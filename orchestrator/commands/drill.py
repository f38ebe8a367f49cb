"""``invoke drill``'s entry point; the drill itself is `orchestrator.drill` (docs/drills.md)."""

from __future__ import annotations

from orchestrator.drill.runner import run_drill

__all__ = ["run_drill"]
