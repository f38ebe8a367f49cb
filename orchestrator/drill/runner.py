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
reason in the report (verdict ``aborted``).

Stopping a drill (docs/drills.md, "Interrupting a drill"): the first Ctrl-C stops it at the next
phase boundary, where at most one region takes writes; a second Ctrl-C, or SIGTERM, stops it at
once. Either way the fleet is made safe before the command exits (a region taken down before
any promotion comes back; an old primary that another region has taken over from stays down
and fenced) and the drill's state stays in ``.orchestrator/drill.json`` (`DrillState`), so
``invoke drill --resume`` finishes it and ``invoke drill --abort`` returns the fleet to the
pre-drill primary. ``kill -9`` leaves the same file, as of the last phase boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass

from orchestrator.connect import Connection, connect
from orchestrator.drill.canary import CanaryWriter, canary_n
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
from orchestrator.drill.history import DrillRecord, record_drill
from orchestrator.drill.hooks import shell_hook
from orchestrator.drill.measure import (
    RpoResult,
    TrafficStats,
    compute_rto,
    record_digest,
)
from orchestrator.drill.phases import Phase, PhaseClock, PhaseSpan, iso_utc
from orchestrator.drill.plans import converge_plan
from orchestrator.drill.preflight import Preflight, check_request, choose_promotion, preflight
from orchestrator.drill.probes import ProbeLoop, live_machines, read_records, region_writer
from orchestrator.drill.report import (
    DrillReport,
    Integrity,
    Objective,
    Verdict,
    guard_reason,
    judge,
)
from orchestrator.drill.state import DrillState
from orchestrator.errors import ConfigError, DrillError, LocalFlyError, OrchestratorError
from orchestrator.execute.context import ExecuteOptions
from orchestrator.execute.journal import Journal
from orchestrator.execute.lock import DeployLock
from orchestrator.execute.primaries import refuse_split
from orchestrator.execute.probe import AppProbe
from orchestrator.execute.testhooks import kill_point
from orchestrator.plan.config import release_id
from orchestrator.plan.fleet import observe
from orchestrator.plan.graph import spec_waves
from orchestrator.settings import NO_APP_URL, Settings
from orchestrator.spec.load import load_spec
from orchestrator.spec.model import DeploySpec

__all__ = ["DrillRequest", "DrillRunner", "DrillStopped", "Hook", "run_drill"]

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
    resume: bool = False
    abort: bool = False


class DrillStopped(DrillError):
    """The operator asked the drill to stop; it stopped at a phase boundary."""


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
    saved = DrillState.load(settings.root)
    if request.resume or request.abort:
        flag = "--resume" if request.resume else "--abort"
        if saved is None and request.resume:
            raise ConfigError(
                "no interrupted drill to resume; `invoke status` shows the fleet", where=flag
            )
        if saved is not None:
            request = DrillRequest(
                region=saved.region,
                promote=saved.promoting,
                failback=saved.failback or request.abort,
                destroy_old_volumes=saved.destroy_old_volumes,
                hook=request.hook,
                resume=request.resume,
                abort=request.abort,
            )
        else:
            request = DrillRequest(region=spec.primary_region, abort=True, hook=request.hook)
    else:
        check_request(spec, request.region, request.promote)
        if saved is not None and not request.dry_run:
            raise DrillError(
                f"{saved.describe()}; finish it with `invoke drill --resume` or undo it with "
                "`invoke drill --abort` before starting another"
            )
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
            if not (request.resume or request.abort):
                # A drill on a split fleet would fail one side over onto the other.
                await refuse_split(conn, expected=spec.primary_region, command="drill")
            runner = DrillRunner(
                conn, spec, request, journal=journal, bus=bus, options=options, hook=hook
            )
            if saved is not None and (request.resume or request.abort):
                runner.restore(saved)
            with _stop_on_signals(runner):
                if request.resume or request.abort:
                    report = await runner.finish()
                else:
                    report = await runner.run()
            if not request.dry_run:
                record_drill(
                    settings.root,
                    DrillRecord(
                        report.region, report.primary_region, report.verdict, report.finished_at
                    ),
                )
            return report


