"""Time a drill's phases and announce them.

`PhaseClock` records when each phase began and ended and emits `PhaseStarted`/`PhaseFinished`
on the drill's bus, so the live view and the report see the same timeline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from orchestrator.drill.events import DrillEvent, PhaseFinished, PhaseStarted
from orchestrator.drill.phases import Phase, PhaseSpan

__all__ = ["PhaseClock"]


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
        at = self.now()
        span = PhaseSpan(phase, at, outcome="skipped", detail=detail)
        self.spans.append(span)
        self._emit(PhaseStarted(phase, at=at))
        self._close(span)

    def _close(self, span: PhaseSpan) -> None:
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
