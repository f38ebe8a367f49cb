"""Disaster-recovery drills: take a region down, fail over, measure RTO and RPO, fail back.

``orchestrator.commands.drill.run_drill(settings, DrillRequest(region=...))`` runs one and
returns a `DrillReport`
(``to_json()`` is ``invoke drill --json``; ``orchestrator.render.drill_report`` writes it as
Markdown and HTML). The drill emits events on a `DrillBus`; ``orchestrator.render.drill``
draws them.
docs/drills.md explains what a drill does to a fleet and how to read its report.
"""

from __future__ import annotations

from orchestrator.drill.events import (
    DrillBus,
    DrillEvent,
    DrillFinished,
    DrillNote,
    DrillProgress,
    DrillStarted,
    PhaseFinished,
    PhaseStarted,
)
from orchestrator.drill.hooks import shell_hook
from orchestrator.drill.measure import Ack, RpoResult, RtoResult, compute_rpo, compute_rto
from orchestrator.drill.phases import Phase, PhaseSpan
from orchestrator.drill.report import DrillReport, Integrity, Objective, judge
from orchestrator.drill.state import DrillRequest

__all__ = [
    "Ack",
    "DrillBus",
    "DrillEvent",
    "DrillFinished",
    "DrillNote",
    "DrillProgress",
    "DrillReport",
    "DrillRequest",
    "DrillStarted",
    "Integrity",
    "Objective",
    "Phase",
    "PhaseFinished",
    "PhaseSpan",
    "PhaseStarted",
    "RpoResult",
    "RtoResult",
    "compute_rpo",
    "compute_rto",
    "judge",
    "shell_hook",
]
