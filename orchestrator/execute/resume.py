"""Resume what a killed or failed deploy or rollback was doing (``invoke deploy --resume``).

- `resumable` picks the run: the app's newest ``deploy`` or ``rollback`` that neither
  succeeded, nor changed nothing, nor was rolled back (runs of other commands are passed over).
- `finish_rollback` finishes a rollback that was begun (a killed or failed rollback run of a
  deploy), or that was due (a deploy with a failed step in a wave whose ``on_failure`` rolls
  back); ``None`` when the run owes no rollback, and the deploy is re-planned instead.
- `with_health_gates` turns the re-planned deploy into what a resumed run executes: a
  ``gate.health`` for every region it covers, a ``gate.metrics`` for the regions the killed
  runs changed without baking, a ``volume.replicate`` after a replica create on a volume the
  killed runs made, and wave barriers between all of them.
- `resume_options` waits out the leases the killed run left behind.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Any

import networkx as nx

from orchestrator.errors import ConfigError, ErrorKind
from orchestrator.execute.context import ExecuteOptions
from orchestrator.execute.events import Note, utcnow
from orchestrator.execute.journal import Journal, RunRecord, iso
from orchestrator.execute.results import DeployResult
from orchestrator.execute.undo import (
    RestoreSettings,
    chain_rows,
    changed_regions,
    restore,
    rollback_regions,
)
from orchestrator.plan.assemble import plan_waves
from orchestrator.plan.groups import gate_slots
from orchestrator.plan.model import Plan
from orchestrator.plan.steps import Step, StepKind, step_id
from orchestrator.settings import Settings
from orchestrator.spec.model import DeploySpec

__all__ = [
    "chain_volumes",
    "finish_rollback",
    "owes_rollback",
    "resumable",
    "resume_options",
    "unbaked_regions",
    "with_health_gates",
]


def resume_options(options: ExecuteOptions | None) -> ExecuteOptions:
    """Return the options of a resumed run: wait out the leases the killed run left behind."""
    base = options or ExecuteOptions()
    return replace(base, lease_wait_s=max(base.lease_wait_s, base.lease_ttl_s + 2.0))


def _failed_steps(journal: Journal, run: int) -> list[Step]:
    """Return the steps of ``run`` that failed because the release was unhealthy.

    The executor marks them (``result.unhealthy``) before their end; a step that failed on an
    API or infrastructure error owes no rollback.
    """
    return [
        Step(id=r.step_id, kind=StepKind(r.kind), region=r.region, wave=r.wave, slot=r.slot)
        for r in journal.steps(run)
        if r.outcome == "failed" and (r.result or {}).get("unhealthy")
    ]


async def finish_rollback(
    how: RestoreSettings, journal: Journal, resumed: RunRecord
) -> DeployResult | None:
    """Finish the rollback ``resumed`` was doing, or was due to do; ``None`` if there is none.

    A rollback run names the deploy it undoes (``rollback_of``) and the regions. A deploy run
    with a failed step owes a rollback when the failed wave's ``on_failure`` is not ``halt``
    (it was killed before the rollback began, or the rollback could not be planned).
    """
    started = utcnow()
    if resumed.command == "rollback" and resumed.rollback_of is not None:
        deploy_run = journal.run(resumed.rollback_of)
        if deploy_run is None:
            return None
        regions = resumed.regions
        policy = "resume"
        reason = deploy_run.error or _first_error(journal, deploy_run.run) or "a step failed"
        resumed_from: int | None = resumed.run
    elif resumed.command == "deploy":
        failed = _failed_steps(journal, resumed.run)
        if not failed:
            return None
        waves = plan_waves(how.wave_specs, resumed.regions or _all(how.wave_specs))
        wave = waves[failed[0].wave - 1] if 0 < failed[0].wave <= len(waves) else None
        if wave is None or wave.on_failure == "halt":
            return None
        deploy_run = resumed
        policy = wave.on_failure
        changed = changed_regions(chain_rows(journal, resumed.run))
        regions = rollback_regions(policy, failed, [w.regions for w in waves], changed)
        reason = _first_error(journal, resumed.run) or "a step failed"
        resumed_from = None
    else:
        return None
    how.bus.emit(
        Note(
            f"run {deploy_run.run} ({deploy_run.release}) failed and is being rolled back in "
            f"{', '.join(regions)}: finishing the rollback",
            level="warning",
        )
    )
    report = await restore(
        how,
        deploy_run=deploy_run.run,
        regions=regions,
        failed_release=deploy_run.release,
        policy=policy,
        reason=reason,
        resumed_from=resumed_from,
    )
    return DeployResult(
        release=deploy_run.release,
        outcome="rolled_back" if report.ok else "failed",
        mutating_steps=sum(1 for s in report.steps if s.mutating),
        steps=report.steps,
        error=reason,
        run=report.run,
        app=how.app,
        started_at=iso(started),
        finished_at=iso(utcnow()),
        rollback=report,
        error_kind=ErrorKind.RELEASE,
    )


def owes_rollback(settings: Settings, run: RunRecord) -> bool:
    """Tell whether resuming ``run`` rolls back (a rollback run, or a deploy with a failed step).

    A deploy whose failed wave halts is re-planned instead; this errs on the side of "rolls
    back" for it, which only matters to ``--dry-run``.
    """
    if run.command == "rollback":
        return True
    with Journal.open(settings.root) as journal:
        return bool(_failed_steps(journal, run.run))


def _all(waves: Sequence[Any]) -> list[str]:
    return [r for w in waves for r in w.regions]


def _first_error(journal: Journal, run: int) -> str | None:
    failed = [r for r in journal.steps(run) if r.outcome == "failed" and r.error]
    unhealthy = [r for r in failed if (r.result or {}).get("unhealthy")]
    return next((r.error for r in (*unhealthy, *failed)), None)


def chain_volumes(journal: Journal, run: int) -> set[str]:
    """Return the volumes the ``volume.ensure`` steps of the chain of ``run`` settled on."""
    return {
        str(s.result["volume_id"])
        for record in journal.chain(run)
        for s in journal.steps(record.run)
        if s.kind == StepKind.VOLUME_ENSURE.value and s.result and s.result.get("volume_id")
    }


def unbaked_regions(journal: Journal, run: int) -> set[str]:
    """Return regions the chain of ``run`` changed whose metrics gate never passed in it."""
    chain = journal.chain(run)
    changed = changed_regions(chain_rows(journal, run))
    baked = {
        s.region
        for record in chain
        for s in journal.steps(record.run)
        if s.kind == StepKind.GATE_METRICS.value and s.outcome == "succeeded"
    }
    return changed - baked


def resumable(settings: Settings) -> RunRecord:
    """Return the run ``--resume`` converges: the newest deploy or rollback that did not end well.

    A run that succeeded, changed nothing, or was rolled back leaves nothing to resume. Runs of
    other commands (scale, drill) are passed over.
    """
    app = settings.app or ""
    with Journal.open(settings.root) as journal:
        for run in journal.runs(app):
            if run.command not in ("deploy", "rollback"):
                continue
            if run.outcome in ("succeeded", "noop", "rolled_back"):
                break
            return run
    raise ConfigError(
        f"no interrupted or failed deploy or rollback of {app!r} in the journal; nothing to resume",
        where="--resume",
    )


def with_health_gates(
    plan: Plan,
    spec: DeploySpec,
    *,
    rebake: Collection[str] = (),
    reseeded: Collection[str] = (),
) -> Plan:
    """Return ``plan`` as a resumed run runs it: every planned region gated, waves barred.

    The planner gates only regions it changes. After a crash the killed run may have changed a
    region completely without ever checking it, so a resumed run verifies every region it
    covers: an added ``gate.health`` waits for the region's own steps, if it has any, and a
    ``gate.metrics`` follows it for the regions in ``rebake`` (changed by the killed run, never
    baked) when their wave bakes. Then every first step of a region waits for every gate of
    the previous wave, as in a fresh plan, so wave 2 never starts before wave 1 is verified.

    A replica volume the killed run forked is found unattached and simply reused by the
    planner, which verifies no data on a reused volume; for the volumes in ``reseeded`` (made
    by the killed run) a ``volume.replicate`` follows their machine's create, as it would have
    in the killed run.
    """
    graph = plan.graph.copy()
    _verify_reseeded(graph, plan, spec.primary_region, reseeded)
    have = {(s.region, s.kind) for s in plan.steps()}
    for index, wave in enumerate(plan.waves, start=1):
        settings = plan.wave_specs[index - 1] if index <= len(plan.wave_specs) else None
        for region in wave:
            slots = gate_slots(spec, region)
            if not slots:
                continue
            own = [sid for sid in graph.nodes if graph.nodes[sid]["step"].region == region]
            health = step_id(region, StepKind.GATE_HEALTH)
            if (region, StepKind.GATE_HEALTH) not in have:
                gate = Step(
                    id=health,
                    kind=StepKind.GATE_HEALTH,
                    region=region,
                    wave=index,
                    params={"slots": slots, "release": plan.release},
                )
                graph.add_node(gate.id, step=gate)
                graph.add_edges_from((sid, gate.id) for sid in own)
            bakes = settings is not None and settings.bake_s > 0
            if region in rebake and bakes and (region, StepKind.GATE_METRICS) not in have:
                assert settings is not None
                metrics = Step(
                    id=step_id(region, StepKind.GATE_METRICS),
                    kind=StepKind.GATE_METRICS,
                    region=region,
                    wave=index,
                    params={
                        "bake_s": settings.bake_s,
                        "max_error_rate": settings.max_error_rate,
                        "max_p95_ms": settings.max_p95_ms,
                        # The wave's PromQL checks, as the killed run's plan had them.
                        **(
                            {"queries": [q.to_params() for q in settings.queries]}
                            if settings.queries
                            else {}
                        ),
                    },
                )
                graph.add_node(metrics.id, step=metrics)
                graph.add_edge(health, metrics.id)
    _bar_waves(graph, plan.waves)
    if not nx.is_directed_acyclic_graph(graph):  # pragma: no cover - edges go forward in waves
        raise AssertionError("adding gates made a cycle")
    return Plan(
        app=plan.app,
        release=plan.release,
        waves=plan.waves,
        graph=graph,
        notes=plan.notes,
        wave_specs=plan.wave_specs,
        purpose=plan.purpose,
    )


def _verify_reseeded(graph: Any, plan: Plan, primary: str, reseeded: Collection[str]) -> None:
    """Add ``volume.replicate`` after each replica create on a volume in ``reseeded``."""
    wanted = set(reseeded)
    for step in plan.steps():
        if step.kind is not StepKind.MACHINE_CREATE or step.region == primary or not step.slot:
            continue
        ensure = step.params.get("volume_from")
        if not isinstance(ensure, str) or ensure not in graph:
            continue
        if graph.nodes[ensure]["step"].params.get("reuse") not in wanted:
            continue
        check = Step(
            id=step_id(step.region, StepKind.VOLUME_REPLICATE, step.slot),
            kind=StepKind.VOLUME_REPLICATE,
            region=step.region,
            wave=step.wave,
            slot=step.slot,
            params={"primary_region": primary, "volume_from": ensure},
        )
        if check.id in graph:
            continue
        graph.add_node(check.id, step=check)
        graph.add_edge(step.id, check.id)
        health = step_id(step.region, StepKind.GATE_HEALTH)
        if health in graph:
            graph.add_edge(check.id, health)


def _bar_waves(graph: Any, waves: Sequence[Sequence[str]]) -> None:
    """Make every first step of a region wait for every gate of the nearest earlier gated wave."""
    steps = {sid: graph.nodes[sid]["step"] for sid in graph.nodes}
    previous: list[str] = []
    for wave in waves:
        members = set(wave)
        own = [sid for sid, s in steps.items() if s.region in members]
        if previous:
            for sid in own:
                region = steps[sid].region
                if not any(steps[p].region == region for p in graph.predecessors(sid)):
                    graph.add_edges_from((gate, sid) for gate in previous)
        gates = [
            sid for sid in own if steps[sid].kind in (StepKind.GATE_HEALTH, StepKind.GATE_METRICS)
        ]
        if gates:
            previous = gates
