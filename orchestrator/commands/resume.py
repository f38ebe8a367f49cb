"""Resume what a killed or failed deploy or rollback was doing (``invoke deploy --resume``).

- `resumable` picks the run: the app's newest ``deploy`` or ``rollback`` that neither
  succeeded, nor changed nothing, nor was rolled back (runs of other commands are passed over).
- `finish_rollback` finishes a rollback that was begun (a killed or failed rollback run of a
  deploy), or that was due (a deploy with a failed step in a wave whose ``on_failure`` rolls
  back); ``None`` when the run owes no rollback, and the deploy is re-planned instead.
- the planner's `orchestrator.plan.resume.with_health_gates` turns the re-planned deploy into
  what a resumed run executes, from what `unbaked_regions` and `chain_volumes` read here.
- `resume_options` waits out the leases the killed run left behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from orchestrator.errors import ConfigError, ErrorKind
from orchestrator.execute.autorollback import (
    chain_rows,
    changed_regions,
    roll_back,
    rollback_regions,
)
from orchestrator.execute.context import ExecuteOptions
from orchestrator.execute.events import Note, utcnow
from orchestrator.execute.journal import Journal, RunRecord, iso
from orchestrator.execute.results import DeployResult
from orchestrator.execute.run import RunContext
from orchestrator.plan.assemble import plan_waves
from orchestrator.plan.steps import Step, StepKind
from orchestrator.settings import Settings

__all__ = [
    "chain_volumes",
    "finish_rollback",
    "owes_rollback",
    "resumable",
    "resume_options",
    "unbaked_regions",
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
    how: RunContext, journal: Journal, resumed: RunRecord
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
    report = await roll_back(
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
