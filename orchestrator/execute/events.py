"""Typed events the executor emits while it runs a plan, and the bus that delivers them.

The executor never prints: it emits these on an `EventBus` (the generic ``orchestrator.bus``),
and subscribers (the rich view in ``orchestrator.render``, the journal recorder, tests) do what
they want with them. The journal's subscriber is added first, so it has written a step's start
before any view shows it; what must be on disk before a machine changes (write-ahead) the
executor writes itself.

Every event carries ``at``, an aware UTC datetime taken when it was emitted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from orchestrator.bus import Bus
from orchestrator.errors import OrchestratorError
from orchestrator.plan.steps import Step

__all__ = [
    "Event",
    "EventBus",
    "GateResult",
    "NextStep",
    "Note",
    "NoteLevel",
    "ReleaseFinished",
    "ReleaseOutcome",
    "ReleaseStarted",
    "RestorePointTaken",
    "RollbackFinished",
    "RollbackStarted",
    "StepFinished",
    "StepOutcome",
    "StepProgress",
    "StepStarted",
    "Subscriber",
    "utcnow",
]

# ``cancelled``: a read-only step (a gate) that was running when another step failed, stopped
# so the rollback need not wait out a bake window.
StepOutcome = Literal["succeeded", "failed", "skipped", "cancelled"]
ReleaseOutcome = Literal["succeeded", "noop", "failed", "rolled_back"]
NoteLevel = Literal["info", "warning", "error"]


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ReleaseStarted:
    """A release began executing.

    Attributes:
        release: the release id.
        app: the app name.
        image: the image being rolled out.
        regions: the regions the plan touches, in wave order.
        steps: every step of the plan, in execution order.
        mutating_steps: how many of them change the fleet.
        at: when it started.
        waves: the plan's waves (region codes per wave), changed or not.
        command: ``deploy``, ``rollback`` or ``scale``.
        replacing: the releases the machines it changes run now (from the plan), sorted.
    """

    release: str
    app: str
    image: str
    regions: tuple[str, ...]
    steps: tuple[Step, ...]
    mutating_steps: int
    at: datetime = field(default_factory=utcnow)
    waves: tuple[tuple[str, ...], ...] = ()
    command: str = "deploy"
    replacing: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StepStarted:
    """A step began (its semaphores are held; API calls follow)."""

    step: Step
    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class StepProgress:
    """A long step says how far it got (a metrics gate's bake: requests, errors, p95 so far).

    Views show it; the journal ignores it (the step's end carries the verdict).
    """

    step: Step
    detail: str
    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class StepFinished:
    """A step ended.

    Attributes:
        step: the step.
        outcome: ``succeeded``, ``failed``, ``skipped`` (never started because an earlier step
            failed) or ``cancelled`` (a gate stopped because another step failed).
        error: one line saying what went wrong, for a failed step.
        detail: one line saying what a succeeded step did (``forked volume vol_x from vol_y``).
        started_at: when it started, or ``None`` when it was skipped.
        at: when it ended.
    """

    step: Step
    outcome: StepOutcome
    error: str | None = None
    detail: str | None = None
    started_at: datetime | None = None
    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class GateResult:
    """A gate reached a verdict.

    Attributes:
        step: the gate step.
        passed: whether the gate passed.
        detail: what was checked or what failed (machine, check, output).
        figures: what a metrics gate measured (requests, errors, error rate, p95, thresholds),
            or ``None``.
        at: when the verdict came.
    """

    step: Step
    passed: bool
    detail: str
    figures: Mapping[str, Any] | None = None
    at: datetime = field(default_factory=utcnow)


class NextStep(StrEnum):
    """What the operator can do next about a note or an ended run; the command line words it."""

    RESUME = "resume"
    """The run stopped part-way: resuming the deploy converges the fleet."""
    ROLLBACK = "rollback"
    """The fleet is left as a failure left it: a rollback puts the previous release back."""
    PROMOTE_OR_ABORT = "promote_or_abort"
    """The run waits after a wave: promoting goes on, aborting stops (from any host)."""


@dataclass(frozen=True, slots=True)
class Note:
    """Something worth telling the operator that is not a step boundary.

    Attributes:
        message: one line.
        level: ``info``, ``warning`` or ``error``.
        step_id: the step it concerns, if any.
        region: the region it concerns, if any.
        at: when it was said.
        next_step: what the operator can do about it, which the command line words
            (``orchestrator.hints``), or ``None``.
    """

    message: str
    level: NoteLevel = "info"
    step_id: str | None = None
    region: str | None = None
    at: datetime = field(default_factory=utcnow)
    next_step: NextStep | None = None


@dataclass(frozen=True, slots=True)
class ReleaseFinished:
    """A release ended.

    Attributes:
        release: the release id.
        outcome: ``succeeded``, ``noop``, ``failed`` or ``rolled_back``.
        error: the first failure, one line, or ``None``.
        at: when it ended.
        next_step: what the operator can do next, when the run says (an interrupted run
            resumes).
    """

    release: str
    outcome: ReleaseOutcome
    error: str | None = None
    at: datetime = field(default_factory=utcnow)
    next_step: NextStep | None = None


@dataclass(frozen=True, slots=True)
class RollbackStarted:
    """A rollback began: the previous configs go back on the machines of ``regions``.

    Emitted instead of `ReleaseStarted` by the run that restores (automatic, after a failed
    step; or a resumed one); its steps follow as ordinary step events.

    Attributes:
        release: the release put back.
        failed_release: the release being rolled back.
        policy: the wave's ``on_failure`` that chose the regions (``rollback_region``...), or
            ``resume`` when a killed rollback is finished.
        regions: the regions rolled back, in rollout order.
        reason: why, one line (the first failure).
        steps: the rollback's steps, in execution order.
        mutating_steps: how many of them change the fleet.
        run: the journal run of the rollback.
        at: when it started.
    """

    release: str
    failed_release: str
    policy: str
    regions: tuple[str, ...]
    reason: str
    steps: tuple[Step, ...]
    mutating_steps: int
    run: int
    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class RestorePointTaken:
    """A volume was snapshotted before its machine changed (``volume.snapshot``).

    Attributes:
        release: the release about to change the machine.
        region: the machine's region.
        slot: its slot.
        machine: its id.
        volume: the volume snapshotted.
        snapshot: the snapshot's id.
        digest: the snapshot's digest, as Fly reports it ("" when it reports none).
        last_seq: the machine's ``last_seq`` (from the app's ``/status``) just before, or None.
        release_before: the release the machine ran.
        at: when the snapshot was taken.
    """

    release: str
    region: str
    slot: int | None
    machine: str
    volume: str
    snapshot: str
    digest: str = ""
    last_seq: int | None = None
    release_before: str | None = None
    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class RollbackFinished:
    """A rollback ended.

    Attributes:
        release: the release put back.
        outcome: ``succeeded``, ``noop`` (every machine was already back) or ``failed``.
        error: its first failure, or ``None``.
        at: when it ended.
        next_step: what the operator can do next, when the run says.
    """

    release: str
    outcome: ReleaseOutcome
    error: str | None = None
    at: datetime = field(default_factory=utcnow)
    next_step: NextStep | None = None


Event = (
    ReleaseStarted
    | StepStarted
    | StepProgress
    | StepFinished
    | GateResult
    | Note
    | ReleaseFinished
    | RollbackStarted
    | RollbackFinished
    | RestorePointTaken
)
Subscriber = Callable[[Event], None]


class EventBus(Bus[Event]):
    """Deliver the executor's events (`orchestrator.bus.Bus`).

    A subscriber that raises an unexpected exception is logged and skipped: a broken view must
    not fail a deploy half-way through a machine update. An `OrchestratorError` (the journal
    could not write, say) does propagate, because a deploy that cannot record what it does must
    not go on changing machines.
    """

    propagate = (OrchestratorError,)
