"""What a run reports: each step, the run, and the automatic rollback it may have done.

Value objects only, shared by the executor (`orchestrator.execute.executor`), the rollback
(`orchestrator.execute.autorollback`), the command line and the views. ``DeployResult.to_json`` is
DESIGN.md's ``invoke deploy --json`` document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from orchestrator.errors import EXIT_CODES, ErrorKind
from orchestrator.execute.events import ReleaseOutcome, StepOutcome
from orchestrator.fleetconfig.model import OnFailure, WaveSpec
from orchestrator.plan.steps import Step

__all__ = [
    "DeployResult",
    "Failure",
    "Restoring",
    "RollbackAction",
    "RollbackReport",
    "RunPhase",
    "StepReport",
    "WaveTiming",
]

RunPhase = Literal["deploy", "rollback"]


@dataclass(frozen=True, slots=True)
class StepReport:
    """How one step of a run went, as ``deploy --json`` shows it.

    Attributes:
        id: the step id.
        kind: its kind.
        region: its region.
        wave: its wave.
        started_at: ISO timestamp, or ``None`` if it never ran.
        finished_at: ISO timestamp, or ``None``.
        outcome: ``succeeded``, ``failed``, ``skipped`` or ``cancelled``.
        error: what failed, one line, or ``None``.
        detail: what a succeeded step did, one line, or ``None``.
        mutating: whether it changes the fleet.
        phase: ``deploy``, or ``rollback`` for a step that put the previous release back.
        run: the journal run it belongs to (a rollback is a run of its own).
    """

    id: str
    kind: str
    region: str
    wave: int
    started_at: str | None
    finished_at: str | None
    outcome: StepOutcome
    error: str | None = None
    detail: str | None = None
    mutating: bool = False
    phase: RunPhase = "deploy"
    run: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Return DESIGN.md's step object (plus ``error``, ``detail``, ``mutating``, ``phase``)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "region": self.region,
            "wave": self.wave,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "outcome": self.outcome,
            "mutating": self.mutating,
            "error": self.error,
            "detail": self.detail,
            "phase": self.phase,
            "run": self.run,
        }


@dataclass(frozen=True, slots=True)
class RollbackReport:
    """What an automatic rollback did, as ``deploy --json`` shows it under ``rollback``.

    Attributes:
        policy: the failed wave's ``on_failure`` (``rollback_region``...), or ``resume`` when a
            ``--resume`` finished a rollback a killed run had begun.
        regions: the regions rolled back, in rollout order.
        release: the release put back (``None`` when nothing needed to change).
        reason: why: the deploy's first failure, one line.
        run: the rollback's journal run.
        outcome: ``succeeded``, ``noop`` (every machine was already back) or ``failed``.
        error: the rollback's own first failure, or ``None``.
        steps: the rollback's steps (``phase = "rollback"``), listed after the deploy's.
    """

    policy: str
    regions: tuple[str, ...]
    release: str | None
    reason: str
    run: int | None
    outcome: ReleaseOutcome
    error: str | None = None
    steps: tuple[StepReport, ...] = ()

    @property
    def ok(self) -> bool:
        """Tell whether the regions are back on the previous release."""
        return self.outcome in ("succeeded", "noop")

    def describe(self) -> str:
        """Return one line: what was rolled back, to what, why, and how it went."""
        where = ", ".join(self.regions) or "no region"
        to = f" to {self.release}" if self.release else ""
        text = f"rolled back {where}{to} (on_failure = {self.policy})"
        if self.policy == "resume":
            text = f"finished the rollback of {where}{to}"
        if not self.ok:
            text = f"rollback of {where}{to} failed: {self.error}"
        return text

    def to_json(self) -> dict[str, Any]:
        """Return the report as JSON-ready values."""
        return {
            "policy": self.policy,
            "regions": list(self.regions),
            "release": self.release,
            "reason": self.reason,
            "run": self.run,
            "outcome": self.outcome,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class WaveTiming:
    """How long a wave was expected to take (`orchestrator.plan.eta`) and how long it took.

    Attributes:
        wave: the wave's number in the plan.
        regions: its regions.
        expected_s: the estimate, seconds.
        actual_s: from its first step's start to its last step's end (``None``: nothing ran).
    """

    wave: int
    regions: tuple[str, ...]
    expected_s: float
    actual_s: float | None

    def to_json(self) -> dict[str, Any]:
        """Return the wave's timing as JSON."""
        return {
            "wave": self.wave,
            "regions": list(self.regions),
            "expected_s": round(self.expected_s, 1),
            "actual_s": None if self.actual_s is None else round(self.actual_s, 1),
        }


