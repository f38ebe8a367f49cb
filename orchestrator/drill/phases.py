"""Name the phases of a drill and describe one as it ran.

A drill is a fixed sequence of phases (some skipped when they do not apply: a replica region
has nothing to promote). `PhaseSpan` is one phase's start, end and outcome;
``orchestrator.drill.clock`` times them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

__all__ = [
    "Phase",
    "PhaseOutcome",
    "PhaseSpan",
    "iso_utc",
]

PhaseOutcome = Literal["ok", "failed", "aborted", "skipped"]


class Phase(StrEnum):
    """The phases of a drill, in the order they run."""

    PREFLIGHT = "preflight"
    STEADY_STATE = "steady_state"
    FAULT = "fault"
    DETECT = "detect"
    PROMOTE = "promote"
    SCALE_UP = "scale_up"
    VERIFY = "verify"
    RESTORE = "restore"
    RESEED = "reseed"
    SCALE_BACK = "scale_back"
    FAILBACK = "failback"
    INTEGRITY = "integrity"

    @property
    def label(self) -> str:
        """Return the phase as a reader sees it (``steady state``)."""
        return _TITLES[self]


_TITLES = {
    Phase.PREFLIGHT: "preflight",
    Phase.STEADY_STATE: "steady state",
    Phase.FAULT: "fault",
    Phase.DETECT: "detect",
    Phase.PROMOTE: "promote",
    Phase.SCALE_UP: "scale up survivors",
    Phase.VERIFY: "verify",
    Phase.RESTORE: "restore region",
    Phase.RESEED: "re-seed volumes",
    Phase.FAILBACK: "fail back",
    Phase.SCALE_BACK: "scale back",
    Phase.INTEGRITY: "integrity",
}


def iso_utc(epoch: float) -> str:
    """Format epoch seconds as ISO 8601 UTC with microseconds and a ``Z``."""
    when = datetime.fromtimestamp(epoch, UTC)
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class PhaseSpan:
    """One phase as it ran.

    Attributes:
        phase: which phase.
        started_at: epoch seconds.
        finished_at: epoch seconds, ``None`` while it runs.
        outcome: how it ended (``ok`` until told otherwise).
        detail: one line saying what it did.
    """

    phase: Phase
    started_at: float
    finished_at: float | None = None
    outcome: PhaseOutcome = "ok"
    detail: str = ""

    @property
    def duration_s(self) -> float | None:
        """Return how long it took, or ``None`` while it runs."""
        return None if self.finished_at is None else self.finished_at - self.started_at

    def to_json(self) -> dict[str, Any]:
        """Return DESIGN.md's phase object (plus ``duration_s``, ``outcome``, ``detail``)."""
        return {
            "name": self.phase.value,
            "started_at": iso_utc(self.started_at),
            "finished_at": None if self.finished_at is None else iso_utc(self.finished_at),
            "duration_s": None if self.duration_s is None else round(self.duration_s, 3),
            "outcome": self.outcome,
            "detail": self.detail,
        }
