"""Run a plan's graph against the Machines API: bounded, ordered, journaled, and stoppable.

The executor walks the plan's DAG with asyncio over one `FlyClient`:

- a step starts when every step it depends on has succeeded;
- at most the wave's ``max_concurrency`` steps of a wave run at once (one semaphore per wave;
  wave barriers in the graph keep waves from overlapping, so it acts as the global bound);
- ``machine.update`` and ``machine.destroy`` take a machine out of service, so at most the
  region's ``max_unavailable`` of them run at once in a region (the planner already makes the
  first update a spearhead that runs alone);
- each step emits `StepStarted`/`StepFinished` (gates also `GateResult`); the journal records
  them as a subscriber, and the handlers write machine configs before and after each change.

On a failed step no new step is scheduled, steps already running finish (a machine half-way
through an update is better finished than abandoned), and every step that never ran is
reported ``skipped``. What happens next is `Executor._after_failure`'s business: today it halts
and reports; the wave's ``on_failure`` rollback plugs in there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from orchestrator.errors import OrchestratorError
from orchestrator.execute.context import ExecuteOptions, RunState, StepContext
from orchestrator.execute.events import (
    EventBus,
    GateResult,
    ReleaseFinished,
    ReleaseOutcome,
    ReleaseStarted,
    StepFinished,
    StepOutcome,
    StepStarted,
    utcnow,
)
from orchestrator.execute.gates import health_gate, metrics_gate
from orchestrator.execute.journal import Journal, iso
from orchestrator.execute.machines import create_machine, destroy_machine, update_machine
from orchestrator.execute.probe import AppProbe
from orchestrator.execute.volumes import ensure_volume, replicate
from orchestrator.fly.client import FlyClient
from orchestrator.plan.steps import Step, StepKind
from orchestrator.spec.model import WaveSpec

__all__ = ["DeployResult", "Executor", "PlanLike", "StepReport"]

log = logging.getLogger(__name__)

Handler = Callable[[StepContext, Step], Awaitable[str]]

HANDLERS: Mapping[StepKind, Handler] = {
    StepKind.VOLUME_ENSURE: ensure_volume,
    StepKind.VOLUME_REPLICATE: replicate,
    StepKind.MACHINE_CREATE: create_machine,
    StepKind.MACHINE_UPDATE: update_machine,
    StepKind.MACHINE_DESTROY: destroy_machine,
    StepKind.GATE_HEALTH: health_gate,
    StepKind.GATE_METRICS: metrics_gate,
}

# Steps that take a running machine out of service while they run.
_DISRUPTIVE = frozenset({StepKind.MACHINE_UPDATE, StepKind.MACHINE_DESTROY})
_GATES = frozenset({StepKind.GATE_HEALTH, StepKind.GATE_METRICS})
_DEFAULT_CONCURRENCY = 8


class PlanLike(Protocol):
    """What the executor reads of `orchestrator.plan.model.Plan`."""

    @property
    def app(self) -> str: ...

    @property
    def release(self) -> str: ...

    @property
    def waves(self) -> tuple[tuple[str, ...], ...]: ...

    @property
    def wave_specs(self) -> tuple[WaveSpec, ...]: ...

    @property
    def graph(self) -> Any: ...

    def steps(self) -> tuple[Step, ...]: ...


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
        outcome: ``succeeded``, ``failed`` or ``skipped``.
        error: what failed, one line, or ``None``.
        detail: what a succeeded step did, one line, or ``None``.
        mutating: whether it changes the fleet.
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

    def to_json(self) -> dict[str, Any]:
        """Return DESIGN.md's step object (plus ``error``, ``detail`` and ``mutating``)."""
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

    @property
    def ok(self) -> bool:
        """Tell whether the run reached its goal (``succeeded`` or ``noop``)."""
        return self.outcome in ("succeeded", "noop")

    @property
    def exit_code(self) -> int:
        """Return the command line's exit code: 0 on success or noop, 1 otherwise."""
        return 0 if self.ok else 1

    def to_json(self) -> dict[str, Any]:
        """Return DESIGN.md's ``deploy --json`` object (plus ``app``, ``run`` and times)."""
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
        }


