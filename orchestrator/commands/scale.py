"""Run ``invoke scale``: show desired beside observed, or change regions and roll them out.

A change goes through the same pipeline as ``invoke deploy --region R``, so a scale is a deploy
of the regions it names, with their new desired size:

1. every flag is checked against Fly's rules and the fleet's files, for every region, before
   anything is written or any API is called (``update_region_file(..., dry_run=True)``);
2. the app's deploy lock is taken (a deploy, rollback or another scale running fails fast);
3. ``regions/<code>.toml`` is written (comments kept), so the next deploy keeps the new size;
4. the fleet is observed, planned with the deploy planner and run by the deploy executor:
   new slots get a volume (an unattached one reused, else a new one; forked from the primary
   in a replica region) and a machine; size changes roll a spearhead first, then the rest
   within ``max_unavailable``, each through the health gate; a scale-down destroys the highest
   slots first and keeps their volumes unless ``destroy_volumes``;
5. volumes smaller than a raised ``volume_size_gb`` are extended (``PUT .../extend``), which the
   deploy planner does not do (it never touches an existing volume's size).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.connect import Connection, connect, ensure_app
from orchestrator.errors import ConfigError, FlyNotFound, OrchestratorError
from orchestrator.execute.context import ExecuteOptions
from orchestrator.execute.events import EventBus, Note, utcnow
from orchestrator.execute.executor import DeployResult, StepReport
from orchestrator.execute.journal import iso
from orchestrator.execute.primaries import gate_writable_primary, refuse_split
from orchestrator.execute.run import open_run
from orchestrator.execute.secretstate import scale_secrets
from orchestrator.fleetconfig.edit import RegionEdit, update_region_file
from orchestrator.fleetconfig.load import load_checked_spec, load_spec
from orchestrator.fleetconfig.model import DeploySpec
from orchestrator.plan.config import release_id
from orchestrator.plan.fleet import GONE_MACHINE_STATES, Fleet, fleet_from_api, observe_fleet
from orchestrator.plan.graph import build_plan, spec_waves
from orchestrator.plan.groups import group_fleet
from orchestrator.plan.model import Plan
from orchestrator.plan.steps import StepKind
from orchestrator.scale.cost import ScaleImpact, scale_impact
from orchestrator.scale.report import ScaleReport, build_report
from orchestrator.scale.request import ScaleRequest, parse_scale_flags
from orchestrator.scale.usage import measure_usage
from orchestrator.settings import Settings

__all__ = [
    "VOLUME_EXTEND",
    "Confirm",
    "ScaleDryRun",
    "ScaleResult",
    "VolumeExtend",
    "check_scale",
    "fleet_regions",
    "parse_scale_flags",
    "plan_extends",
    "preview_impact",
    "run_scale",
    "scale",
    "show_scale",
]

VOLUME_EXTEND = "volume.extend"

Confirm = Callable[[ScaleImpact], bool]
"""Asked before a scale that `ScaleImpact.needs_confirmation`; true goes ahead."""
"""The kind of the extend steps a scale adds to the deploy's step list."""


@dataclass(frozen=True, slots=True)
class VolumeExtend:
    """A volume that must grow to the region's new ``volume_size_gb``.

    Attributes:
        region: its region.
        volume_id: the volume.
        machine_id: the live machine that mounts it, or ``None``.
        from_gb: its size now.
        to_gb: the size asked for.
    """

    region: str
    volume_id: str
    machine_id: str | None
    from_gb: int
    to_gb: int

    @property
    def step_id(self) -> str:
        """Return the id of its step in the result: ``syd:volume.extend:vol_...``."""
        return f"{self.region}:{VOLUME_EXTEND}:{self.volume_id}"

    def to_json(self) -> dict[str, Any]:
        """Return the extend as JSON."""
        return {
            "region": self.region,
            "volume": self.volume_id,
            "machine": self.machine_id,
            "from_gb": self.from_gb,
            "to_gb": self.to_gb,
        }


