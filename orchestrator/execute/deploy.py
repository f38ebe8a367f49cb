"""Run ``invoke deploy`` end to end: validate, connect, lock, observe, plan, execute.

The order is deliberate. Everything that can be wrong with the input (the TOML files, a region
flag, the image) is checked before the first API call, so bad input never reaches Fly. The
lock is taken before the fleet is observed, so the plan is made from a fleet nobody else is
changing. The app is created on the local Fly only when the plan has something to change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import networkx as nx

from orchestrator.connect import Connection, connect, ensure_app
from orchestrator.errors import ConfigError, FlyNotFound
from orchestrator.execute.context import ExecuteOptions
from orchestrator.execute.events import EventBus, Note
from orchestrator.execute.executor import DeployResult, Executor
from orchestrator.execute.journal import Journal, RunRecord
from orchestrator.execute.lock import DeployLock
from orchestrator.plan.config import release_id
from orchestrator.plan.fleet import Fleet, observe
from orchestrator.plan.graph import build_plan
from orchestrator.plan.model import Plan
from orchestrator.plan.steps import Step, StepKind, step_id
from orchestrator.settings import Settings
from orchestrator.spec.load import load_spec
from orchestrator.spec.model import DeploySpec

__all__ = [
    "DeployRequest",
    "DryRun",
    "deploy",
    "load_checked_spec",
    "observe_fleet",
    "plan",
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
    """

    regions: tuple[str, ...] = ()
    image: str | None = None
    dry_run: bool = False
    resume: bool = False


@dataclass(frozen=True, slots=True)
class DryRun:
    """The answer of a ``--dry-run``: the plan that would have run."""

    plan: Plan


def load_checked_spec(
    settings: Settings, *, regions: Sequence[str] = (), image: str | None = None
) -> DeploySpec:
    """Load the spec and check the flags against it, before any network call.

    Raises:
        ConfigError: a bad file or key, an unknown ``--region``, an empty ``--image``.
    """
    if image is not None and not image.strip():
        raise ConfigError("the image reference is empty", where="--image")
    spec = load_spec(settings.root, app_override=settings.app, image_override=image)
    unknown = [r for r in regions if r not in spec.regions]
    if unknown:
        known = ", ".join(sorted(spec.regions)) or "none"
        raise ConfigError(
            f"unknown region {unknown[0]!r}; the fleet has {known} (regions/*.toml)",
            where="--region",
        )
    return spec


async def observe_fleet(conn: Connection) -> Fleet:
    """Observe the app's machines and volumes; an app that does not exist yet has none."""
    try:
        return await observe(conn.client, conn.app)
    except FlyNotFound:
        return Fleet(app=conn.app)


async def plan(
    settings: Settings, *, regions: Sequence[str] = (), image: str | None = None
) -> Plan:
    """Return the plan a deploy would run now (reads only)."""
    spec = load_checked_spec(settings, regions=regions, image=image)
    async with connect(settings) as conn:
        fleet = await observe_fleet(conn)
    return build_plan(spec, fleet, regions=list(regions) or None, image=image)


async def deploy(
    settings: Settings,
    request: DeployRequest,
    *,
    bus: EventBus | None = None,
    options: ExecuteOptions | None = None,
) -> DeployResult | DryRun:
    """Deploy as asked and return how it went.

    Raises:
        ConfigError: bad input (nothing was changed).
        DeployLocked: another deploy of the app is running (the message names it).
        OrchestratorError: the API or the local Fly could not be reached.
    """
    bus = bus or EventBus()
    regions: Sequence[str] = request.regions
    image = request.image
    resumed: RunRecord | None = None
    if request.resume:
        resumed = _resumable(settings)
        image = image or resumed.image
        regions = regions or resumed.regions
        bus.emit(
            Note(
                f"resuming run {resumed.run} ({resumed.command} of {resumed.release}, "
                f"{resumed.outcome or 'interrupted'}) in {', '.join(regions) or 'all regions'}"
            )
        )
    spec = load_checked_spec(settings, regions=regions, image=image)
    async with connect(settings) as conn:
        if request.dry_run:
            fleet = await observe_fleet(conn)
            return DryRun(build_plan(spec, fleet, regions=list(regions) or None, image=image))
        with (
            Journal.open(settings.root) as journal,
            DeployLock(settings.root, conn.app, release=release_id(spec), command="deploy") as lock,
        ):
            if lock.stale is not None:
                bus.emit(
                    Note(
                        f"took over a stale lock: {lock.stale.describe()} (no longer running)",
                        level="warning",
                    )
                )
            fleet = await observe_fleet(conn)
            the_plan = build_plan(spec, fleet, regions=list(regions) or None, image=image)
            if resumed is not None:
                the_plan = with_health_gates(the_plan, spec)
                options = replace(
                    options or ExecuteOptions(),
                    # The killed run's leases lapse within their TTL; wait them out.
                    lease_wait_s=(options or ExecuteOptions()).lease_ttl_s + 2.0,
                )
            for note in the_plan.notes:
                bus.emit(Note(note))
            if the_plan.mutating_steps:
                await ensure_app(conn)
            executor = Executor(
                conn.client,
                the_plan,
                journal=journal,
                probe=conn.probe,
                bus=bus,
                image=spec.image,
                spec_digest=spec.digest,
                max_unavailable={code: r.max_unavailable for code, r in spec.regions.items()},
                options=options,
                command="deploy",
                resumed_from=resumed.run if resumed else None,
            )
            return await executor.run()


def _resumable(settings: Settings) -> RunRecord:
    """Return the run ``--resume`` converges: the app's newest deploy that did not succeed."""
    app = settings.app or ""
    with Journal.open(settings.root) as journal:
        for run in journal.runs(app):
            if run.command != "deploy":
                continue
            if run.outcome in ("succeeded", "noop"):
                break
            return run
    raise ConfigError(
        f"no interrupted or failed deploy of {app!r} in the journal; nothing to resume",
        where="--resume",
    )


def with_health_gates(plan: Plan, spec: DeploySpec) -> Plan:
    """Return ``plan`` with a ``gate.health`` for every planned region that has none.

    The planner gates only regions it changes. After a crash the killed run may have changed a
    region completely without ever checking it, so a resumed run verifies every region it
    covers: the added gate waits for the region's own steps, if it has any.
    """
    graph = plan.graph.copy()
    gated = {s.region for s in plan.steps() if s.kind is StepKind.GATE_HEALTH}
    for index, wave in enumerate(plan.waves, start=1):
        for region in wave:
            count = spec.regions[region].count if region in spec.regions else 0
            if region in gated or count == 0:
                continue
            gate = Step(
                id=step_id(region, StepKind.GATE_HEALTH),
                kind=StepKind.GATE_HEALTH,
                region=region,
                wave=index,
                params={"slots": list(range(1, count + 1)), "release": plan.release},
            )
            own = [sid for sid in graph.nodes if graph.nodes[sid]["step"].region == region]
            graph.add_node(gate.id, step=gate)
            graph.add_edges_from((sid, gate.id) for sid in own)
    if not nx.is_directed_acyclic_graph(graph):  # pragma: no cover - only edges into new nodes
        raise AssertionError("adding health gates made a cycle")
    return Plan(
        app=plan.app,
        release=plan.release,
        waves=plan.waves,
        graph=graph,
        notes=plan.notes,
        wave_specs=plan.wave_specs,
        purpose=plan.purpose,
    )