@dataclass(frozen=True, slots=True)
class DeployResult:
    """How a run ended, as ``invoke deploy --json`` prints it.

    Attributes:
        release: the release id.
        outcome: ``succeeded``, ``noop``, ``failed`` or ``rolled_back``.
        mutating_steps: how many steps of the plan change the fleet.
        steps: every step, in execution order.
        error: the first failure, one line, or ``None``.
        run: the journal's run number.
        app: the app.
        started_at: ISO timestamp.
        finished_at: ISO timestamp.
        rollback: what the automatic rollback did, when there was one.
        waves: expected beside actual time per wave of the deploy (empty: not estimated).
        error_kind: what the first failure says about the next move (`ErrorKind`): the
            release failed its gates, Fly or the network failed, or Fly refused the input;
            ``None`` when nothing failed.
        write_downtime: the primary region's write downtime through the run (``--measure-writes``;
            `orchestrator.drill.writes.WriteDowntime.to_json`), else ``None``.
    """

    release: str
    outcome: ReleaseOutcome
    mutating_steps: int
    steps: tuple[StepReport, ...]
    error: str | None = None
    run: int | None = None
    app: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    rollback: RollbackReport | None = None
    waves: tuple[WaveTiming, ...] = ()
    error_kind: ErrorKind | None = None
    write_downtime: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """Tell whether the run reached its goal (``succeeded`` or ``noop``)."""
        return self.outcome in ("succeeded", "noop")

    @property
    def exit_code(self) -> int:
        """Return the command line's exit code: 0 on success, else the error kind's code."""
        if self.ok:
            return 0
        return EXIT_CODES[self.error_kind or ErrorKind.FLY]

    def to_json(self) -> dict[str, Any]:
        """Return DESIGN.md's ``deploy --json`` object (plus ``app``, ``run``, times, rollback)."""
        return {
            "release": self.release,
            "outcome": self.outcome,
            "mutating_steps": self.mutating_steps,
            "steps": [s.to_json() for s in self.steps],
            "error": self.error,
            "app": self.app,
            "run": self.run,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "rollback": None if self.rollback is None else self.rollback.to_json(),
            "waves": [w.to_json() for w in self.waves],
            "error_kind": None if self.error_kind is None else self.error_kind.value,
            "write_downtime": self.write_downtime,
        }


@dataclass(frozen=True, slots=True)
class Failure:
    """A deploy run that failed, as the rollback hook is told about it.

    Attributes:
        run: the deploy's journal run.
        release: the release that failed.
        failed: each failed step and its one-line error, first failure first.
        policy: the failed wave's ``on_failure`` (never ``halt``: the hook is not called then).
        waves: the plan's waves (region codes per wave).
        wave_specs: the plan's wave settings.
    """

    run: int
    release: str
    failed: tuple[tuple[Step, str], ...]
    policy: OnFailure
    waves: tuple[tuple[str, ...], ...]
    wave_specs: tuple[WaveSpec, ...]


RollbackAction = Callable[[Failure], Awaitable[RollbackReport]]


@dataclass(frozen=True, slots=True)
class Restoring:
    """Why a run restores previous configs (it then announces itself as a rollback).

    Attributes:
        failed_release: the release being rolled back.
        policy: ``on_failure`` that chose the regions, or ``resume``.
        regions: the regions rolled back.
        reason: why, one line.
        rollback_of: the deploy run it undoes (recorded in the journal).
    """

    failed_release: str
    policy: str
    regions: tuple[str, ...]
    reason: str
    rollback_of: int | None = None
