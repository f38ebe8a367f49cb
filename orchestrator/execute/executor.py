"""Run a plan's graph against the Machines API: bounded, ordered, journaled, and stoppable.

The executor walks the plan's DAG with asyncio over one `FlyClient`:

- a step starts when every step it depends on has succeeded;
- at most the wave's ``max_concurrency`` machine and volume steps of a wave run at once (one
  semaphore per wave; wave barriers in the graph keep waves from overlapping, so it acts as the
  global bound). Gates take no slot: they only read, one per region, and a gate waiting its
  turn at Fly's per-app limit on listing machines (1/s) must not hold a slot meanwhile (with
  35 regions that left a third of a wave's 64 slots idle);
- an update waiting for its turn takes its machine's lease ahead (`EarlyLease`), for at most half
  as many updates per region and per wave as may run at once, so the next update in line sends
  its change as soon as a slot frees instead of first taking a lease (a round trip per round);
- ``machine.update`` and ``machine.destroy`` take a machine out of service, so at most the
  region's ``max_unavailable`` of them run at once in a region (the planner already makes the
  first update a spearhead that runs alone);
- each step emits `StepStarted`/`StepFinished` (gates also `GateResult`); the journal records
  them as a subscriber, and the handlers write machine configs before and after each change.

On a failed step no new step is scheduled, machine and volume steps already running finish (a
machine half-way through an update is better finished than abandoned), gates already running
are cancelled (``cancelled``: they only read, and a bake window need not be waited out), and
every step that never ran is reported ``skipped``. Then, when the release itself failed (a
`GateFailed`: a gate's verdict, checks that keep failing, a machine that cannot run; not an API
error), `Executor._after_failure` applies the failed wave's ``on_failure``: ``halt`` leaves the
fleet as it is; the others hand the failure to the ``rollback`` hook
(`orchestrator.execute.autorollback.automatic_rollback`), which restores the machines of the regions
the policy names from the journal, as a run of its own, whose steps are reported with
``phase = "rollback"`` after the deploy's.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.errors import ErrorKind, OrchestratorError, kind_of
from orchestrator.execute.context import ExecuteOptions, RunState, StepContext
from orchestrator.execute.datagate import data_gate
from orchestrator.execute.events import (
    EventBus,
    GateResult,
    NextStep,
    ReleaseFinished,
    ReleaseOutcome,
    ReleaseStarted,
    RollbackFinished,
    RollbackStarted,
    StepFinished,
    StepOutcome,
    StepStarted,
    utcnow,
)
from orchestrator.execute.failpoints import failpoint
from orchestrator.execute.gates import health_gate, metrics_gate
from orchestrator.execute.journal import Journal, iso
from orchestrator.execute.machines import (
    EarlyLease,
    create_machine,
    destroy_machine,
    update_machine,
)
from orchestrator.execute.release import run_release_command
from orchestrator.execute.restorepoints import snapshot_volume
from orchestrator.execute.results import (
    DeployResult,
    Failure,
    Restoring,
    RollbackAction,
    RollbackReport,
    RunPhase,
    StepReport,
)
from orchestrator.execute.volumes import ensure_volume, replicate
from orchestrator.fleetconfig.model import OnFailure, WaveSpec
from orchestrator.fly.client import FlyClient
from orchestrator.fly.proxy import ProxyClient
from orchestrator.plan.fleet import Fleet
from orchestrator.plan.steps import Step, StepKind

if TYPE_CHECKING:
    from orchestrator.execute.control import RunControl

__all__ = [
    "DeployResult",
    "Executor",
    "Failure",
    "PlanLike",
    "Restoring",
    "RollbackAction",
    "RollbackReport",
    "RunPhase",
    "StepReport",
]

log = logging.getLogger(__name__)

Handler = Callable[[StepContext, Step], Awaitable[str]]

HANDLERS: Mapping[StepKind, Handler] = {
    StepKind.RELEASE_COMMAND: run_release_command,
    StepKind.GATE_DATA: data_gate,
    StepKind.VOLUME_ENSURE: ensure_volume,
    StepKind.VOLUME_SNAPSHOT: snapshot_volume,
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
        command: what the run is: ``deploy``, ``rollback``, ``restore`` (``rollback
            --restore-data``), ``scale``.
        resumed_from: the run this one resumes, if any.
        rollback: what to call when a step fails in a wave whose ``on_failure`` is not
            ``halt`` (``None``: the fleet is left as the failure left it, whatever the policy).
        restoring: set when this run is an automatic rollback (or finishes one): it then
            announces itself with `RollbackStarted`/`RollbackFinished` instead of the release
            events, and its steps are reported with ``phase = "rollback"``.
        fleet: the fleet the plan was made from, if the caller has it: an update then takes
            the machine's version and config from it instead of reading the machine again.
    """

    def __init__(
        self,
        client: FlyClient,
        plan: PlanLike,
        *,
        journal: Journal,
        probe: ProxyClient,
        bus: EventBus | None = None,
        image: str = "",
        spec_digest: str = "",
        max_unavailable: Mapping[str, int] | None = None,
        options: ExecuteOptions | None = None,
        command: str = "deploy",
        resumed_from: int | None = None,
        rollback: RollbackAction | None = None,
        restoring: Restoring | None = None,
        fleet: Fleet | None = None,
        control: RunControl | None = None,
    ) -> None:
        self.client = client
        # Pauses and aborts asked for from any host (`invoke promote`, `invoke abort`).
        self.control = control
        self.plan = plan
        self.journal = journal
        self.probe = probe
        self.bus = bus or EventBus()
        self.image = image
        self.spec_digest = spec_digest
        self.options = options or ExecuteOptions()
        self.command = command
        self.resumed_from = resumed_from
        self.rollback = rollback
        self.restoring = restoring
        rolling_back = restoring is not None or command in ("rollback", "restore")
        self.phase: RunPhase = "rollback" if rolling_back else "deploy"
        self._max_unavailable = dict(max_unavailable or {})
        self._steps = plan.steps()
        self._failed: list[tuple[Step, str]] = []
        self._first_kind: ErrorKind | None = None
        # Failed steps whose failure is the release's own (a gate's verdict, checks failing,
        # a machine that died): only these roll back; an API or infrastructure error does not.
        self._unhealthy: list[tuple[Step, str]] = []
        self._reports: dict[str, StepReport] = {}
        self._started: dict[str, datetime] = {}
        self._wave_gates: dict[int, _Slots] = {}
        self._region_gates: dict[str, _Slots] = {}
        self._lookaheads: dict[str, _Slots] = {}
        self._rank = {step.id: i for i, step in enumerate(self._steps)}
        # Gates this executor cancelled itself (after another step failed).
        self._stopped: set[str] = set()
        self._run: int | None = None
        self._observed = {m.id: m for m in fleet.machines} if fleet is not None else {}

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
            rollback_of=self.restoring.rollback_of if self.restoring else None,
            started_at=started,
        )
        self._run = run
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
            state=RunState(observed=self._observed),
        )
        if self.restoring is not None:
            failpoint("rollback_started")
            bus.emit(
                RollbackStarted(
                    release=self.plan.release,
                    failed_release=self.restoring.failed_release,
                    policy=self.restoring.policy,
                    regions=self.restoring.regions,
                    reason=self.restoring.reason,
                    steps=self._steps,
                    mutating_steps=mutating,
                    run=run,
                    at=started,
                )
            )
        else:
            bus.emit(
                ReleaseStarted(
                    release=self.plan.release,
                    app=self.plan.app,
                    image=self.image,
                    regions=regions,
                    steps=self._steps,
                    mutating_steps=mutating,
                    at=started,
                    waves=self.plan.waves,
                    command=self.command,
                    replacing=_replacing(self._steps),
                )
            )
        try:
            await self._schedule(ctx)
        except BaseException:
            # Interrupted (Ctrl-C, cancelled): say so in the journal, keep the exception.
            message = "interrupted"
            for step in self._steps:
                if step.id in self._reports:
                    continue
                began = self._started.get(step.id)
                if began is None:
                    self._finish(ctx, step, "skipped", None)
                else:
                    self._finish(ctx, step, "failed", began, error=f"{step.id}: interrupted")
            bus.emit(self._finished_event("failed", message, utcnow(), NextStep.RESUME))
            raise
        outcome: ReleaseOutcome
        error: str | None = None
        error_kind: ErrorKind | None = None
        report: RollbackReport | None = None
        if self._failed:
            error = self._failed[0][1]
            # The release's own failure decides the run's kind even when a Fly error came first.
            error_kind = ErrorKind.RELEASE if self._unhealthy else self._first_kind
            report = await self._after_failure(ctx)
            outcome = "rolled_back" if report is not None and report.ok else "failed"
        else:
            outcome = "noop" if mutating == 0 else "succeeded"
        finished = utcnow()
        bus.emit(self._finished_event(outcome, error, finished))
        return DeployResult(
            release=self.plan.release,
            outcome=outcome,
            mutating_steps=mutating,
            steps=tuple(self._reports[s.id] for s in self._steps)
            + (report.steps if report is not None else ()),
            error=error,
            run=run,
            app=self.plan.app,
            started_at=iso(started),
            finished_at=iso(finished),
            rollback=report,
            error_kind=error_kind,
        )

    def _finished_event(
        self,
        outcome: ReleaseOutcome,
        error: str | None,
        at: datetime,
        next_step: NextStep | None = None,
    ) -> ReleaseFinished | RollbackFinished:
        if self.restoring is not None:
            return RollbackFinished(self.plan.release, outcome, error, at, next_step)
        return ReleaseFinished(self.plan.release, outcome, error, at, next_step)

    async def _schedule(self, ctx: StepContext) -> None:
        """Start each step once every step it depends on has succeeded, in plan order.

        Each step counts its predecessors that have not succeeded yet; a success counts its
        successors down and starts those that reach zero: O(steps + edges) over the run.
        """
        graph = self.plan.graph
        order = {step.id: i for i, step in enumerate(self._steps)}
        by_id = {step.id: step for step in self._steps}
        waiting = {step.id: graph.in_degree(step.id) for step in self._steps}
        ready = [step for step in self._steps if waiting[step.id] == 0]
        running: dict[asyncio.Task[StepOutcome], Step] = {}
        # Finished tasks arrive here. asyncio.wait over every running task costs O(running)
        # per finished step, and every ready step is a task (waiting on its slots): at 10,000
        # machines that was O(steps²) and most of the orchestrator's CPU.
        finished: asyncio.Queue[asyncio.Task[StepOutcome]] = asyncio.Queue()
        try:
            while True:
                if not self._failed:
                    for step in ready:
                        task = asyncio.create_task(self._run_step(ctx, step), name=step.id)
                        task.add_done_callback(finished.put_nowait)
                        running[task] = step
                ready = []
                if not running:
                    break
                done = [await finished.get()]
                while not finished.empty():
                    done.append(finished.get_nowait())
                for task in done:
                    step = running.pop(task)
                    if task.result() != "succeeded":
                        continue
                    for succ in graph.successors(step.id):
                        if succ in waiting:
                            waiting[succ] -= 1
                            if waiting[succ] == 0:
                                ready.append(by_id[succ])
                ready.sort(key=lambda s: order[s.id])
                if self._failed:
                    # Gates only read: stop them rather than wait out a bake window before
                    # the rollback can start. Machine steps are left to finish.
                    for task, step in running.items():
                        if step.kind in _GATES and step.id not in self._stopped:
                            self._stopped.add(step.id)
                            task.cancel()
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
            # Lease releases handed off by the steps: done before anything (a rollback, the
            # next run) may lease the same machines.
            await ctx.state.settle()
        for step in self._steps:
            if step.id not in self._reports:
                self._finish(ctx, step, "skipped", None)

    async def _run_step(self, ctx: StepContext, step: Step) -> StepOutcome:
        """Run one step under its semaphores; return its outcome (failures are recorded)."""
        rank = self._rank[step.id]
        region_gate = self._region_gate(step) if step.kind in _DISRUPTIVE else None
        wave_gate = self._wave_gate(step.wave) if step.kind not in _GATES else None
        ahead = await self._lease_ahead(ctx, step, rank)
        held: list[_Slots] = []
        try:
            for gate in (region_gate, wave_gate):
                if gate is not None:
                    await gate.acquire(rank)
                    held.append(gate)
            for slot in ahead:
                slot.release()  # it runs now: the next in line may lease ahead
            ahead = []
            return await self._run_started(ctx, step)
        finally:
            for gate in held:
                gate.release()
            for slot in ahead:
                slot.release()
            early = ctx.state.early_leases.pop(step.machine, None) if step.machine else None
            if early is not None:
                early.abandon()  # the update never claimed it (skipped, cancelled)

    async def _lease_ahead(self, ctx: StepContext, step: Step, rank: int) -> list[_Slots]:
        """Take an update's lease while it waits for its turn; return the lookahead slots held.

        At most half a region's ``max_unavailable`` and half a wave's ``max_concurrency``
        updates (at least one) hold a lease ahead at once: slots free one by one, so that is
        enough for the next in line to have its lease, and each waits about half a round, well
        within the lease's first refresh.
        """
        if step.kind is not StepKind.MACHINE_UPDATE or step.machine is None:
            return []
        slots = [self._lookahead(f"region:{step.region}"), self._lookahead(f"wave:{step.wave}")]
        taken: list[_Slots] = []
        try:
            for slot in slots:
                await slot.acquire(rank)
                taken.append(slot)
        except BaseException:
            for slot in taken:
                slot.release()
            raise
        if not self._failed:
            ctx.state.early_leases[step.machine] = EarlyLease(
                ctx, step.machine, f"update {step.id}"
            )
        return slots

    def _lookahead(self, key: str) -> _Slots:
        gate = self._lookaheads.get(key)
        if gate is None:
            kind, _, name = key.partition(":")
            if kind == "region":
                limit = max(1, int(self._max_unavailable.get(name, 1)))
            else:
                spec = self._wave_spec(int(name))
                limit = spec.max_concurrency if spec is not None else _DEFAULT_CONCURRENCY
            gate = self._lookaheads[key] = _Slots(max(1, limit // 2))
        return gate

    async def _run_started(self, ctx: StepContext, step: Step) -> StepOutcome:
        """Run a step that holds its slots; return its outcome."""
        if self._failed:
            # Another step failed while this one queued: it never starts.
            self._finish(ctx, step, "skipped", None)
            return "skipped"
        if self.control is not None:
            await self.control.before_step(step)
        started = self._started[step.id] = utcnow()
        ctx.bus.emit(StepStarted(step, at=started))
        failpoint("step_started", step.id)
        outcome = await self._attempt(ctx, step, started)
        failpoint("step_finished", step.id)
        return outcome

    async def _attempt(self, ctx: StepContext, step: Step, started: datetime) -> StepOutcome:
        """Run the step's handler; record and return its outcome."""
        try:
            if self.control is not None:
                self.control.check_abort(step)
            detail = await HANDLERS[step.kind](ctx, step)
        except asyncio.CancelledError:
            if step.id not in self._stopped:
                raise
            first = self._failed[0][0].id if self._failed else "another step"
            self._finish(ctx, step, "cancelled", started, detail=f"cancelled: {first} failed")
            return "cancelled"
        except OrchestratorError as exc:
            return self._fail(ctx, step, _one_line(str(exc)), started, kind=kind_of(exc))
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
            ctx.bus.emit(GateResult(step, True, detail, ctx.state.gate_figures.get(step.id)))
        self._finish(ctx, step, "succeeded", started, detail=detail)
        return "succeeded"

    def _fail(
        self,
        ctx: StepContext,
        step: Step,
        message: str,
        started: datetime,
        *,
        kind: ErrorKind = ErrorKind.FLY,
    ) -> StepOutcome:
        error = f"{step.id}: {message}"
        self._failed.append((step, error))
        if self._first_kind is None:
            self._first_kind = kind
        if kind is ErrorKind.RELEASE:
            self._unhealthy.append((step, error))
            # Written before the step's end, so a resume knows this run owes a rollback.
            ctx.journal.step_result(ctx.run, step.id, {"unhealthy": True})
        if step.kind in _GATES:
            ctx.bus.emit(GateResult(step, False, message, ctx.state.gate_figures.get(step.id)))
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
            phase=self.phase,
            run=self._run,
        )

    async def _after_failure(self, ctx: StepContext) -> RollbackReport | None:
        """Apply the failed wave's ``on_failure``; return what the rollback did, if one ran.

        Only a failure of the release itself rolls back: a gate's verdict, or a machine whose
        checks kept failing or that died on the new release (`GateFailed`). A failure to talk
        to Fly (API errors, timeouts, a lease held elsewhere) says nothing about the release:
        the fleet is left as it is and ``invoke deploy --resume`` carries on once Fly answers.
        ``halt`` (or no rollback hook: a scale, a drill, a rollback itself) leaves the fleet as
        the failure left it. Any other policy hands the failure to the rollback hook, which
        restores the regions the policy names and reports back; its steps join this run's
        report. A rollback that cannot even be planned is reported as a failed rollback.
        """
        if not self._unhealthy:
            step = self._failed[0][0]
            if step.kind is StepKind.RELEASE_COMMAND:
                ctx.note(
                    "the release command failed before any machine changed: nothing to roll "
                    "back; fix it and deploy again",
                    level="warning",
                    region=step.region,
                )
            # What to do next depends on the kind (`DeployResult.error_kind`), which the
            # command line turns into words once.
            return None
        step, error = self._unhealthy[0]
        wave = self._wave_spec(step.wave)
        policy: OnFailure = wave.on_failure if wave is not None else "halt"
        if policy == "halt" or self.rollback is None:
            if policy != "halt" and self.phase == "deploy":
                ctx.note(
                    f"{step.region}: on_failure = {policy} is not applied by `invoke "
                    f"{self.command}`: the fleet is left as the failure left it",
                    level="warning",
                    region=step.region,
                    next_step=NextStep.ROLLBACK,
                )
            elif self.command == "deploy":
                ctx.note(
                    f"{step.region}: on_failure = halt: the fleet is left as the failure left it",
                    level="warning",
                    region=step.region,
                    next_step=NextStep.ROLLBACK,
                )
            return None
        failure = Failure(
            run=ctx.run,
            release=self.plan.release,
            failed=tuple(self._unhealthy),
            policy=policy,
            waves=self.plan.waves,
            wave_specs=self.plan.wave_specs,
        )
        try:
            report = await self.rollback(failure)
        except OrchestratorError as exc:
            message = _one_line(str(exc))
            ctx.note(f"automatic rollback failed: {message}", level="error", region=step.region)
            return RollbackReport(
                policy=policy,
                regions=(step.region,),
                release=None,
                reason=error,
                run=None,
                outcome="failed",
                error=message,
            )
        # A failed rollback is told by its own RollbackFinished and by the command's summary.
        return report

    # -- semaphores -------------------------------------------------------------------------

    def _wave_spec(self, wave: int) -> WaveSpec | None:
        specs = self.plan.wave_specs
        return specs[wave - 1] if 0 < wave <= len(specs) else None

    def _wave_gate(self, wave: int) -> _Slots:
        gate = self._wave_gates.get(wave)
        if gate is None:
            spec = self._wave_spec(wave)
            limit = spec.max_concurrency if spec is not None else _DEFAULT_CONCURRENCY
            gate = self._wave_gates[wave] = _Slots(max(1, limit))
        return gate

    def _region_gate(self, step: Step) -> _Slots:
        gate = self._region_gates.get(step.region)
        if gate is None:
            limit = max(1, int(self._max_unavailable.get(step.region, 1)))
            gate = self._region_gates[step.region] = _Slots(limit)
        return gate


class _Slots:
    """A semaphore that hands a freed slot to the waiter first in plan order, not first to ask.

    With FIFO slots the steps of a wave's regions interleave as they become ready, so every
    region finishes near the end of the wave and their health gates queue together at Fly's
    one list per second per app (27 regions: 27 s at the end of a wave). In plan order a wave
    works through its regions a few at a time and their gates come one by one, as the bound
    (bench/bound.py) assumes.
    """

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = 0

    async def acquire(self, rank: int) -> None:
        """Wait for a slot; among waiters, the lowest ``rank`` gets the next one."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._waiters, (rank, self._seq, fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed over just as the waiter was cancelled: pass it on
            raise

    def release(self) -> None:
        """Free a slot: hand it to the first waiter in plan order, if any."""
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)
                return
        self._free += 1


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _replacing(steps: tuple[Step, ...]) -> tuple[str, ...]:
    """Return the releases the plan's updates and destroys move machines away from."""
    found = {
        str(s.params["from_release"])
        for s in steps
        if s.kind in (StepKind.MACHINE_UPDATE, StepKind.MACHINE_DESTROY)
        and s.params.get("from_release")
        and s.params.get("from_release") != s.params.get("release")
    }
    return tuple(sorted(found))
