"""Typed events a drill emits while it runs, and the bus that delivers them.

The drill core never prints: it emits these on a `DrillBus` (the generic ``orchestrator.bus``),
and subscribers (the rich view in ``orchestrator.render.drill``, tests) do what they want with
them. Every event carries ``at``, the wall-clock time (epoch seconds) it was emitted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from orchestrator.bus import Bus
from orchestrator.drill.phases import Phase, PhaseOutcome

__all__ = [
    "DrillBus",
    "DrillEvent",
    "DrillFinished",
    "DrillNote",
    "DrillProgress",
    "DrillStarted",
    "NoteLevel",
    "PhaseFinished",
    "PhaseStarted",
    "Subscriber",
]

NoteLevel = Literal["info", "warning", "error"]


@dataclass(frozen=True, slots=True)
class DrillStarted:
    """A drill began.

    Attributes:
        app: the app.
        backend: ``local`` or ``fly``.
        region: the region taken down.
        primary_region: the primary region when the drill started.
        promote: the region that will be promoted, when the drill fails the primary over.
        dry_run: nothing will be changed.
        at: when.
    """

    app: str
    backend: str
    region: str
    primary_region: str
    promote: str | None
    dry_run: bool = False
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class PhaseStarted:
    """A phase began."""

    phase: Phase
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class PhaseFinished:
    """A phase ended.

    Attributes:
        phase: the phase.
        outcome: ``ok``, ``failed``, ``aborted`` or ``skipped``.
        detail: one line saying what it did or what went wrong.
        started_at: when it started (epoch seconds).
        at: when it ended.
    """

    phase: Phase
    outcome: PhaseOutcome
    detail: str = ""
    started_at: float | None = None
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class DrillProgress:
    """The drill's live counters, emitted about twice a second while traffic runs.

    Attributes:
        primary_region: where the canary writes now.
        writes_acked: canary writes the primary acknowledged so far.
        writes_failed: canary writes that failed so far.
        last_seq: the newest acknowledged record sequence, if any.
        error_rate: share of failed survivor probes in the guard's window.
        elapsed_s: seconds since the drill started.
        at: when.
    """

    primary_region: str
    writes_acked: int
    writes_failed: int
    last_seq: int | None
    error_rate: float
    elapsed_s: float
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class DrillNote:
    """Something worth telling the operator that is not a phase boundary."""

    message: str
    level: NoteLevel = "info"
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class DrillFinished:
    """A drill ended.

    Attributes:
        verdict: ``passed``, ``failed`` or ``aborted``.
        reason: why it failed or was aborted, one line, else ``None``.
        at: when.
    """

    verdict: str
    reason: str | None = None
    at: float = field(default_factory=time.time)


DrillEvent = DrillStarted | PhaseStarted | PhaseFinished | DrillProgress | DrillNote | DrillFinished
Subscriber = Callable[[DrillEvent], None]


class DrillBus(Bus[DrillEvent]):
    """Deliver drill events (`orchestrator.bus.Bus`); a failing subscriber is logged and skipped.

    A broken view must never stop a drill half-way, with a region down.
    """

    what = "drill"

    def note(self, message: str, level: NoteLevel = "info") -> None:
        """Emit a `DrillNote`."""
        self.emit(DrillNote(message, level))
