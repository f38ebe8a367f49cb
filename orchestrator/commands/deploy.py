"""``invoke deploy`` (and ``--resume``): check the input, lock, observe, plan, run.

The order of the steps and what ``--resume`` finishes: docs/deploys.md and docs/rollouts.md.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from orchestrator.commands.resume import (
    chain_volumes,
    finish_rollback,
    owes_rollback,
    resumable,
    resume_options,
    unbaked_regions,
)
from orchestrator.commands.rollback import RollbackRequest, rollback
from orchestrator.connect import Connection, connect, ensure_app
from orchestrator.drill.writes import WriteMeter
from orchestrator.errors import ConfigError
from orchestrator.execute.autorollback import automatic_rollback
from orchestrator.execute.context import ExecuteOptions
from orchestrator.execute.control import RunControl
from orchestrator.execute.events import EventBus, Note
from orchestrator.execute.executor import (
    DeployResult,
    Failure,
    RollbackAction,
    RollbackReport,
)
from orchestrator.execute.expected import durations_for, wave_timings
from orchestrator.execute.journal import RunRecord
from orchestrator.execute.ledger import Ledger, RemoteRun, read_ledger, remote_resumable
from orchestrator.execute.lock import DeployLock
from orchestrator.execute.logtail import MACHINE_LOGS
from orchestrator.execute.primaries import gate_writable_primary, observe_primaries, refuse_split
from orchestrator.execute.promgate import PROMETHEUS, PromEndpoint, resolve_endpoint
from orchestrator.execute.run import open_run
from orchestrator.execute.secretstate import observe_secrets
from orchestrator.fleetconfig.load import check_pause_after, load_checked_spec
from orchestrator.fleetconfig.model import DeploySpec
from orchestrator.fleetconfig.promql import read_prometheus
from orchestrator.notify import Notifier, read_notify
from orchestrator.plan.config import Secrets, release_id
from orchestrator.plan.eta import duration_text, estimate
from orchestrator.plan.fleet import Fleet, observe_fleet
from orchestrator.plan.graph import build_plan
from orchestrator.plan.model import Plan
from orchestrator.plan.resume import with_health_gates
from orchestrator.settings import NO_APP_URL, Settings

__all__ = [
    "DeployRequest",
    "DryRun",
    "deploy",
    "plan",
    "plan_with_fleet",
    "with_health_gates",
]


@dataclass(frozen=True, slots=True)
class DeployRequest:
    """What the operator asked for.

    Attributes:
        regions: regions to deploy (empty: all, in waves).
        image: an image that replaces fly.toml's ``[build] image``.
        dry_run: plan only; change nothing.
        resume: converge the last interrupted or failed deploy of the app.
        pause_after: regions whose wave pauses once its gates pass, until ``invoke promote``
            (on top of the waves with ``pause = true``).
        measure_writes: write to the primary region through the proxy for the whole run and
            report its write downtime (the longest span with no acknowledged write).
        leader_last: in the primary region, update the machine holding the primary role last
            (off only to measure the slot order against it: ``bench/writes.py``).
    """

    regions: tuple[str, ...] = ()
    image: str | None = None
    dry_run: bool = False
    resume: bool = False
    pause_after: tuple[str, ...] = ()
    measure_writes: bool = False
    leader_last: bool = True


@dataclass(frozen=True, slots=True)
class DryRun:
    """The answer of a ``--dry-run``: the plan that would have run, and the fleet it is for."""

    plan: Plan
    fleet: Fleet | None = None


def started_local_note(conn: Connection) -> str:
    """Say that a local Fly now runs in the background, and how to stop it."""
    return (
        f"started the local Fly in the background ({conn.settings.local_state_dir}); it keeps "
        "running after this command: stop it with `invoke local.down`"
    )


async def plan(
    settings: Settings, *, regions: Sequence[str] = (), image: str | None = None
) -> Plan:
    """Return the plan a deploy would run now (reads only)."""
    return (await plan_with_fleet(settings, regions=regions, image=image))[0]


async def plan_with_fleet(
    settings: Settings, *, regions: Sequence[str] = (), image: str | None = None
) -> tuple[Plan, Fleet]:
    """Return the plan a deploy would run now and the fleet it was made from (reads only)."""
    spec = load_checked_spec(settings.root, app=settings.app, regions=regions, image=image)
    async with connect(settings) as conn:
        fleet = await observe_fleet(conn.client, conn.app)
        secrets = await observe_secrets(conn.client, conn.app, settings.root)
        leader = await _leader(conn, spec, fleet)
    planned = _deploy_plan(spec, fleet, regions, image, secrets, leader)
    return _with_address_note(settings, planned), fleet


def _deploy_plan(
    spec: DeploySpec,
    fleet: Fleet,
    regions: Sequence[str],
    image: str | None,
    secrets: Secrets | None,
    leader: str | None = None,
) -> Plan:
    """Plan a deploy: the regions asked (or all), the image, the secrets, the release command."""
    return build_plan(
        spec,
        fleet,
        regions=list(regions) or None,
        image=image,
        secrets=secrets,
        release_command=True,
        leader=leader,
        data_gate=True,
    )


async def _leader(conn: Connection, spec: DeploySpec, fleet: Fleet) -> str | None:
    """Return the machine holding the primary role, when the primary region has several.

    With one machine there there is no order to choose, so the app is not asked.
    """
    if len(fleet.managed_in(spec.primary_region)) < 2:
        return None
    return (await observe_primaries(conn, expected=spec.primary_region)).leader


def _with_address_note(settings: Settings, plan: Plan) -> Plan:
    """Say in the plan when the app has no public address, so its gates are Fly's checks alone."""
    if settings.app_url != NO_APP_URL or not plan.mutating_steps:
        return plan
    note = (
        "the app has no public address (FLY_APP_URL=none): health gates rely on Fly's checks "
        "alone; metrics gates and replication checks are skipped"
    )
    return dataclasses.replace(plan, notes=(*plan.notes, note))