def _changes_json(edits: Sequence[RegionEdit]) -> dict[str, Any]:
    return {
        e.region: {
            "file": e.path,
            "written": e.written,
            "changes": [{"key": c.key, "old": c.old, "new": c.new} for c in e.changes],
        }
        for e in edits
    }


@dataclass(frozen=True, slots=True)
class ScaleDryRun:
    """What a ``--dry-run`` would do: file changes, the plan, and volume extends.

    Attributes:
        edits: what each region file would become (nothing written).
        plan: the deploy plan for the named regions with the new sizes.
        extends: volumes that would be extended.
    """

    edits: tuple[RegionEdit, ...]
    plan: Plan
    extends: tuple[VolumeExtend, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Return the plan's JSON (as ``deploy --dry-run --json``) plus the file changes."""
        data = self.plan.to_json()
        data["changes"] = _changes_json(self.edits)
        data["volume_extends"] = [x.to_json() for x in self.extends]
        return data


@dataclass(frozen=True, slots=True)
class ScaleResult:
    """How a scale went.

    Attributes:
        edits: what changed in each region file (``written`` says whether it was written).
        result: the run, as a deploy reports it (extend steps first, then the plan's steps).
    """

    edits: tuple[RegionEdit, ...]
    result: DeployResult

    @property
    def ok(self) -> bool:
        """Tell whether the scale reached its goal."""
        return self.result.ok

    @property
    def exit_code(self) -> int:
        """Return the command line's exit code: 0 on success or noop, 1 otherwise."""
        return self.result.exit_code

    def to_json(self) -> dict[str, Any]:
        """Return DESIGN.md's ``deploy --json`` object plus ``changes`` per region."""
        data = self.result.to_json()
        data["changes"] = _changes_json(self.edits)
        return data


def fleet_regions(settings: Settings) -> tuple[str, ...]:
    """Return the fleet's region codes from ``regions/*.toml``, or none if the files are bad."""
    try:
        return tuple(load_spec(settings.root).regions)
    except ConfigError:
        return ()


def check_scale(settings: Settings, request: ScaleRequest) -> tuple[RegionEdit, ...]:
    """Check every flag against Fly's rules and the fleet's files; write nothing, call nothing.

    Returns:
        What each region's file would become.

    Raises:
        ConfigError: naming the flag (``--memory: 4096 MB is not allowed for ...``), the
            region (``--region``) or the file.
    """
    return tuple(_edit(settings.root, code, request, dry_run=True) for code in request.regions)


def _edit(root: Path, code: str, request: ScaleRequest, *, dry_run: bool) -> RegionEdit:
    return update_region_file(
        root,
        code,
        count=request.count,
        vm=request.vm,
        cpus=request.cpus,
        memory_mb=request.memory_mb,
        volume_size_gb=request.volume_size_gb,
        dry_run=dry_run,
        group=request.group,
    )


def plan_extends(
    spec: DeploySpec, fleet: Fleet, regions: Sequence[str], plan: Plan
) -> tuple[VolumeExtend, ...]:
    """Return the volumes of ``regions`` smaller than their region's ``volume_size_gb`` (pure).

    Volumes the plan destroys (a scale-down with ``destroy_volumes``) are left out.
    """
    if spec.mount is None:
        return ()
    doomed = {
        str(s.params["volume"])
        for s in plan.steps()
        if s.kind is StepKind.MACHINE_DESTROY and s.params.get("volume")
    }
    mounted_by = {m.volume_id: m.id for m in fleet.machines if m.volume_id}
    out = []
    for code in sorted(set(regions)):
        wanted = spec.regions[code].volume_size_gb
        for volume in fleet.volumes_in(code, spec.mount.source):
            if volume.size_gb < wanted and volume.id not in doomed:
                machine = mounted_by.get(volume.id) or volume.attached_machine_id
                out.append(VolumeExtend(code, volume.id, machine, volume.size_gb, wanted))
    return tuple(out)


def _extends(
    spec: DeploySpec, fleet: Fleet, request: ScaleRequest, plan: Plan
) -> tuple[VolumeExtend, ...]:
    """Return the volumes to extend: the named group's (``--group``), else the default's."""
    if request.group is None:
        return plan_extends(spec, fleet, request.regions, plan)
    return plan_extends(
        spec.for_group(request.group),
        group_fleet(fleet, spec, request.group),
        request.regions,
        plan,
    )


def _with_regions(spec: DeploySpec, settings: Settings, edits: Sequence[RegionEdit]) -> DeploySpec:
    """Return the spec as it reads with the edited region files (flat keys reach every group)."""
    if not spec.groups:
        return dataclasses.replace(
            spec, regions={**spec.regions, **{e.region: e.after for e in edits}}
        )
    return load_spec(
        settings.root, app_override=settings.app, overlay={e.path: e.text for e in edits}
    )


async def show_scale(
    settings: Settings,
    *,
    regions: Sequence[str] = (),
    usage: bool = False,
    window_s: float = 1.0,
    group: str | None = None,
) -> ScaleReport:
    """Read the desired sizes and the fleet, and put them side by side (reads only).

    Args:
        settings: where the fleet and the API are.
        regions: only these regions (empty: all).
        usage: also measure CPU, memory, latency, errors and volume use (``window_s`` long).
        window_s: seconds the CPU share is measured over.
        group: only this process group (``--group``).

    Raises:
        ConfigError: a bad file, a ``--region`` the fleet does not have, or a ``--group``
            fly.toml does not define.
    """
    spec = load_checked_spec(settings.root, app=settings.app, regions=regions)
    if group is not None and group not in spec.group_names:
        raise ConfigError(
            f"{group!r} is not a process group: fly.toml defines {', '.join(spec.group_names)}",
            where="--group",
        )
    async with connect(settings) as conn:
        try:
            machines = await conn.client.list_machines(conn.app)
            volumes = await conn.client.list_volumes(conn.app)
        except FlyNotFound:
            machines, volumes = [], []
        report = build_report(
            spec, fleet_from_api(conn.app, machines, volumes), regions=regions, backend=conn.backend
        )
        if group is not None and spec.groups:
            report = dataclasses.replace(
                report, regions=tuple(r for r in report.regions if r.group == group)
            )
        if not usage:
            return report
        waves = {code: wave for wave in spec_waves(spec) for code in wave.regions}
        thresholds = {code: (w.max_p95_ms, w.max_error_rate) for code, w in waves.items()}
        wanted = {r.code for r in report.regions}
        measured = await measure_usage(
            conn,
            [m for m in machines if m.region in wanted and m.state not in GONE_MACHINE_STATES],
            volumes,
            window_s=window_s,
            thresholds=thresholds,
        )
    return report.with_usage(measured)


async def scale(
    settings: Settings,
    request: ScaleRequest,
    *,
    bus: EventBus | None = None,
    options: ExecuteOptions | None = None,
    confirm: Confirm | None = None,
) -> ScaleResult | ScaleDryRun:
    """Check the request, then change and roll out its regions (or plan it, on a dry run).

    A change that `ScaleImpact.needs_confirmation` runs only when ``confirm`` returns true
    for it (``--yes``, or the operator's answer on a terminal).

    Raises:
        ConfigError: bad input; nothing was written and no API was called.
        DeployLocked: another deploy, rollback or scale of the app runs; nothing was written.
        OrchestratorError: the API or the local Fly could not be reached.
    """
    if not request.changes or not request.regions:
        raise ConfigError("nothing to change: give --region and a change", where="--region")
    check_scale(settings, request)
    # The app name and the other files are checked too, still before any network call.
    load_checked_spec(settings.root, app=settings.app, regions=request.regions)
    timeout = (options or ExecuteOptions()).api_timeout_s
    async with connect(settings, timeout=timeout) as conn:
        return await run_scale(conn, request, bus=bus, options=options, confirm=confirm)


async def preview_impact(settings: Settings, request: ScaleRequest) -> ScaleImpact:
    """Return what the request would do to machine counts and the bill now (reads only).

    ``invoke scale`` asks its question from this before the live view starts; the scale itself
    checks again under the lock.
    """
    edits = check_scale(settings, request)
    async with connect(settings) as conn:
        fleet = await observe_fleet(conn.client, conn.app)
    return scale_impact(fleet, edits, destroy_volumes=request.destroy_volumes)


async def run_scale(
    conn: Connection,
    request: ScaleRequest,
    *,
    bus: EventBus | None = None,
    options: ExecuteOptions | None = None,
    confirm: Confirm | None = None,
) -> ScaleResult | ScaleDryRun:
    """Scale the request's regions through an open connection (its `FlyClient` and probe).

    The flags should have been checked with :func:`check_scale` first; they are checked again
    here, under the lock, before the region files are written.
    """
    bus = bus or EventBus()
    settings = conn.settings
    regions = list(request.regions)
    if request.dry_run:
        edits = check_scale(settings, request)
        spec = load_checked_spec(settings.root, app=settings.app, regions=regions)
        spec = _with_regions(spec, settings, edits)
        fleet = await observe_fleet(conn.client, conn.app)
        secrets = await scale_secrets(conn.client, conn.app, settings.root)
        plan = build_plan(
            spec, fleet, regions=regions, destroy_volumes=request.destroy_volumes, secrets=secrets
        )
        return ScaleDryRun(edits, plan, _extends(spec, fleet, request, plan))

    spec = load_checked_spec(settings.root, app=settings.app, regions=regions)
    # Ask (or refuse without --yes) from reads alone, before the lock is taken: a change that
    # is not confirmed leaves no trace on Fly. Under the lock the fleet is read again.
    confirmed = _confirm(
        scale_impact(
            await observe_fleet(conn.client, conn.app),
            check_scale(settings, request),
            destroy_volumes=request.destroy_volumes,
        ),
        confirm,
    )
    with open_run(
        conn, spec, bus=bus, options=options, release=release_id(spec), command="scale"
    ) as (run, _):
        fleet = await observe_fleet(conn.client, conn.app)
        await refuse_split(conn, expected=spec.primary_region, command="scale")
        # The region files are written only once the fleet has reached them (below): a scale
        # that fails, is interrupted or is killed leaves them describing the fleet as it was,
        # so the next deploy never carries a half-done scale on.
        edits = check_scale(settings, request)
        spec = _with_regions(spec, settings, edits)
        secrets = await scale_secrets(conn.client, conn.app, settings.root)
        plan = build_plan(
            spec, fleet, regions=regions, destroy_volumes=request.destroy_volumes, secrets=secrets
        )
        impact = scale_impact(fleet, edits, destroy_volumes=request.destroy_volumes)
        if impact.needs_confirmation and not confirmed:
            # The fleet changed since it was read: what is asked now is what will run.
            _confirm(impact, confirm)
        for note in plan.notes:
            bus.emit(Note(note))
        extends = _extends(spec, fleet, request, plan)
        if plan.mutating_steps or extends:
            await ensure_app(conn)
        reports, error = await _extend_volumes(conn, plan, extends, bus)
        if error is not None:
            return ScaleResult(edits, _failed_before_plan(plan, reports, error))
        executor = run.executor(plan, command="scale")
        result = await executor.run()
        result = await gate_writable_primary(
            conn, result, expected=spec.primary_region, journal=run.journal, bus=bus
        )
        if result.ok:
            edits = tuple(_edit(settings.root, code, request, dry_run=False) for code in regions)
            for edit in edits:
                if edit.written:
                    changed = ", ".join(f"{c.key} {c.old} → {c.new}" for c in edit.changes)
                    bus.emit(Note(f"{edit.path}: {changed}", region=edit.region))
        else:
            files = ", ".join(e.path for e in edits if e.changes) or "the region files"
            bus.emit(Note(f"{files} left unchanged: the fleet did not reach the new size"))
    return ScaleResult(edits, _merge(result, reports))


def _confirm(impact: ScaleImpact, confirm: Confirm | None) -> bool:
    """Return whether ``impact`` was confirmed; refuse it when it needs and lacks confirmation.

    Raises:
        ConfigError: it needs confirmation and there is no way to ask, or the answer was no.
    """
    if not impact.needs_confirmation:
        return False
    if confirm is None:
        raise ConfigError(
            f"{impact.why()}; this needs confirmation: run it on a terminal or pass "
            "--yes (nothing was changed)",
            where="--yes",
        )
    if not confirm(impact):
        raise ConfigError("not confirmed; nothing was changed", where="--yes")
    return True


def _wave_of(plan: Plan, region: str) -> int:
    for i, wave in enumerate(plan.waves, start=1):
        if region in wave:
            return i
    return 1


async def _extend_volumes(
    conn: Connection, plan: Plan, extends: Sequence[VolumeExtend], bus: EventBus
) -> tuple[tuple[StepReport, ...], str | None]:
    """Grow each volume in turn; stop at the first failure and return it."""
    reports: list[StepReport] = []
    for x in extends:
        started = utcnow()
        try:
            answer = await conn.client.extend_volume(conn.app, x.volume_id, x.to_gb)
        except OrchestratorError as exc:
            error = f"{x.step_id}: {' '.join(str(exc).split())}"
            reports.append(_report(plan, x, started, "failed", error=error))
            bus.emit(Note(error, level="error", region=x.region))
            return tuple(reports), error
        detail = f"extended volume {x.volume_id} from {x.from_gb} GB to {answer.volume.size_gb} GB"
        if answer.needs_restart and x.machine_id:
            detail += f"; restart machine {x.machine_id} for it to see the new size"
        bus.emit(Note(detail, level="warning" if answer.needs_restart else "info", region=x.region))
        reports.append(_report(plan, x, started, "succeeded", detail=detail))
    return tuple(reports), None


def _report(
    plan: Plan,
    x: VolumeExtend,
    started: Any,
    outcome: Any,
    *,
    error: str | None = None,
    detail: str | None = None,
) -> StepReport:
    return StepReport(
        id=x.step_id,
        kind=VOLUME_EXTEND,
        region=x.region,
        wave=_wave_of(plan, x.region),
        started_at=iso(started),
        finished_at=iso(utcnow()),
        outcome=outcome,
        error=error,
        detail=detail,
        mutating=True,
    )


def _failed_before_plan(plan: Plan, reports: Sequence[StepReport], error: str) -> DeployResult:
    skipped = tuple(
        StepReport(
            id=s.id,
            kind=s.kind.value,
            region=s.region,
            wave=s.wave,
            started_at=None,
            finished_at=None,
            outcome="skipped",
            mutating=s.mutating,
        )
        for s in plan.steps()
    )
    steps = (*reports, *skipped)
    return DeployResult(
        release=plan.release,
        outcome="failed",
        mutating_steps=sum(1 for s in steps if s.mutating),
        steps=steps,
        error=error,
        app=plan.app,
        started_at=reports[0].started_at if reports else None,
        finished_at=reports[-1].finished_at if reports else None,
    )


def _merge(result: DeployResult, reports: Sequence[StepReport]) -> DeployResult:
    """Put the extend steps in front of the run's steps and recount."""
    if not reports:
        return result
    outcome = result.outcome
    if outcome == "noop":
        outcome = "succeeded"
    return dataclasses.replace(
        result,
        outcome=outcome,
        mutating_steps=result.mutating_steps + len(reports),
        steps=(*reports, *result.steps),
        started_at=reports[0].started_at,
    )
