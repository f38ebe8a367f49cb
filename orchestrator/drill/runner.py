"""Run a disaster-recovery drill end to end: preflight, fail over, measure, fail back, report.

`DrillRunner` runs the phases in order, under the guard, with a `DrillState` as its record;
``invoke drill`` enters through ``orchestrator.commands.drill.run_drill``. What each phase does,
the guard, and how a drill is stopped and taken up again: docs/drills.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from orchestrator.connect import Connection
from orchestrator.drill.canary import CanaryWriter, canary_n
from orchestrator.drill.clock import PhaseClock
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
    TrafficStats,
    compute_rto,
    record_digest,
)
from orchestrator.drill.phases import Phase, PhaseSpan, iso_utc
from orchestrator.drill.plans import converge_plan
from orchestrator.drill.preflight import choose_promotion, preflight
from orchestrator.drill.probes import ProbeLoop, live_machines, read_records, region_writer
from orchestrator.drill.report import (
    DrillReport,
    Integrity,
    Objective,
    Verdict,
    guard_reason,
    judge,
)
from orchestrator.drill.state import DrillRequest, DrillState
from orchestrator.errors import DrillError, LocalFlyError, OrchestratorError
from orchestrator.execute.context import ExecuteOptions
from orchestrator.execute.failpoints import failpoint
from orchestrator.execute.journal import Journal
from orchestrator.fleetconfig.model import DeploySpec
from orchestrator.fly.proxy import ProxyClient
from orchestrator.plan.fleet import observe
from orchestrator.plan.graph import spec_waves

__all__ = ["DrillRequest", "DrillRunner", "DrillStopped", "Hook"]

log = logging.getLogger(__name__)

Hook = Callable[[PhaseSpan], Awaitable[None]]

TRAFFIC_TIMEOUT_S = 2.0
WAIT_TIMEOUT_S = 120.0
GUARD_WINDOW_S = 3.0


class DrillStopped(DrillError):
    """The operator asked the drill to stop; it stopped at a phase boundary."""


class DrillRunner:
    """Run one drill, from preflight to report (the sequence: docs/drills.md)."""

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
                request.hook,
                app=conn.app,
                region=request.region,
                promoted=lambda: self.state.promoting,
            )
        self.hook = hook
        self.now = now
        self.region = request.region
        self.primary = spec.primary_region
        self.regions = sorted(c for c, r in spec.regions.items() if r.count > 0)
        self.survivors = [c for c in self.regions if c != self.region]
        self.clock = PhaseClock(bus.emit, now=now)
        drill_id = uuid.uuid4().hex[:12]
        self.traffic = ProxyClient(
            conn.proxy_url, conn.app, host_header=conn.backend == "local", timeout=TRAFFIC_TIMEOUT_S
        )
        self.canary = CanaryWriter(self.traffic, drill_id, primary_region=self.primary)
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
        bus.subscribe(self._collect_note)
        # Everything the drill does and measures goes here; FailOver and FailBack write to it.
        self.state = DrillState(
            drill_id=drill_id,
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
            self.state.notes.append(f"{event.level}: {event.message}")

    # -- the whole drill --------------------------------------------------------------------

    def _started(self, promote: str | None, dry_run: bool = False) -> None:
        self.state.run_started_at = self.now()
        self.bus.emit(
            DrillStarted(
                app=self.conn.app,
                backend=self.conn.backend,
                region=self.region,
                primary_region=self.primary,
                promote=promote,
                dry_run=dry_run,
                at=self.state.run_started_at,
            )
        )

    async def run(self) -> DrillReport:
        """Run the drill and return its report (never raises for a failed drill)."""
        self._started(
            choose_promotion(self.spec, self.region, self.request.promote), self.request.dry_run
        )

        async def body() -> Integrity:
            ready = await self._preflight()
            if not ready or self.request.dry_run:
                return Integrity()
            await self._fail_over_guarded()
            if self.state.stopped is not None:
                return Integrity()
            return await self._put_back()

        return await self._drive(body)

    async def finish(self) -> DrillReport:
        """Finish (``--resume``) or undo (``--abort``) a drill from its saved state."""
        self._started(self.state.promoting)

        async def body() -> Integrity:
            if not self.state.fault_injected:
                if self.request.abort:
                    return await self._abort_split()
                return await FailBack(self, self.state).integrity(self.primary)
            if self.state.promoting is not None:
                self.state.new_primary_wrote = await self._took_over(self.state.promoting)
            return await self._put_back()

        return await self._drive(body)

    async def _drive(self, body: Callable[[], Awaitable[Integrity]]) -> DrillReport:
        progress = asyncio.create_task(self._progress())
        integrity = Integrity()
        try:
            try:
                integrity = await body()
            except DrillStopped as exc:
                self.state.stopped = str(exc)
            except (asyncio.CancelledError, KeyboardInterrupt):
                # A second Ctrl-C or SIGTERM: stop now, but never leave two writable regions
                # nor a region down that nothing replaced (`_make_safe`).
                self._uncancel()
                self.state.stopped = f"stopped at once ({self.state.hard_stop or 'interrupted'})"
            if self.state.stopped is not None:
                self.bus.note(f"{self.state.stopped}; making the fleet safe", "error")
                await self._make_safe()
            elif integrity.checked:
                self.state.extra_details["lost_writes"] = await self._lost_writes(integrity)
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
        fail_back = FailBack(self, self.state)
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
        if not self.state.fault_injected or self.state.fault_cleared:
            return
        fenced = self.state.promoting is not None
        try:
            self.bus.note(await self.fault.clear(self.region, fenced=fenced), "warning")
            self.state.fault_cleared = True
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
        if not self.state.fault_injected or self.state.fault_cleared:
            return
        if self.state.promoting is not None:
            self.bus.note(
                f"{self.region} stays down and fenced: {self.state.promoting} was being promoted; "
                "run `invoke drill --resume` to finish the drill or `invoke drill --abort` to "
                f"return the primary to {self.primary}",
                "warning",
            )
            return
        try:
            self.bus.note(await self.fault.clear(self.region), "warning")
            self.state.fault_cleared = True
        except (OrchestratorError, asyncio.CancelledError) as exc:
            self.bus.note(f"could not bring {self.region} back yet: {_say(exc)}", "error")

    async def _took_over(self, region: str) -> bool:
        """Tell whether any machine of ``region`` was switched to be the primary."""
        machines = await live_machines(self.conn.client, self.conn.app, region=region)
        return any(m.config.env.get("PRIMARY_REGION") == region for m in machines)

    async def _abort_split(self) -> Integrity:
        """With no drill saved: make the spec's primary region the only primary again."""
        fail_back = FailBack(self, self.state)
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
            int(r["seq"]): canary_n(r.get("data"), self.state.drill_id)
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
        # What the phase clock, the fault and the canary keep themselves, copied in.
        st.phase = self.clock.spans[-1].phase.value if self.clock.spans else None
        st.finished_phases = st.prior_phases + [
            sp.phase.value
            for sp in self.clock.spans
            if sp.finished_at and sp.outcome in ("ok", "skipped")
        ]
        st.stopped_machines = list(getattr(self.fault, "stopped", []))
        st.set_acks(list(self.canary.acks))
        st.started_at = st.started_at or st.run_started_at
        try:
            st.save(self.conn.settings.root)
        except OSError as exc:
            self.bus.note(f"could not save the drill's state: {exc}", "warning")

    def _settle_state(self, integrity: Integrity) -> None:
        if self.request.dry_run:
            return
        st = self.state
        changed = st.fault_injected and not st.fault_cleared
        if (not changed and st.promoting is None) or (st.stopped is None and integrity.checked):
            # Finished, or the fleet is as it was: nothing to resume.
            DrillState.clear(self.conn.settings.root)
            return
        self.save_state()

    def restore(self, state: DrillState) -> None:
        """Take up a saved drill: its id, what it had done, its acknowledged writes."""
        self.state = state
        # How the stopped run was stopped is history: this run has not been asked to stop.
        state.stopped = state.stop_requested = None
        state.prior_phases = list(state.finished_phases)
        self.canary.drill_id = state.drill_id
        self.canary.acks.extend(state.ack_list())
        stopped = getattr(self.fault, "stopped", None)
        if isinstance(stopped, list):
            stopped.extend(state.stopped_machines)

    def request_stop(self, why: str) -> None:
        """Stop at the next phase boundary (the first Ctrl-C)."""
        self.state.stop_requested = why
        current = self.clock.current
        where = f"after {current.phase.label}" if current else "at the next phase"
        self.bus.note(
            f"{why}: stopping at the next safe point ({where}); press Ctrl-C again to stop at once",
            "warning",
        )
        self.save_state()

    def stop_now(self, why: str) -> None:
        """Record why the drill is being cancelled at once (a second Ctrl-C, SIGTERM)."""
        self.state.stop_requested = self.state.stop_requested or why
        self.state.hard_stop = why

    def _failed(self, message: str) -> None:
        one_line = " ".join(message.split())
        self.bus.note(one_line, "error")
        self.state.failure = self.state.failure or one_line

    @contextlib.asynccontextmanager
    async def phase(self, phase: Phase) -> AsyncIterator[PhaseSpan]:
        """Run the block as ``phase``; then run the ``--hook``, if any.

        Phase boundaries are the drill's safe points: its state is saved on the way in and
        out, and a stop asked for meanwhile (the first Ctrl-C) takes effect on the way out.
        """
        with self.clock.phase(phase) as span:
            self.save_state()
            failpoint("drill_phase_started", phase.value)
            yield span
        self.save_state()
        failpoint("drill_phase_finished", phase.value)
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
        return phase.value in self.state.prior_phases

    def _stop_here(self, phase: Phase) -> None:
        if self.state.stop_requested is not None and self.state.stopped is None:
            raise DrillStopped(f"stopped by {self.state.stop_requested} after {phase.label}")

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
                    elapsed_s=self.now() - self.state.run_started_at,
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
            self.state.preflight = found
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
        main = asyncio.create_task(FailOver(self, self.state).run(), name="drill-failover")
        guard = asyncio.create_task(self._guard(main), name="drill-guard")
        try:
            try:
                await asyncio.wait([main])
            except asyncio.CancelledError:
                # Stopped at once (a second Ctrl-C, SIGTERM): end the fail-over where it is;
                # `run` makes the fleet safe and keeps the state for --resume / --abort.
                self._uncancel()
                self.state.stopped = f"stopped at once ({self.state.hard_stop or 'interrupted'})"
                main.cancel()
                await asyncio.wait([main])
        finally:
            guard.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await guard
        if self.state.stopped is not None:
            return
        if not main.cancelled() and isinstance(main.exception(), DrillStopped):
            self.state.stopped = str(main.exception())
            return
        if main.cancelled():
            self.state.abort_reason = self.state.abort_reason or "the fail-over was cancelled"
            self.bus.note(f"aborted: {self.state.abort_reason}; restoring the fleet", "error")
            return
        exc = main.exception()
        if exc is not None:
            if not isinstance(exc, OrchestratorError):
                log.error("drill fail-over crashed", exc_info=exc)
            current = self.clock.spans[-1].phase.value if self.clock.spans else "drill"
            self._failed(f"{current}: {exc}")

    def _survivor_window(self, now: float) -> TrafficStats:
        start = max(self.state.t0 or now, now - GUARD_WINDOW_S)
        return self.probes.stats(start, now, targets=self.survivors)

    async def _guard(self, main: asyncio.Task[None]) -> None:
        while not main.done():
            await asyncio.sleep(0.1)  # the guard's sampling timer
            now = self.now()
            window = self._survivor_window(now) if self.state.t0 is not None else None
            reason = guard_reason(self.spec.drill, now - self.state.run_started_at, window)
            if reason is not None:
                current = self.clock.current
                where = f" during {current.phase.value}" if current else ""
                self.state.abort_reason = reason + where
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
        st = self.state
        finished = self.now()
        rto = None
        if st.t0 is not None:
            rto = compute_rto(
                st.t0,
                detected_at=st.detected_at,
                promoted_at=st.promoted_at,
                first_write_at=st.first_write_at,
                steady_at=st.steady_at,
            )
        objectives = judge(
            self.spec.drill,
            rto=rto,
            rpo=st.rpo,
            error_rate=st.during.error_rate if st.during else None,
            duration_s=finished - st.run_started_at,
        )
        verdict, reason = self._verdict(objectives, integrity)
        details = {
            "drill_id": st.drill_id,
            "fault": self.fault.kind,
            "preflight": st.preflight.to_json() if st.preflight else None,
            "scaled_up": dict(st.scaled),
            "served_by": dict(st.served_by),
            "journal_runs": list(self.plans.runs),
            "failback": self.request.failback,
            "would_promote": choose_promotion(self.spec, self.region, self.request.promote)
            if self.request.dry_run
            else None,
            "notes": list(st.notes),
            "stopped": st.stopped,
            "resumed": self.request.resume,
            "abort": self.request.abort,
            **st.extra_details,
        }
        return DrillReport(
            app=self.conn.app,
            backend=self.conn.backend,
            region=self.region,
            primary_region=self.primary,
            promoted=st.promoting,
            verdict=verdict,
            reason=reason,
            started_at=st.run_started_at,
            finished_at=finished,
            t0=st.t0,
            phases=tuple(self.clock.spans),
            objectives=objectives,
            rto=rto,
            rpo=st.rpo,
            baseline=st.baseline,
            during=st.during,
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
        st = self.state
        if st.stopped is not None:
            return "aborted", (
                f"{st.stopped}; the drill's state is saved: `invoke drill --resume` finishes "
                "it, `invoke drill --abort` returns the primary to " + self.primary
            )
        if st.abort_reason is not None:
            extra = f"; then: {st.failure}" if st.failure else ""
            return "aborted", f"{st.abort_reason}{extra}"
        problems = [st.failure] if st.failure else []
        if self.request.dry_run:
            # Nothing was measured: the objectives are not met, they were not tried.
            return ("failed", problems[0]) if problems else ("ready", None)
        if integrity.checked:
            problems += integrity.problems()
            if (self.request.failback or st.promoting is None) and not integrity.at_spec:
                problems.append(
                    "the fleet is not back at the spec: " + "; ".join(integrity.spec_problems)
                )
        elif st.fault_injected:
            problems.append("the integrity check did not run")
        # A resumed or aborted drill measured its objectives only in the run that was stopped
        # (if at all): it is judged on putting the fleet back, which the integrity check covers.
        finishing = self.request.resume or self.request.abort
        for name, obj in objectives.items():
            if finishing:
                break
            if not obj.met and st.fault_injected:
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