class Executor:
    """Run one plan once.

    Args:
        client: the Machines API client.
        plan: the plan to run (`orchestrator.plan.model.Plan`).
        journal: where runs, steps and machine configs are recorded.
        probe: the app through the edge proxy (gates, replication).
        bus: where events go; the journal's recorder is subscribed first by `run`.
        image: the image the plan rolls out (for the journal and the view).
        spec_digest: the spec's digest (for the journal).
        max_unavailable: region → machines that may be down at once (from the spec).
        options: timeouts and lease settings.
        command: what the run is: ``deploy``, ``rollback``, ``scale``.
        resumed_from: the run this one resumes, if any.
    """

    def __init__(
        self,
        client: FlyClient,
        plan: PlanLike,
        *,
        journal: Journal,
        probe: AppProbe,
        bus: EventBus | None = None,
        image: str = "",
        spec_digest: str = "",
        max_unavailable: Mapping[str, int] | None = None,
        options: ExecuteOptions | None = None,
        command: str = "deploy",
        resumed_from: int | None = None,
    ) -> None:
        self.client = client
        self.plan = plan
        self.journal = journal
        self.probe = probe
        self.bus = bus or EventBus()
        self.image = image
        self.spec_digest = spec_digest
        self.options = options or ExecuteOptions()
        self.command = command
        self.resumed_from = resumed_from
        self._max_unavailable = dict(max_unavailable or {})
        self._steps = plan.steps()
        self._failed: list[tuple[Step, str]] = []
        self._reports: dict[str, StepReport] = {}
        self._started: dict[str, datetime] = {}
        self._wave_gates: dict[int, asyncio.Semaphore] = {}
        self._region_gates: dict[str, asyncio.Semaphore] = {}

    # -- the run ----------------------------------------------------------------------------

    async def run(self) -> DeployResult:
        """Run every step the plan holds and return how it went (never raises for a failure).

        Raises:
            OrchestratorError: only when the journal cannot be written.
        """
        started = utcnow()
        mutating = sum(1 for s in self._steps if s.mutating)
        regions = tuple(r for wave in self.plan.waves for r in wave)
        run = self.journal.begin_run(
            app=self.plan.app,
            release=self.plan.release,
            spec_digest=self.spec_digest,
            image=self.image,
            regions=regions,
            command=self.command,
            steps=self._steps,
            resumed_from=self.resumed_from,
            started_at=started,
        )
        # The journal sees every event before any view does.
        bus = EventBus(self.journal.recorder(run))
        bus.subscribe(self.bus.emit)
        ctx = StepContext(
            client=self.client,
            app=self.plan.app,
            release=self.plan.release,
            run=run,
            journal=self.journal,
            bus=bus,
            probe=self.probe,
            options=self.options,
            state=RunState(),
        )
        bus.emit(
            ReleaseStarted(
                release=self.plan.release,
                app=self.plan.app,
                image=self.image,
                regions=regions,
                steps=self._steps,
                mutating_steps=mutating,
                at=started,
            )
        )
        try:
            await self._schedule(ctx)
        except BaseException:
            # Interrupted (Ctrl-C, cancelled): say so in the journal, keep the exception.
            message = "interrupted; run `invoke deploy --resume` to converge"
            for step in self._steps:
                if step.id in self._reports:
                    continue
                began = self._started.get(step.id)
                if began is None:
                    self._finish(ctx, step, "skipped", None)
                else:
                    self._finish(ctx, step, "failed", began, error=f"{step.id}: interrupted")
            bus.emit(ReleaseFinished(self.plan.release, "failed", message))
            raise
        outcome: ReleaseOutcome
        error: str | None = None
        if self._failed:
            outcome = await self._after_failure(ctx)
            error = self._failed[0][1]
        else:
            outcome = "noop" if mutating == 0 else "succeeded"
        finished = utcnow()
        bus.emit(ReleaseFinished(self.plan.release, outcome, error, at=finished))
        return DeployResult(
            release=self.plan.release,
            outcome=outcome,
            mutating_steps=mutating,
            steps=tuple(self._reports[s.id] for s in self._steps),
            error=error,
            run=run,
            app=self.plan.app,
            started_at=iso(started),
            finished_at=iso(finished),
        )

    async def _schedule(self, ctx: StepContext) -> None:
        graph = self.plan.graph
        status: dict[str, str] = {}
        running: dict[asyncio.Task[StepOutcome], Step] = {}
        try:
            while True:
                if not self._failed:
                    for step in self._steps:
                        if step.id in status:
                            continue
                        preds = list(graph.predecessors(step.id))
                        if all(status.get(p) == "succeeded" for p in preds):
                            status[step.id] = "running"
                            task = asyncio.create_task(self._run_step(ctx, step), name=step.id)
                            running[task] = step
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    step = running.pop(task)
                    status[step.id] = task.result()
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        for step in self._steps:
            if step.id not in self._reports:
                self._finish(ctx, step, "skipped", None)

    async def _run_step(self, ctx: StepContext, step: Step) -> StepOutcome:
        """Run one step under its semaphores; return its outcome (failures are recorded)."""
        region_gate = self._region_gate(step) if step.kind in _DISRUPTIVE else None
        wave_gate = self._wave_gate(step.wave)
        if region_gate is not None:
            await region_gate.acquire()
        try:
            async with wave_gate:
                if self._failed:
                    # Another step failed while this one queued: it never starts.
                    self._finish(ctx, step, "skipped", None)
                    return "skipped"
                started = self._started[step.id] = utcnow()
                ctx.bus.emit(StepStarted(step, at=started))
                try:
                    detail = await HANDLERS[step.kind](ctx, step)
                except OrchestratorError as exc:
                    return self._fail(ctx, step, _one_line(str(exc)), started)
                except Exception as exc:
                    # A bug, not a Fly failure: record it like one so the journal stays whole.
                    log.exception("step %s crashed", step.id)
                    return self._fail(
                        ctx,
                        step,
                        _one_line(f"internal error: {type(exc).__name__}: {exc}"),
                        started,
                    )
                if step.kind in _GATES:
                    ctx.bus.emit(GateResult(step, True, detail))
                self._finish(ctx, step, "succeeded", started, detail=detail)
                return "succeeded"
        finally:
            if region_gate is not None:
                region_gate.release()

    def _fail(self, ctx: StepContext, step: Step, message: str, started: datetime) -> StepOutcome:
        error = f"{step.id}: {message}"
        self._failed.append((step, error))
        if step.kind in _GATES:
            ctx.bus.emit(GateResult(step, False, message))
        self._finish(ctx, step, "failed", started, error=error)
        return "failed"

    def _finish(
        self,
        ctx: StepContext,
        step: Step,
        outcome: StepOutcome,
        started: datetime | None,
        *,
        error: str | None = None,
        detail: str | None = None,
    ) -> None:
        finished = utcnow()
        ctx.bus.emit(
            StepFinished(step, outcome, error=error, detail=detail, started_at=started, at=finished)
        )
        self._reports[step.id] = StepReport(
            id=step.id,
            kind=step.kind.value,
            region=step.region,
            wave=step.wave,
            started_at=iso(started) if started else None,
            finished_at=iso(finished) if started else None,
            outcome=outcome,
            error=error,
            detail=detail,
            mutating=step.mutating,
        )

    async def _after_failure(self, ctx: StepContext) -> ReleaseOutcome:
        """Decide what a failed run leaves behind; return the release outcome.

        This is where the wave's ``on_failure`` policy (roll back the region, the wave, all;
        or halt) applies, once the restore planner and rollback execution are wired in. Today
        every policy halts: the fleet stays as the failure left it, and the note says how to
        put the previous release back.
        """
        step, _ = self._failed[0]
        wave = self._wave_spec(step.wave)
        policy = wave.on_failure if wave is not None else "halt"
        if policy != "halt":
            ctx.note(
                f"{step.region}: on_failure = {policy}, but automatic rollback is not built yet; "
                "the fleet is left as it is (run `invoke rollback` once it exists)",
                level="warning",
                region=step.region,
            )
        return "failed"

    # -- semaphores -------------------------------------------------------------------------

    def _wave_spec(self, wave: int) -> WaveSpec | None:
        specs = self.plan.wave_specs
        return specs[wave - 1] if 0 < wave <= len(specs) else None

    def _wave_gate(self, wave: int) -> asyncio.Semaphore:
        gate = self._wave_gates.get(wave)
        if gate is None:
            spec = self._wave_spec(wave)
            limit = spec.max_concurrency if spec is not None else _DEFAULT_CONCURRENCY
            gate = self._wave_gates[wave] = asyncio.Semaphore(max(1, limit))
        return gate

    def _region_gate(self, step: Step) -> asyncio.Semaphore:
        gate = self._region_gates.get(step.region)
        if gate is None:
            limit = max(1, int(self._max_unavailable.get(step.region, 1)))
            gate = self._region_gates[step.region] = asyncio.Semaphore(limit)
        return gate


def _one_line(text: str) -> str:
    return " ".join(text.split())
