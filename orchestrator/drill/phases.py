"""Name the phases of a drill and time them.

A drill is a fixed sequence of phases (some skipped when they do not apply: a replica region
has nothing to promote). `PhaseClock` records when each began and ended and emits
`PhaseStarted`/`PhaseFinished` on the drill's bus, so the live view and the report see the
same timeline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from orchestrator.drill.events import DrillEvent

__all__ = [
    "FAILBACK_PHASES",
    "FAILOVER_PHASES",
    "Phase",
    "PhaseClock",
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

# The phases between the fault and a recovered service, and those that put the fleet back.
FAILOVER_PHASES = frozenset(
    {Phase.FAULT, Phase.DETECT, Phase.PROMOTE, Phase.SCALE_UP, Phase.VERIFY}
)
FAILBACK_PHASES = frozenset(
    {Phase.RESTORE, Phase.RESEED, Phase.FAILBACK, Phase.SCALE_BACK, Phase.INTEGRITY}
)


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


class PhaseClock:
    """Time phases and announce them.

    Args:
        emit: where `PhaseStarted`/`PhaseFinished` go (the drill bus's ``emit``).
        now: the clock (epoch seconds); tests of the pure parts pass their own.
    """

    def __init__(
        self, emit: Callable[[DrillEvent], None], *, now: Callable[[], float] = time.time
    ) -> None:
        self._emit = emit
        self.now = now
        self.spans: list[PhaseSpan] = []

    @property
    def current(self) -> PhaseSpan | None:
        """Return the phase running now, if any."""
        if self.spans and self.spans[-1].finished_at is None:
            return self.spans[-1]
        return None

    def span(self, phase: Phase) -> PhaseSpan | None:
        """Return the (last) span of ``phase``, if it ran."""
        return next((s for s in reversed(self.spans) if s.phase is phase), None)

    @contextmanager
    def phase(self, phase: Phase) -> Iterator[PhaseSpan]:
        """Run the block as ``phase``: its span ends ``ok``, or ``failed``/``aborted`` on error.

        The block may set ``span.detail`` and ``span.outcome`` itself.
        """
        from orchestrator.drill.events import PhaseStarted

        span = PhaseSpan(phase, self.now())
        self.spans.append(span)
        self._emit(PhaseStarted(phase, at=span.started_at))
        try:
            yield span
        except BaseException as exc:
            span.outcome = "failed" if isinstance(exc, Exception) else "aborted"
            if not span.detail:
                # Words, never a bare exception name ("CancelledError" tells an operator nothing).
                said = " ".join(str(exc).split())
                span.detail = said or ("interrupted" if span.outcome == "aborted" else "failed")
            raise
        finally:
            self._close(span)

    def skip(self, phase: Phase, detail: str) -> None:
        """Record that ``phase`` does not apply to this drill (zero length)."""
        from orchestrator.drill.events import PhaseStarted

        at = self.now()
        span = PhaseSpan(phase, at, outcome="skipped", detail=detail)
        self.spans.append(span)
        self._emit(PhaseStarted(phase, at=at))
        self._close(span)

    def _close(self, span: PhaseSpan) -> None:
        from orchestrator.drill.events import PhaseFinished

        span.finished_at = self.now()
        self._emit(
            PhaseFinished(
                span.phase,
                span.outcome,
                span.detail,
                started_at=span.started_at,
                at=span.finished_at,
            )
        )
