"""``invoke rollback``: put the previous (or a named) release back, from Fly's history.

Which release, and what a rollback changes (configs, never machine counts): docs/rollouts.md.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from orchestrator.connect import Connection, connect
from orchestrator.errors import ConfigError
from orchestrator.execute.autorollback import config_release
from orchestrator.execute.context import ExecuteOptions
from orchestrator.execute.events import EventBus, Note
from orchestrator.execute.executor import DeployResult
from orchestrator.execute.history import META_PREV_RELEASE, fly_history, previous_from_fly
from orchestrator.execute.journal import Journal, MachineConfigRecord, RunRecord
from orchestrator.execute.ledger import Ledger, read_ledger
from orchestrator.execute.primaries import gate_writable_primary, refuse_split
from orchestrator.execute.restoredata import choose_points, restore_data
from orchestrator.execute.run import RunContext, open_run
from orchestrator.fleetconfig.load import load_checked_spec
from orchestrator.fleetconfig.model import DeploySpec
from orchestrator.notify import Notifier, read_notify
from orchestrator.plan.config import META_LAUNCH_ID, META_SLOT
from orchestrator.plan.fleet import Fleet, observe_fleet
from orchestrator.plan.graph import spec_waves
from orchestrator.plan.rollback import build_rollback_plan
from orchestrator.settings import Settings

__all__ = [
    "RollbackRequest",
    "known_releases",
    "previous_release",
    "release_targets",
    "resolve_release",
    "rollback",
]


@dataclass(frozen=True, slots=True)
class RollbackRequest:
    """What the operator asked to roll back.

    Attributes:
        regions: regions to roll back (empty: every region of the spec).
        to: the release to put back (``None``: the previous one).
        restore_data: also put the machines with restore points back on volumes restored
            from them (`orchestrator.execute.restoredata`), first.
    """

    regions: tuple[str, ...] = ()
    to: str | None = None
    restore_data: bool = False


def _slot(config: Mapping[str, Any]) -> int | None:
    meta = config.get("metadata")
    value = meta.get(META_SLOT) if isinstance(meta, Mapping) else None
    return int(value) if isinstance(value, str) and value.isdigit() else None


def known_releases(history: Sequence[MachineConfigRecord]) -> list[str]:
    """Return every release a journaled machine config carries, newest first."""
    seen: list[str] = []
    for row in sorted(history, key=lambda r: r.id, reverse=True):
        for config in (row.config_after, row.config_before):
            release = config_release(config)
            if release and release not in seen:
                seen.append(release)
    return seen


def resolve_release(history: Sequence[MachineConfigRecord], wanted: str) -> str:
    """Return the journaled release ``wanted`` names (its full id, or its tag if unambiguous).

    Raises:
        ConfigError: no journaled release matches, or the tag matches several (names ``--to``).
    """
    known = known_releases(history)
    if wanted in known:
        return wanted
    matches = [r for r in known if r.rsplit("-", 1)[0] == wanted]
    if len(matches) == 1:
        return matches[0]
    listed = ", ".join(known[:8]) or "none"
    if matches:
        raise ConfigError(
            f"{wanted!r} matches several releases ({', '.join(matches)}); give the full id",
            where="--to",
        )
    raise ConfigError(
        f"no release {wanted!r} on Fly or in the journal; known: {listed}", where="--to"
    )


def previous_release(
    history: Sequence[MachineConfigRecord],
    runs: Mapping[int, RunRecord],
    fleet: Fleet,
    regions: Collection[str],
) -> str:
    """Return the release the machines of ``regions`` ran before their current one.

    Only rows of the runs that put the current release on the machines count: its deploys
    and manual rollbacks to it (an automatic rollback's rows hold the failed release).

    Raises:
        ConfigError: the regions run several releases, or the journal has nothing earlier
            (names ``--to``).
    """
    current = {m.release or "unknown" for r in regions for m in fleet.managed_in(r).values()}
    if not current:
        raise ConfigError(f"no machines in {', '.join(regions)} to roll back", where="--region")
    if len(current) > 1:
        raise ConfigError(
            f"the machines run several releases ({', '.join(sorted(current))}); name the one "
            "to put back",
            where="--to",
        )
    (now,) = current
    for row in sorted(history, key=lambda r: r.id, reverse=True):
        run = runs.get(row.run)
        if row.region not in regions or run is None or run.release != now:
            continue
        if run.command != "deploy" and (run.command != "rollback" or run.rollback_of is not None):
            continue
        before = config_release(row.config_before)
        if before and before != now:
            return before
    raise ConfigError(
        f"neither Fly nor the journal names a release before {now} in {', '.join(regions)}; "
        "name one",
        where="--to",
    )


def release_targets(
    history: Sequence[MachineConfigRecord],
    fleet: Fleet,
    regions: Collection[str],
    release: str,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Return machine id → the newest journaled config of ``release``, and notes (pure).

    A machine is matched by id, else by its region and slot (a machine replaced since). The
    config keeps the machine's own launch id, so it never claims another machine's create.
    """
    by_id: dict[str, Mapping[str, Any]] = {}
    by_slot: dict[tuple[str, int], Mapping[str, Any]] = {}
    for row in sorted(history, key=lambda r: r.id):
        for config in (row.config_before, row.config_after):
            if config is None or config_release(config) != release:
                continue
            if row.machine_id:
                by_id[row.machine_id] = config
            slot = _slot(config)
            if slot is not None:
                by_slot[(row.region, slot)] = config
    targets: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for region in sorted(regions):
        for slot, m in sorted(fleet.managed_in(region).items()):
            found = by_id.get(m.id) or by_slot.get((region, slot))
            if found is None:
                notes.append(
                    f"{region}: machine {m.id} (slot {slot}) has no journaled config of "
                    f"{release}; left as it is"
                )
                continue
            config = copy.deepcopy(dict(found))
            meta = dict(config.get("metadata") or {})
            launch = m.metadata.get(META_LAUNCH_ID)
            if launch:
                meta[META_LAUNCH_ID] = launch
            else:
                meta.pop(META_LAUNCH_ID, None)
            config["metadata"] = meta
            targets[m.id] = config
    return targets, notes


async def rollback(
    settings: Settings,
    request: RollbackRequest,
    *,
    bus: EventBus | None = None,
    options: ExecuteOptions | None = None,
    resumed_from: int | None = None,
) -> DeployResult:
    """Put the previous (or the named) release back on the fleet; return how it went.

    Args:
        resumed_from: the killed rollback run this one finishes (``invoke deploy --resume``).

    Raises:
        ConfigError: an unknown region, a release the journal does not know, or no previous
            release to go back to (nothing was changed).
        DeployLocked: another deploy, rollback or scale of the app runs.
        OrchestratorError: the API or the local Fly could not be reached.
    """
    bus = bus or EventBus()
    spec = load_checked_spec(settings.root, app=settings.app, regions=request.regions)
    read_notify(settings.root)  # a bad [notify] is bad input, found before any call
    waves = spec_waves(spec)
    order = [r for w in waves for r in w.regions]
    regions = [r for r in order if not request.regions or r in request.regions]
    async with connect(settings, timeout=(options or ExecuteOptions()).api_timeout_s) as conn:
        if request.to is not None:
            # An unknown release is bad input: found by reads alone, before the lock is taken.
            seen = await observe_fleet(conn.client, conn.app)
            with Journal.open(settings.root) as journal:
                known = [
                    *await fly_history(conn.client, conn.app, seen, regions),
                    *journal.machine_history(conn.app),
                ]
            resolve_release(known, request.to)
        with open_run(
            conn, spec, bus=bus, options=options, release=request.to or "", command="rollback"
        ) as (run, lock):
            journal = run.journal
            await refuse_split(conn, expected=spec.primary_region, command="rollback")
            bus.subscribe(Ledger(lock, settings, "rollback"))
            fleet = await observe_fleet(conn.client, conn.app)
            # What Fly kept (each machine's versions) first, then this directory's journal:
            # a fresh checkout rolls back as well as the one that deployed.
            history = [
                *await fly_history(conn.client, conn.app, fleet, regions),
                *journal.machine_history(conn.app),
            ]
            if request.to is not None:
                release = resolve_release(history, request.to)
            else:
                runs = {r.run: r for r in journal.runs(conn.app)}
                release = previous_from_fly(fleet, regions) or previous_release(
                    history, runs, fleet, regions
                )
            targets, notes = release_targets(history, fleet, regions, release)
            for machine_id, config in targets.items():
                # Name the release this rollback takes off, so the next `invoke rollback`
                # goes forward to it again.
                current = fleet.machine(machine_id)
                if current is not None and current.release and current.release != release:
                    config.setdefault("metadata", {})[META_PREV_RELEASE] = current.release
            restored: DeployResult | None = None
            if request.restore_data:
                restored, targets = await _restore_data_first(
                    conn, run, spec, fleet, targets, history, regions, release
                )
                if not restored.ok:
                    return restored
            plan = build_rollback_plan(fleet, targets, release=release, spec_waves=waves)
            for note in (*notes, *plan.notes):
                bus.emit(Note(note))
            images = {str(t.get("image")) for t in targets.values() if t.get("image")}
            executor = run.executor(
                plan,
                command="rollback",
                image=images.pop() if len(images) == 1 else spec.image,
                resumed_from=resumed_from,
                fleet=fleet,
            )
            notifier = Notifier(
                read_notify(settings.root), os.environ, app=conn.app, command="rollback", bus=bus
            )
            bus.subscribe(notifier)
            try:
                result = await executor.run()
            finally:
                await notifier.close()
            if restored is not None:
                result = _after_restore(restored, result)
            return await gate_writable_primary(
                conn, result, expected=spec.primary_region, journal=journal, bus=bus
            )


async def _restore_data_first(
    conn: Connection,
    run: RunContext,
    spec: DeploySpec,
    fleet: Fleet,
    targets: dict[str, dict[str, Any]],
    history: Sequence[MachineConfigRecord],
    regions: Sequence[str],
    release: str,
) -> tuple[DeployResult, dict[str, dict[str, Any]]]:
    """Run the data restore; return its result and the targets left for the rollback."""
    bus = run.bus
    _, entries = await read_ledger(conn)
    _, points = choose_points(entries, regions)
    configs: dict[tuple[str, int], Mapping[str, Any]] = {}
    replaced: set[str] = set()
    for p in points:
        current = fleet.managed_in(p.region).get(p.slot)
        if current is None:
            # A killed restore destroyed it: launch the slot's machine from the release's config.
            found = _slot_config(history, p.region, p.slot, release)
            if found is not None:
                configs[(p.region, p.slot)] = found
                continue
        if current is None or current.id not in targets:
            bus.emit(
                Note(
                    f"{p.region}: slot {p.slot} has no machine with a config of {release}; its "
                    f"restore point {p.snapshot} is left unused",
                    level="warning",
                    region=p.region,
                )
            )
            continue
        configs[(p.region, p.slot)] = targets[current.id]
        replaced.add(current.id)
    result = await restore_data(
        conn, run, spec=spec, fleet=fleet, points=points, configs=configs, release=release
    )
    return result, {mid: cfg for mid, cfg in targets.items() if mid not in replaced}


def _slot_config(
    history: Sequence[MachineConfigRecord], region: str, slot: int, release: str
) -> dict[str, Any] | None:
    """Return the newest config of ``release`` a machine of (``region``, ``slot``) had."""
    for row in sorted(history, key=lambda r: r.id, reverse=True):
        if row.region != region:
            continue
        for config in (row.config_after, row.config_before):
            if config is not None and config_release(config) == release and _slot(config) == slot:
                return copy.deepcopy(dict(config))
    return None


def _after_restore(restored: DeployResult, rollback: DeployResult) -> DeployResult:
    """Return the rollback's result with the data restore's steps first."""
    outcome = restored.outcome if rollback.outcome == "noop" else rollback.outcome
    return replace(
        rollback,
        steps=restored.steps + rollback.steps,
        mutating_steps=restored.mutating_steps + rollback.mutating_steps,
        outcome=outcome,
        started_at=restored.started_at,
    )