def _control(
    conn: Connection,
    plan: Plan,
    pause_after: Sequence[str],
    lock: DeployLock,
    ledger: Ledger,
    notifier: Notifier,
    bus: EventBus,
) -> RunControl:
    """Return the run's pause/abort control: which waves pause, read from any host."""

    def on_pause(wave: int | None) -> None:
        ledger.paused(wave)
        notifier.paused(wave)

    waves = {i: tuple(regions) for i, regions in enumerate(plan.waves, start=1)}
    pause = {i for i, spec in enumerate(plan.wave_specs, start=1) if spec.pause}
    pause |= {i for i, regions in waves.items() if set(regions) & set(pause_after)}
    last = len(waves)
    return RunControl(
        client=conn.client,
        settings=conn.settings,
        app=conn.app,
        run=lock.holder.id if lock.holder else "",
        pause_waves={w for w in pause if w < last},
        wave_regions=waves,
        bus=bus,
        on_pause=on_pause,
    )


async def _remote_run(settings: Settings) -> RemoteRun | None:
    """Return the run recorded on Fly that ``--resume`` finishes, if it is not this journal's."""
    try:
        local: RunRecord | None = resumable(settings)
    except ConfigError:
        local = None
    async with connect(settings) as conn:
        intent, _ = await read_ledger(conn)
    return remote_resumable(settings, intent, local)


