"""Run plans against the Machines API: the executor, its events, the journal and the deploy lock.

``executor.Executor`` walks a plan's graph and emits ``events``; ``journal.Journal`` records runs,
steps and machine configs in SQLite; ``lock.DeployLock`` keeps one deploy per app. ``deploy``
(validate, connect, lock, observe, plan, execute) and ``status`` are what the command line calls.
"""

from __future__ import annotations

from orchestrator.execute.context import ExecuteOptions
from orchestrator.execute.events import (
    Event,
    EventBus,
    GateResult,
    Note,
    ReleaseFinished,
    ReleaseStarted,
    StepFinished,
    StepStarted,
)
from orchestrator.execute.executor import DeployResult, Executor, StepReport
from orchestrator.execute.journal import Journal
from orchestrator.execute.lock import DeployLock, LockHolder

__all__ = [
    "DeployLock",
    "DeployResult",
    "Event",
    "EventBus",
    "ExecuteOptions",
    "Executor",
    "GateResult",
    "Journal",
    "LockHolder",
    "Note",
    "ReleaseFinished",
    "ReleaseStarted",
    "StepFinished",
    "StepReport",
    "StepStarted",
]