@contextlib.contextmanager
def _stop_on_signals(runner: DrillRunner) -> Iterator[None]:
    """Route Ctrl-C and SIGTERM to the runner: the first Ctrl-C asks, the next one insists."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def interrupt() -> None:
        if runner.stop_requested is None:
            runner.request_stop("Ctrl-C")
        elif main is not None:
            runner.stop_now("a second Ctrl-C")
            main.cancel()

    def terminate() -> None:
        runner.stop_now("SIGTERM")
        if main is not None:
            main.cancel()

    installed = []
    for sig, handler in ((signal.SIGINT, interrupt), (signal.SIGTERM, terminate)):
        try:
            loop.add_signal_handler(sig, handler)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not the main thread (tests running drills in threads): no handlers
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


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
        # Stopping (see the module docstring) and what survives the process.
        self.stop_requested: str | None = None
        self.stopped: str | None = None
        self.hard_stop: str | None = None
        self.promoting: str | None = None
        self.new_primary_wrote = False
        self.fault_cleared = False
        # Phases a stopped run finished (a resumed drill does not run them again).
        self.prior_phases: list[str] = []
        self.state = DrillState(
            drill_id=self.drill_id,
            app=conn.app,
            region=self.region,
            primary=self.primary,
            fault_kind=self.fault.kind,
            failback=request.failback,
            destroy_old_volumes=request.destroy_old_volumes,
        )

    def _fault(self) -> RegionFault:
        if self.conn.backend == "local":
            settings = self.conn.settings
            if settings.base_url is None or settings.token is None:
                raise LocalFlyError("the local Fly gave no API URL or token")
            return LocalOutage(
                settings.base_url, settings.token, client=self.conn.client, app=self.conn.app
            )
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

        async def body() -> Integrity:
            ready = await self._preflight()
            if not ready or self.request.dry_run:
                return Integrity()
            await self._fail_over_guarded()
            if self.stopped is not None:
                return Integrity()
            return await self._put_back()

        return await self._drive(body)

    async def finish(self) -> DrillReport:
        """Finish (``--resume``) or undo (``--abort``) a drill from its saved state."""
        self.started_at = self.now()
        self.bus.emit(
            DrillStarted(
                app=self.conn.app,
                backend=self.conn.backend,
                region=self.region,
                primary_region=self.primary,
                promote=self.promoted,
                at=self.started_at,
            )
        )

        async def body() -> Integrity:
            if not self.fault_injected:
                if self.request.abort:
                    return await self._abort_split()
                return await FailBack(self).integrity(self.primary)
            if self.promoted is not None:
                self.new_primary_wrote = await self._took_over(self.promoted)
            return await self._put_back()

        return await self._drive(body)

    async def _drive(self, body: Callable[[], Awaitable[Integrity]]) -> DrillReport:
        progress = asyncio.create_task(self._progress())
        integrity = Integrity()
        try:
            try:
                integrity = await body()
            except DrillStopped as exc:
                self.stopped = str(exc)
            except (asyncio.CancelledError, KeyboardInterrupt):
                # A second Ctrl-C or SIGTERM: stop now, but never leave two writable regions
                # nor a region down that nothing replaced (`_make_safe`).
                self._uncancel()
                self.stopped = f"stopped at once ({self.hard_stop or 'interrupted'})"
            if self.stopped is not None:
                self.bus.note(f"{self.stopped}; making the fleet safe", "error")
                await self._make_safe()
            elif integrity.checked:
                self.extra_details["lost_writes"] = await self._lost_writes(integrity)
        finally:
            progress.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await progress
            await self.canary.stop()
            await self.probes.stop()
            await self.traffic.aclose()
            self._settle_state(integrity)
        report = self._report(integrity)
        self.bus.emit(DrillFinished(report.verdict, report.reason, at=report.finished_at))
        return report

    def _uncancel(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            while task.cancelling():
                task.uncancel()

    async def _put_back(self) -> Integrity:
        """Restore, re-seed, scale back and fail back; then check the fleet's integrity."""
        fail_back = FailBack(self)
        try:
            final_primary = await fail_back.run()
        except DrillStopped:
            raise
        except Exception as exc:
            if not isinstance(exc, OrchestratorError):
                log.error("drill restore crashed", exc_info=exc)
            self._failed(f"restore: {exc}")
            final_primary = None
            await self._last_resort()
        return await fail_back.integrity(final_primary)

    async def _last_resort(self) -> None:
        """After a failed restore, bring the region back, fenced if another took over."""
        if not self.fault_injected or self.fault_cleared:
            return
        fenced = self.promoting is not None
        try:
            self.bus.note(await self.fault.clear(self.region, fenced=fenced), "warning")
            self.fault_cleared = True
        except Exception as exc:
            self.bus.note(
                f"could not bring {self.region} back ({exc}); see docs/drills.md for doing it "
                "by hand",
                "error",
            )

    async def _make_safe(self) -> None:
        """Leave a stopped drill with at most one region taking writes and none down for nothing.

        Before any promotion the region simply comes back (it still holds the primary's
        history, or follows it). Once a region was chosen for promotion, the old one stays
        down and fenced: it may lack writes the new primary took, and ``--resume`` or
        ``--abort`` replaces it from there.
        """
        if not self.fault_injected or self.fault_cleared:
            return
        if self.promoting is not None:
            self.bus.note(
                f"{self.region} stays down and fenced: {self.promoting} was being promoted; "
                "run `invoke drill --resume` to finish the drill or `invoke drill --abort` to "
                f"return the primary to {self.primary}",
                "warning",
            )
            return
        try:
            self.bus.note(await self.fault.clear(self.region), "warning")
            self.fault_cleared = True
        except (OrchestratorError, asyncio.CancelledError) as exc:
            self.bus.note(f"could not bring {self.region} back yet: {_say(exc)}", "error")

    async def _took_over(self, region: str) -> bool:
        """Tell whether any machine of ``region`` was switched to be the primary."""
        machines = await live_machines(self.conn.client, self.conn.app, region=region)
        return any(m.config.env.get("PRIMARY_REGION") == region for m in machines)

    async def _abort_split(self) -> Integrity:
        """With no drill saved: make the spec's primary region the only primary again."""
        fail_back = FailBack(self)
        async with self.phase(Phase.FAILBACK) as span:
            fleet = await observe(self.conn.client, self.conn.app)
            order = [list(w.regions) for w in spec_waves(self.spec)]
            plan = converge_plan(self.spec, fleet, primary=self.primary, order=order)
            await self.plans.run(plan, f"abort: {self.primary} the only primary")
            # A machine that was another primary holds records the primary lacks under seqs
            # the primary also used: it sets them aside at its next pull. Until then its
            # last_seq may equal the primary's while its records differ.
            await self.until("every machine to share the primary's history", self._one_history)
            span.detail = (
                f"every machine follows {self.primary} again; records only another primary "
                "held stay on its volume (orphaned_records)"
            )
        return await fail_back.integrity(self.primary)

    async def _one_history(self) -> float | None:
        machines = await live_machines(self.conn.client, self.conn.app)
        digests = set()
        for m in machines:
            digests.add(record_digest(await read_records(self.traffic, m.id)))
        return self.now() if len(digests) == 1 else None

    async def _lost_writes(self, integrity: Integrity) -> dict[str, object]:
        """Return the acknowledged canary writes the final primary does not hold, by seq."""
        acks = list(self.canary.acks)
        if not acks or not integrity.primaries:
            return {"count": 0, "seqs": []}
        region = integrity.primary_region or self.primary
        try:
            writer = await region_writer(self.conn.client, self.traffic, self.conn.app, region)
            records = await read_records(self.traffic, writer)
        except OrchestratorError as exc:
            return {"count": None, "seqs": [], "error": _say(exc)}
        present = {
            int(r["seq"]): canary_n(r.get("data"), self.drill_id)
            for r in records
            if isinstance(r.get("seq"), int)
        }
        # A seq counts as kept only with the same write in it: a new primary that gave a
        # lost seq to another write does not hide the loss.
        lost = sorted(a.seq for a in acks if present.get(a.seq, -1) != a.n)
        return {"count": len(lost), "seqs": _ranges(lost)}

    def save_state(self) -> None:
        """Write where the drill is to ``.orchestrator/drill.json`` (not for a dry run)."""
        if self.request.dry_run:
            return
        st = self.state
        current = self.clock.spans[-1].phase.value if self.clock.spans else None
        st.phase = current
        st.finished_phases = self.prior_phases + [
            sp.phase.value
            for sp in self.clock.spans
            if sp.finished_at and sp.outcome in ("ok", "skipped")
        ]
        st.fault_injected = self.fault_injected
        st.fault_cleared = self.fault_cleared
        st.promoting = self.promoting or self.promoted
        st.stopped_machines = list(getattr(self.fault, "stopped", []))
        st.set_acks(list(self.canary.acks))
        st.started_at = st.started_at or self.started_at
        st.t0 = self.t0
        st.stopped = self.stopped
        st.stop_requested = self.stop_requested
        try:
            st.save(self.conn.settings.root)
        except OSError as exc:
            self.bus.note(f"could not save the drill's state: {exc}", "warning")

    def _settle_state(self, integrity: Integrity) -> None:
        if self.request.dry_run:
            return
        changed = self.fault_injected and not self.fault_cleared
        if (not changed and self.promoting is None) or (self.stopped is None and integrity.checked):
            # Finished, or the fleet is as it was: nothing to resume.
            DrillState.clear(self.conn.settings.root)
            return
        self.save_state()

    def restore(self, state: DrillState) -> None:
        """Take up a saved drill: its id, what it had done, its acknowledged writes."""
        self.state = state
        self.drill_id = state.drill_id
        self.canary.drill_id = state.drill_id
        self.fault_injected = state.fault_injected
        self.fault_cleared = state.fault_cleared
        self.prior_phases = list(state.finished_phases)
        self.promoted = state.promoting
        self.promoting = state.promoting
        self.t0 = state.t0
        self.canary.acks.extend(state.ack_list())
        stopped = getattr(self.fault, "stopped", None)
        if isinstance(stopped, list):
            stopped.extend(state.stopped_machines)

    def request_stop(self, why: str) -> None:
        """Stop at the next phase boundary (the first Ctrl-C)."""
        self.stop_requested = why
        current = self.clock.current
        where = f"after {current.phase.label}" if current else "at the next phase"
        self.bus.note(
            f"{why}: stopping at the next safe point ({where}); press Ctrl-C again to stop at once",
            "warning",
        )
        self.save_state()

    def stop_now(self, why: str) -> None:
        """Record why the drill is being cancelled at once (a second Ctrl-C, SIGTERM)."""
        self.stop_requested = self.stop_requested or why
        self.hard_stop = why

    def _failed(self, message: str) -> None:
        one_line = " ".join(message.split())
        self.bus.note(one_line, "error")
        self.failure = self.failure or one_line

    @contextlib.asynccontextmanager
    async def phase(self, phase: Phase) -> AsyncIterator[PhaseSpan]:
        """Run the block as ``phase``; then run the ``--hook``, if any.

        Phase boundaries are the drill's safe points: its state is saved on the way in and
        out, and a stop asked for meanwhile (the first Ctrl-C) takes effect on the way out.
        """
        with self.clock.phase(phase) as span:
            self.save_state()
            kill_point("drill_phase_started", phase.value)
            yield span
        self.save_state()
        kill_point("drill_phase_finished", phase.value)
        await self._run_hook(span)
        self._stop_here(phase)

    async def skip(self, phase: Phase, detail: str) -> None:
        """Record that ``phase`` does not apply (and run the hook)."""
        self.clock.skip(phase, detail)
        span = self.clock.span(phase)
        if span is not None:
            await self._run_hook(span)
        self._stop_here(phase)

    def done(self, phase: Phase) -> bool:
        """Tell whether a stopped run of this drill already finished ``phase``."""
        return phase.value in self.prior_phases

    def _stop_here(self, phase: Phase) -> None:
        if self.stop_requested is not None and self.stopped is None:
            raise DrillStopped(f"stopped by {self.stop_requested} after {phase.label}")

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
                # Stopped at once (a second Ctrl-C, SIGTERM): end the fail-over where it is;
                # `run` makes the fleet safe and keeps the state for --resume / --abort.
                self._uncancel()
                self.stopped = f"stopped at once ({self.hard_stop or 'interrupted'})"
                main.cancel()
                await asyncio.wait([main])
        finally:
            guard.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await guard
        if self.stopped is not None:
            return
        if not main.cancelled() and isinstance(main.exception(), DrillStopped):
            self.stopped = str(main.exception())
            return
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
            "stopped": self.stopped,
            "resumed": self.request.resume,
            "abort": self.request.abort,
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
        if self.stopped is not None:
            return "aborted", (
                f"{self.stopped}; the drill's state is saved: `invoke drill --resume` finishes "
                "it, `invoke drill --abort` returns the primary to " + self.primary
            )
        if self.abort_reason is not None:
            extra = f"; then: {self.failure}" if self.failure else ""
            return "aborted", f"{self.abort_reason}{extra}"
        problems = [self.failure] if self.failure else []
        if self.request.dry_run:
            # Nothing was measured: the objectives are not met, they were not tried.
            return ("failed", problems[0]) if problems else ("ready", None)
        if integrity.checked:
            problems += integrity.problems()
            if (self.request.failback or self.promoted is None) and not integrity.at_spec:
                problems.append(
                    "the fleet is not back at the spec: " + "; ".join(integrity.spec_problems)
                )
        elif self.fault_injected:
            problems.append("the integrity check did not run")
        # A resumed or aborted drill measured its objectives only in the run that was stopped
        # (if at all): it is judged on putting the fleet back, which the integrity check covers.
        finishing = self.request.resume or self.request.abort
        for name, obj in objectives.items():
            if finishing:
                break
            if not obj.met and self.fault_injected:
                shown = "not measured" if obj.measured is None else f"{obj.measured:g}"
                problems.append(f"{name} {shown} > {obj.target:g}")
        return ("failed", "; ".join(problems)) if problems else ("passed", None)


def _say(exc: BaseException) -> str:
    """Return what went wrong in words, never a bare exception name."""
    text = " ".join(str(exc).split())
    return text or "interrupted"


def _ranges(seqs: list[int]) -> list[str]:
    """Return ``[1, 2, 3, 7]`` as ``["1-3", "7"]``."""
    out: list[str] = []
    start = prev = None
    for n in seqs:
        if start is None:
            start = prev = n
        elif prev is not None and n == prev + 1:
            prev = n
        else:
            out.append(f"{start}-{prev}" if start != prev else str(start))
            start = prev = n
    if start is not None:
        out.append(f"{start}-{prev}" if start != prev else str(start))
    return out