async def deploy(
    settings: Settings,
    request: DeployRequest,
    *,
    bus: EventBus | None = None,
    options: ExecuteOptions | None = None,
    before_rollback: Callable[[], Awaitable[None]] | None = None,
) -> DeployResult | DryRun:
    """Deploy as asked and return how it went.

    ``before_rollback`` runs before an automatic rollback puts machines back (``invoke
    secrets set`` restores the previous values there, so the machines get them back).

    Raises:
        ConfigError: bad input (nothing was changed).
        DeployLocked: another deploy of the app is running (the message names it).
        OrchestratorError: the API or the local Fly could not be reached.
    """
    bus = bus or EventBus()
    regions: Sequence[str] = request.regions
    image = request.image
    resumed: RunRecord | None = None
    remote = await _remote_run(settings) if request.resume else None
    if remote is not None:
        # Another host's (or directory's) run, killed or failed: its intent is on Fly.
        bus.emit(Note(f"resuming {remote.describe()} in {', '.join(remote.intent.regions)}"))
        if remote.owes_rollback or remote.intent.command == "rollback":
            if request.dry_run:
                raise ConfigError(
                    "that run is finished by rolling back, which a dry run cannot show; run "
                    "`invoke deploy --resume`",
                    where="--dry-run",
                )
            intent = remote.intent
            again = (
                RollbackRequest(
                    regions=intent.rollback_regions or intent.failed or intent.regions,
                    to=intent.rollback_to,
                )
                if remote.owes_rollback
                else RollbackRequest(regions=intent.regions, to=intent.release)
            )
            return await rollback(settings, again, bus=bus, options=resume_options(options))
        resumed = remote.as_record()
        image = image or resumed.image
        regions = regions or resumed.regions
    elif request.resume:
        resumed = resumable(settings)
        bus.emit(
            Note(
                f"resuming run {resumed.run} ({resumed.command} of {resumed.release}, "
                f"{resumed.outcome or 'interrupted'}) in "
                f"{', '.join(resumed.regions) or 'all regions'}"
            )
        )
        if request.dry_run and owes_rollback(settings, resumed):
            raise ConfigError(
                f"run {resumed.run} is finished by rolling back, which a dry run cannot "
                "show; run `invoke deploy --resume`",
                where="--dry-run",
            )
        if resumed.command == "rollback" and resumed.rollback_of is None:
            # A killed `invoke rollback`: run it again.
            again = RollbackRequest(regions=tuple(resumed.regions), to=resumed.release)
            return await rollback(
                settings, again, bus=bus, options=resume_options(options), resumed_from=resumed.run
            )
        if resumed.command == "deploy":
            image = image or resumed.image
            regions = regions or resumed.regions
    spec = load_checked_spec(
        settings.root,
        app=settings.app,
        regions=regions if resumed is None or resumed.command == "deploy" else (),
        image=image,
    )
    check_pause_after(spec, request.pause_after, regions)
    read_notify(settings.root)  # a bad [notify] is bad input, found before any call
    timeout = (options or ExecuteOptions()).api_timeout_s
    async with connect(settings, timeout=timeout) as conn:
        if conn.started_local:
            bus.emit(Note(started_local_note(conn)))
        secrets = await observe_secrets(conn.client, conn.app, settings.root)
        if request.dry_run:
            fleet = await observe_fleet(conn.client, conn.app)
            leader = await _leader(conn, spec, fleet) if request.leader_last else None
            planned = _deploy_plan(spec, fleet, regions, image, secrets, leader)
            return DryRun(_with_address_note(settings, planned), fleet)
        # Before the lock: a Prometheus that cannot be used is bad input, found first.
        endpoint = _prometheus(conn.settings, spec)
        with open_run(
            conn,
            spec,
            bus=bus,
            options=resume_options(options) if resumed is not None else options,
            release=release_id(spec, secrets),
            command="deploy",
        ) as (how, lock):
            journal = how.journal
            ledger = Ledger(lock, settings, "deploy")
            bus.subscribe(ledger)
            _warn_stale_drill(settings, spec, bus)
            await _clean_rehearsals(conn, bus)
            notifier = Notifier(
                read_notify(settings.root), os.environ, app=conn.app, command="deploy", bus=bus
            )
            bus.subscribe(notifier)
            try:
                # Either side of a split may hold acknowledged writes the other lacks: a deploy
                # would overwrite one of them.
                view = await refuse_split(conn, expected=spec.primary_region, command="deploy")
                if resumed is not None and resumed.run:
                    finished = await finish_rollback(how, journal, resumed)
                    if finished is not None:
                        return await gate_writable_primary(
                            conn, finished, expected=spec.primary_region, journal=journal, bus=bus
                        )
                fleet = await observe_fleet(conn.client, conn.app)
                leader = view.leader if request.leader_last else None
                the_plan = _deploy_plan(spec, fleet, regions, image, secrets, leader)
                if resumed is not None:
                    the_plan = with_health_gates(
                        the_plan,
                        spec,
                        rebake=unbaked_regions(journal, resumed.run),
                        reseeded=chain_volumes(journal, resumed.run),
                    )
                    options = resume_options(options)
                the_plan = _with_address_note(settings, the_plan)
                for note in the_plan.notes:
                    bus.emit(Note(note))
                if the_plan.mutating_steps:
                    await ensure_app(conn)
                control = _control(conn, the_plan, request.pause_after, lock, ledger, notifier, bus)
                executor = how.executor(
                    the_plan,
                    command="deploy",
                    resumed_from=resumed.run if resumed is not None and resumed.run else None,
                    rollback=_after(before_rollback, automatic_rollback(how)),
                    fleet=fleet,
                    control=control,
                )
                eta = estimate(the_plan, durations_for(settings), how.max_unavailable)
                if the_plan.mutating_steps:
                    bus.emit(
                        Note(f"expected to take {duration_text(eta.seconds)} ({eta.source})")
                    )
                    await control.start()
                logs = MACHINE_LOGS.set(
                    settings.local_state_dir / "machines" if conn.backend == "local" else None
                )
                prom = PROMETHEUS.set(endpoint)
                meter = _write_meter(conn, spec, request) if the_plan.mutating_steps else None
                if meter is not None:
                    meter.start()
                try:
                    result = await executor.run()
                finally:
                    MACHINE_LOGS.reset(logs)
                    PROMETHEUS.reset(prom)
                    await control.stop()
                    downtime = await meter.stop() if meter is not None else None
                result = replace(result, waves=wave_timings(the_plan, eta, result.steps))
                if downtime is not None:
                    bus.emit(Note(downtime.describe()))
                    result = replace(result, write_downtime=downtime.to_json())
                return await gate_writable_primary(
                    conn, result, expected=spec.primary_region, journal=journal, bus=bus
                )
            finally:
                await notifier.close()


