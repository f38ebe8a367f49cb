"""Run a disaster-recovery drill end to end: preflight, fail over, measure, fail back, report.

`run_drill` is what ``invoke drill`` calls. The order is deliberate:

1. Everything that can be wrong with the input is checked before the first API call
   (`check_request`, exit 2); the app's deploy lock is taken (no deploy runs during a drill).
2. **preflight**: the fleet is at the spec and healthy, a primary volume has a snapshot, the
   replicas' lag is known. Any problem stops the drill before it changes anything.
3. **steady state**: the canary writes to the primary every 100 ms and the probes read from
   every region; this is the baseline.
4. **fault** (T0): the region goes down. **detect**: the probes see it. **promote** (when it
   held the primary): the nearest healthy region (or ``--promote``) takes over, then the other
   survivors follow it. **scale up** (``[drill] scale_survivors``). **verify**: survivors
   healthy, writes acknowledged again (the RTO), and the RPO read from the new primary.
5. **restore**, **re-seed**, **scale back**, **fail back**, **integrity**: the region comes
   back, the old primary's machines move onto fresh forks of the new primary's data, the
   extra machines go, the primary moves back (unless ``--no-failback``), and the fleet is
   checked: exactly one primary, every replica holding the primary's records.

A guard watches the fail-over: when the survivors' error rate passes ``max_error_rate`` or the
drill passes ``max_duration``, it aborts the fail-over at once and the restore runs, with the
reason in the report (verdict ``aborted``). The restore always runs once a fault was injected,
also after an error or a Ctrl-C, so a drill never leaves a region down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

from orchestrator.connect import Connection, connect
from orchestrator.drill.canary import CanaryWriter
from orchestrator.drill.events import (
    DrillBus,
    DrillEvent,
    DrillFinished,
    DrillNote,
    DrillProgress,
    DrillStarted,
)
from orchestrator.drill.execution import PlanRunner
from orchestrator.drill.failback import FailBack
from orchestrator.drill.failover import FailOver
from orchestrator.drill.fault import LocalOutage, RegionFault, StopAndCordon
from orchestrator.drill.hooks import shell_hook
from orchestrator.drill.measure import (
    RpoResult,
    TrafficStats,
    compute_rto,
)
from orchestrator.drill.phases import Phase, PhaseClock, PhaseSpan, iso_utc
from orchestrator.drill.preflight import Preflight, check_request, choose_promotion, preflight
from orchestrator.drill.probes import ProbeLoop
from orchestrator.drill.report import (
    DrillReport,
    Integrity,
    Objective,
    Verdict,
    guard_reason,
    judge,
)
from orchestrator.errors import ConfigError, DrillError, LocalFlyError, OrchestratorError
from orchestrator.execute.context import ExecuteOptions
from orchestrator.execute.journal import Journal
from orchestrator.execute.lock import DeployLock
from orchestrator.execute.probe import AppProbe
from orchestrator.plan.config import release_id
from orchestrator.plan.fleet import observe
from orchestrator.settings import NO_APP_URL, Settings
from orchestrator.spec.load import load_spec
from orchestrator.spec.model import DeploySpec

__all__ = ["DrillRequest", "DrillRunner", "Hook", "run_drill"]

log = logging.getLogger(__name__)

Hook = Callable[[PhaseSpan], Awaitable[None]]

TRAFFIC_TIMEOUT_S = 2.0
WAIT_TIMEOUT_S = 120.0
GUARD_WINDOW_S = 3.0


@dataclass(frozen=True, slots=True)
class DrillRequest:
    """What the operator asked for.

    Attributes:
        region: the region to take down.
        promote: the region to promote when ``region`` holds the primary (default: nearest).
        dry_run: run the preflight, say what would happen, change nothing.
        failback: move the primary back to ``region`` at the end.
        destroy_old_volumes: destroy the old primary's volumes once replaced (default: keep).
        hook: a shell command run after each phase (see ``orchestrator.drill.hooks``).
    """

    region: str
    promote: str | None = None
    dry_run: bool = False
    failback: bool = True
    destroy_old_volumes: bool = False
    hook: str | None = None


async def run_drill(
    settings: Settings,
    request: DrillRequest,
    *,
    bus: DrillBus | None = None,
    options: ExecuteOptions | None = None,
    hook: Hook | None = None,
) -> DrillReport:
    """Run the drill ``request`` asks for and return its report.

    Raises:
        ConfigError: bad input (nothing was changed, nothing was called).
        DeployLocked: a deploy (or another drill) holds the app's lock.
        OrchestratorError: the API or the local Fly could not be reached.
    """
    spec = load_spec(settings.root, app_override=settings.app)
    check_request(spec, request.region, request.promote)
    if settings.app_url == NO_APP_URL:
        raise ConfigError(
            "a drill writes to the app and measures it through its address, and FLY_APP_URL=none "
            "says it has none; point FLY_APP_URL at a `fly proxy` tunnel for the drill",
            where="FLY_APP_URL",
        )
    bus = bus or DrillBus()
    async with connect(settings) as conn:
        with contextlib.ExitStack() as stack:
            journal = stack.enter_context(Journal.open(settings.root))
            if not request.dry_run:
                # No deploy (and no other drill) may change the fleet while this one runs.
                stack.enter_context(
                    DeployLock(conn.settings, conn.app, release=release_id(spec), command="drill")
                )
            runner = DrillRunner(
                conn, spec, request, journal=journal, bus=bus, options=options, hook=hook
            )
            return await runner.run()


class DrillRunner:
    """One drill, from preflight to report. See the module docstring for the sequence."""

    def __init__(
        self,
        conn: Connection,
        spec: DeploySpec,
        request: DrillRequest,
        *,
        journal: Journal,
        bus: DrillBus,
        options: ExecuteOptions | None = None,
        hook: Hook | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.conn = conn
        self.spec = spec
        self.request = request
        self.bus = bus
        if hook is None and request.hook:
            hook = shell_hook(
                request.hook, app=conn.app, region=request.region, promoted=lambda: self.promoted
            )
        self.hook = hook
        self.now = now
        self.region = request.region
        self.primary = spec.primary_region
        self.regions = sorted(c for c, r in spec.regions.items() if r.count > 0)
        self.survivors = [c for c in self.regions if c != self.region]
        self.clock = PhaseClock(bus.emit, now=now)
        self.drill_id = uuid.uuid4().hex[:12]
        self.traffic = AppProbe(
            conn.proxy_url, conn.app, host_header=conn.backend == "local", timeout=TRAFFIC_TIMEOUT_S
        )
        self.canary = CanaryWriter(self.traffic, self.drill_id, primary_region=self.primary)
        self.probes = ProbeLoop(self.traffic, self.regions)
        self.plans = PlanRunner(
            conn.client,
            conn.probe,
            journal,
            bus,
            image=spec.image,
            spec_digest=spec.digest,
            max_unavailable={c: r.max_unavailable for c, r in spec.regions.items()},
            options=options,
        )
        self.fault = self._fault()
        self.notes: list[str] = []
        bus.subscribe(self._collect_note)
        # What happened, for the report and for the restore.
        self.started_at = 0.0
        self.t0: float | None = None
        self.fault_injected = False
        # When the fault call returned: from then on the region is down for every new request.
        self.fault_applied_at: float | None = None
        self.promoted: str | None = None
        self.detected_at: float | None = None
        self.promoted_at: float | None = None
        self.first_write_at: float | None = None
        self.steady_at: float | None = None
        self.verified_at: float | None = None
        self.baseline: TrafficStats | None = None
        self.during: TrafficStats | None = None
        self.rpo: RpoResult | None = None
        self.preflight: Preflight | None = None
        self.scaled: dict[str, int] = {}
        self.abort_reason: str | None = None
        self.failure: str | None = None
        self.served_by: dict[str, int] = {}
        self.extra_details: dict[str, object] = {}

    def _fault(self) -> RegionFault:
        if self.conn.backend == "local":
            settings = self.conn.settings
            if settings.base_url is None or settings.token is None:
                raise LocalFlyError("the local Fly gave no API URL or token")
            return LocalOutage(settings.base_url, settings.token)
        return StopAndCordon(self.conn.client, self.conn.app)

    def _collect_note(self, event: DrillEvent) -> None:
        if isinstance(event, DrillNote) and event.level != "info":
            self.notes.append(f"{event.level}: {event.message}")

    # -- the whole drill --------------------------------------------------------------------

    async def run(self) -> DrillReport:
        """Run the drill and return its report (never raises for a failed drill)."""
        self.started_at = self.now()
        self.bus.emit(
            DrillStarted(
                app=self.conn.app,
                backend=self.conn.backend,
                region=self.region,
                primary_region=self.primary,
                promote=choose_promotion(self.spec, self.region, self.request.promote),
                dry_run=self.request.dry_run,
                at=self.started_at,
            )
        )
        progress = asyncio.create_task(self._progress())
        integrity = Integrity()
        try:
            ready = await self._preflight()
            if ready and not self.request.dry_run:
                await self._fail_over_guarded()
                fail_back = FailBack(self)
                try:
                    final_primary = await fail_back.run()
                except Exception as exc:
                    if not isinstance(exc, OrchestratorError):
                        log.error("drill restore crashed", exc_info=exc)
                    self._failed(f"restore: {exc}")
                    final_primary = None
                    await self._last_resort()
                integrity = await fail_back.integrity(final_primary)
        finally:
            progress.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await progress
            await self.canary.stop()
            await self.probes.stop()
            await self.traffic.aclose()
        report = self._report(integrity)
        self.bus.emit(DrillFinished(report.verdict, report.reason, at=report.finished_at))
        return report

    async def _last_resort(self) -> None:
        """After a failed restore, at least bring the region back; never leave it down."""
        if not self.fault_injected:
            return
        try:
            self.bus.note(await self.fault.clear(self.region), "warning")
        except Exception as exc:
            self.bus.note(
                f"could not bring {self.region} back ({exc}); see docs/drills.md for doing it "
                "by hand",
                "error",
            )

    def _failed(self, message: str) -> None:
        one_line = " ".join(message.split())
        self.bus.note(one_line, "error")
        self.failure = self.failure or one_line

    @contextlib.asynccontextmanager
    async def phase(self, phase: Phase) -> AsyncIterator[PhaseSpan]:
        """Run the block as ``phase``; then run the ``--hook``, if any."""
        with self.clock.phase(phase) as span:
            yield span
        await self._run_hook(span)

    async def skip(self, phase: Phase, detail: str) -> None:
        """Record that ``phase`` does not apply (and run the hook)."""
        self.clock.skip(phase, detail)
        span = self.clock.span(phase)
        if span is not None:
            await self._run_hook(span)

    async def _run_hook(self, span: PhaseSpan) -> None:
        if self.hook is None:
            return
        try:
            await self.hook(span)
        except Exception as exc:
            self.bus.note(f"the hook after {span.phase.value} failed: {exc}", "warning")

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(0.5)  # a display refresh timer
            last = self.canary.last_ack
            window = self._survivor_window(self.now())
            self.bus.emit(
                DrillProgress(
                    primary_region=self.canary.primary_region,
                    writes_acked=len(self.canary.acks),
                    writes_failed=self.canary.failed,
                    last_seq=last.seq if last else None,
                    error_rate=window.error_rate,
                    elapsed_s=self.now() - self.started_at,
                )
            )

    # -- preflight --------------------------------------------------------------------------

    async def _preflight(self) -> bool:
        conn = self.conn
        async with self.phase(Phase.PREFLIGHT) as span:
            fleet = await observe(conn.client, conn.app)
            found = await preflight(
                conn.client,
                conn.probe,
                self.spec,
                fleet,
                region=self.region,
                promote=self.request.promote,
                take_snapshot=not self.request.dry_run,
            )
            self.preflight = found
            for note in found.notes:
                self.bus.note(note, "warning")
            if found.problems:
                span.outcome = "failed"
                span.detail = "; ".join(found.problems)
                self._failed(f"preflight: {span.detail}")
                return False
            lag = max((v["records"] or 0 for v in found.lag.values()), default=0)
            span.detail = (
                f"{len(self.regions)} region(s) healthy; primary last_seq "
                f"{found.primary_last_seq}; replicas at most {lag} record(s) behind"
            )
        if self.request.dry_run:
            self.bus.note("dry run: preflight only; nothing was changed")
        return True

    # -- fail-over under the guard ----------------------------------------------------------

    async def _fail_over_guarded(self) -> None:
        main = asyncio.create_task(FailOver(self).run(), name="drill-failover")
        guard = asyncio.create_task(self._guard(main), name="drill-guard")
        try:
            try:
                await asyncio.wait([main])
            except asyncio.CancelledError:
                # Ctrl-C: stop the fail-over, but still restore the fleet below.
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                self.abort_reason = self.abort_reason or "interrupted by the operator"
                main.cancel()
                await asyncio.wait([main])
        finally:
            guard.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await guard
        if main.cancelled():
            self.abort_reason = self.abort_reason or "the fail-over was cancelled"
            self.bus.note(f"aborted: {self.abort_reason}; restoring the fleet", "error")
            return
        exc = main.exception()
        if exc is not None:
            if not isinstance(exc, OrchestratorError):
                log.error("drill fail-over crashed", exc_info=exc)
            current = self.clock.spans[-1].phase.value if self.clock.spans else "drill"
            self._failed(f"{current}: {exc}")

    def _survivor_window(self, now: float) -> TrafficStats:
        start = max(self.t0 or now, now - GUARD_WINDOW_S)
        return self.probes.stats(start, now, targets=self.survivors)

    async def _guard(self, main: asyncio.Task[None]) -> None:
        while not main.done():
            await asyncio.sleep(0.1)  # the guard's sampling timer
            now = self.now()
            window = self._survivor_window(now) if self.t0 is not None else None
            reason = guard_reason(self.spec.drill, now - self.started_at, window)
            if reason is not None:
                current = self.clock.current
                where = f" during {current.phase.value}" if current else ""
                self.abort_reason = reason + where
                main.cancel()
                return

    async def until(
        self, what: str, probe: Callable[[], Awaitable[float | None] | float | None]
    ) -> float:
        """Poll ``probe`` until it returns a time, or fail after `WAIT_TIMEOUT_S`."""
        deadline = time.monotonic() + WAIT_TIMEOUT_S
        while True:
            value = probe()
            if isinstance(value, Awaitable):
                value = await value
            if value is not None:
                return value
            if time.monotonic() > deadline:
                raise DrillError(f"timed out after {WAIT_TIMEOUT_S:g}s waiting for {what}")
            await asyncio.sleep(0.05)  # polling with a deadline

    # -- the report -------------------------------------------------------------------------

    def _report(self, integrity: Integrity) -> DrillReport:
        finished = self.now()
        rto = None
        if self.t0 is not None:
            rto = compute_rto(
                self.t0,
                detected_at=self.detected_at,
                promoted_at=self.promoted_at,
                first_write_at=self.first_write_at,
                steady_at=self.steady_at,
            )
        objectives = judge(
            self.spec.drill,
            rto=rto,
            rpo=self.rpo,
            error_rate=self.during.error_rate if self.during else None,
            duration_s=finished - self.started_at,
        )
        verdict, reason = self._verdict(objectives, integrity)
        details = {
            "drill_id": self.drill_id,
            "fault": self.fault.kind,
            "preflight": self.preflight.to_json() if self.preflight else None,
            "scaled_up": dict(self.scaled),
            "served_by": dict(self.served_by),
            "journal_runs": list(self.plans.runs),
            "failback": self.request.failback,
            "would_promote": choose_promotion(self.spec, self.region, self.request.promote)
            if self.request.dry_run
            else None,
            "notes": list(self.notes),
            **self.extra_details,
        }
        return DrillReport(
            app=self.conn.app,
            backend=self.conn.backend,
            region=self.region,
            primary_region=self.primary,
            promoted=self.promoted,
            verdict=verdict,
            reason=reason,
            started_at=self.started_at,
            finished_at=finished,
            t0=self.t0,
            phases=tuple(self.clock.spans),
            objectives=objectives,
            rto=rto,
            rpo=self.rpo,
            baseline=self.baseline,
            during=self.during,
            canary={
                **self.canary.to_json(),
                # Every write the old primary acknowledged, so a reader can check the RPO
                # against the records themselves: [n, seq, acked_at].
                "old_primary_acks": [
                    [a.n, a.seq, iso_utc(a.acked_at)] for a in self.canary.acks_from(self.primary)
                ],
            },
            integrity=integrity,
            dry_run=self.request.dry_run,
            details=details,
        )

    def _verdict(
        self, objectives: Mapping[str, Objective], integrity: Integrity
    ) -> tuple[Verdict, str | None]:
        if self.abort_reason is not None:
            extra = f"; then: {self.failure}" if self.failure else ""
            return "aborted", f"{self.abort_reason}{extra}"
        problems = [self.failure] if self.failure else []
        if self.request.dry_run:
            return ("failed", problems[0]) if problems else ("passed", None)
        if integrity.checked:
            problems += integrity.problems()
            if (self.request.failback or self.promoted is None) and not integrity.at_spec:
                problems.append(
                    "the fleet is not back at the spec: " + "; ".join(integrity.spec_problems)
                )
        elif self.fault_injected:
            problems.append("the integrity check did not run")
        for name, obj in objectives.items():
            if not obj.met and self.fault_injected:
                shown = "not measured" if obj.measured is None else f"{obj.measured:g}"
                problems.append(f"{name} {shown} > {obj.target:g}")
        return ("failed", "; ".join(problems)) if problems else ("passed", None)
