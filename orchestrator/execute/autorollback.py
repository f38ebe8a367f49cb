"""Automatic rollback: put the machines of a failed deploy back from the journal.

`automatic_rollback` is the executor's rollback action for a wave's ``on_failure``;
`roll_back` plans and runs it; `commands.resume` finishes one a killed run began. What it
puts back, and where: docs/rollouts.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.execute.events import Note
from orchestrator.execute.executor import (
    Failure,
    Restoring,
    RollbackAction,
    RollbackReport,
)
from orchestrator.execute.journal import Journal, MachineConfigRecord
from orchestrator.execute.run import RunContext
from orchestrator.plan.config import META_LAUNCH_ID, META_RELEASE
from orchestrator.plan.fleet import Fleet, observe_fleet
from orchestrator.plan.rollback import build_rollback_plan
from orchestrator.plan.steps import Step

__all__ = [
    "NO_RELEASE",
    "Undo",
    "automatic_rollback",
    "changed_regions",
    "config_release",
    "roll_back",
    "rollback_regions",
    "undo_targets",
]

# The release a rollback "puts back" when the deploy only added machines (a first deploy).
NO_RELEASE = "none"


def config_release(config: Mapping[str, Any] | None) -> str | None:
    """Return the ``fly_release_id`` a machine config carries in its metadata, or ``None``."""
    meta = config.get("metadata") if isinstance(config, Mapping) else None
    value = meta.get(META_RELEASE) if isinstance(meta, Mapping) else None
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True, slots=True)
class Undo:
    """What undoing a deploy means for some regions.

    Attributes:
        targets: machine id → the full config it had before the deploy touched it.
        regions: machine id → region, for the targets (a destroyed machine is not observed).
        destroy: machines the deploy created, to destroy (volumes kept).
        release: the release the targets carry (the most common one), or ``None`` when the
            deploy only created machines.
    """

    targets: Mapping[str, Mapping[str, Any]]
    regions: Mapping[str, str]
    destroy: frozenset[str]
    release: str | None

    @property
    def empty(self) -> bool:
        """Tell whether there is nothing to undo."""
        return not self.targets and not self.destroy


def undo_targets(
    rows: Iterable[MachineConfigRecord], fleet: Fleet, regions: Collection[str]
) -> Undo:
    """Return how to undo the journal ``rows`` of a deploy in ``regions`` (pure).

    The oldest row of a machine wins: it holds the config from before the first run of the
    deploy changed it (a resumed run may journal the same machine again).
    """
    wanted = set(regions)
    targets: dict[str, Mapping[str, Any]] = {}
    where: dict[str, str] = {}
    created: set[str] = set()
    launches: set[str] = set()
    for row in sorted(rows, key=lambda r: r.id):
        if row.region not in wanted:
            continue
        if row.launch_id is not None:
            launches.add(row.launch_id)
            if row.machine_id:
                created.add(row.machine_id)
            continue
        if row.machine_id is None or row.config_before is None:
            continue
        if row.machine_id not in targets:
            targets[row.machine_id] = row.config_before
            where[row.machine_id] = row.region
    # A create whose answer was lost (a crash, a dropped connection) is found by its launch id.
    for m in fleet.machines:
        if m.region in wanted and m.metadata.get(META_LAUNCH_ID) in launches:
            created.add(m.id)
    for machine_id in created:
        targets.pop(machine_id, None)
        where.pop(machine_id, None)
    releases = Counter(r for r in (config_release(c) for c in targets.values()) if r)
    release = min(releases, key=lambda r: (-releases[r], r)) if releases else None
    live_created = frozenset(m for m in created if fleet.machine(m) is not None)
    return Undo(targets=targets, regions=where, destroy=live_created, release=release)


def changed_regions(rows: Iterable[MachineConfigRecord]) -> set[str]:
    """Return the regions where the journal ``rows`` changed (or began to change) a machine."""
    return {r.region for r in rows}


def rollback_regions(
    policy: str,
    failed: Sequence[Step],
    waves: Sequence[Sequence[str]],
    changed: Collection[str],
) -> tuple[str, ...]:
    """Return the regions a policy rolls back, in rollout order.

    Args:
        policy: ``rollback_region``, ``rollback_wave`` or ``rollback_all``.
        failed: the failed steps.
        waves: the plan's waves.
        changed: regions the deploy changed (``rollback_all`` takes them all).
    """
    failed_regions = {s.region for s in failed}
    if policy == "rollback_region":
        chosen = failed_regions
    elif policy == "rollback_wave":
        chosen = {r for s in failed if 0 < s.wave <= len(waves) for r in waves[s.wave - 1]}
        chosen |= failed_regions
    else:
        chosen = set(changed) | failed_regions
    order = [r for wave in waves for r in wave]
    return tuple(r for r in order if r in chosen) + tuple(sorted(chosen - set(order)))


def chain_rows(journal: Journal, run: int) -> list[MachineConfigRecord]:
    """Return the machine rows of ``run`` and of every run it resumed, oldest first."""
    rows = [row for record in journal.chain(run) for row in journal.machine_configs(record.run)]
    return sorted(rows, key=lambda r: r.id)


async def roll_back(
    how: RunContext,
    *,
    deploy_run: int,
    regions: Sequence[str],
    failed_release: str,
    policy: str,
    reason: str,
    resumed_from: int | None = None,
) -> RollbackReport:
    """Undo ``deploy_run`` (and the runs it resumed) in ``regions``; report how it went.

    Raises:
        DeployError: the restore cannot be planned (a gone machine whose region or slot is
            unknown).
        OrchestratorError: the journal cannot be written, or the API cannot be reached to
            observe the fleet.
    """
    fleet = await observe_fleet(how.client, how.app)
    undo = undo_targets(chain_rows(how.journal, deploy_run), fleet, regions)
    plan = build_rollback_plan(
        fleet,
        undo.targets,
        release=undo.release or NO_RELEASE,
        spec_waves=how.wave_specs,
        regions=undo.regions,
        destroy=undo.destroy,
    )
    for note in plan.notes:
        how.bus.emit(Note(f"rollback: {note}"))
    images = {str(c.get("image")) for c in undo.targets.values() if c.get("image")}
    executor = how.executor(
        plan,
        command="rollback",
        image=images.pop() if len(images) == 1 else how.image,
        resumed_from=resumed_from,
        restoring=Restoring(
            failed_release=failed_release,
            policy=policy,
            regions=tuple(regions),
            reason=reason,
            rollback_of=deploy_run,
        ),
        fleet=fleet,
    )
    result = await executor.run()
    return RollbackReport(
        policy=policy,
        regions=tuple(regions),
        release=undo.release,
        reason=reason,
        run=result.run,
        outcome=result.outcome,
        error=result.error,
        steps=result.steps,
    )


def automatic_rollback(how: RunContext) -> RollbackAction:
    """Return the executor's rollback hook: undo the failed deploy where its policy says."""

    async def hook(failure: Failure) -> RollbackReport:
        rows = chain_rows(how.journal, failure.run)
        regions = rollback_regions(
            failure.policy, [s for s, _ in failure.failed], failure.waves, changed_regions(rows)
        )
        return await roll_back(
            how,
            deploy_run=failure.run,
            regions=regions,
            failed_release=failure.release,
            policy=failure.policy,
            reason=failure.failed[0][1],
        )

    return hook