def _prometheus(settings: Settings, spec: DeploySpec) -> PromEndpoint | None:
    """Return the Prometheus the waves' PromQL checks ask (none when no wave has any)."""
    if not any(w.queries for w in spec.waves):
        return None
    source = read_prometheus(settings.root)
    return resolve_endpoint(settings, source) if source is not None else None


def _write_meter(conn: Connection, spec: DeploySpec, request: DeployRequest) -> WriteMeter | None:
    """Return the writer ``--measure-writes`` asks for (none for an app with no address)."""
    if not request.measure_writes or not conn.probe.reachable:
        return None
    return WriteMeter(
        conn.proxy_url,
        conn.app,
        spec.primary_region,
        host_header=conn.backend == "local",
        run_id=uuid.uuid4().hex[:8],
    )


def _after(
    first: Callable[[], Awaitable[None]] | None,
    hook: RollbackAction,
) -> RollbackAction:
    """Return ``hook``, run after ``first`` when there is one."""
    if first is None:
        return hook

    async def run(failure: Failure) -> RollbackReport:
        await first()
        return await hook(failure)

    return run


def _warn_stale_drill(settings: Settings, spec: DeploySpec, bus: EventBus) -> None:
    """Warn when the primary region's last passing drill is older than ``[drill] max_age``."""
    import time

    from orchestrator.drill.history import read_drills, stale_drill

    said = stale_drill(
        read_drills(settings.root), spec.primary_region, spec.drill.max_age_s, time.time()
    )
    if said is not None:
        bus.emit(Note(said, level="warning"))


async def _clean_rehearsals(conn: Connection, bus: EventBus) -> None:
    """Destroy what a killed `invoke rehearse` left (its machine and fork), and say so."""
    from orchestrator.commands.rehearse import clean_rehearsals

    cleaned = await clean_rehearsals(conn)
    if cleaned:
        bus.emit(Note(f"destroyed what a killed rehearsal left: {', '.join(cleaned)}"))
