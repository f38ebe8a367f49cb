"""``invoke rollback --restore-data``: the restore points to use, what they lose, and the run.

The release ledger on Fly (`orchestrator.execute.ledger`) keeps each release's restore points:
the snapshot taken of each machine's volume before the release changed it. `preview` reads the
newest release that has restore points and asks each slot's machine now for its ``last_seq``
(the app's ``/status``), so the command line can say how many records written since are lost
before anything changes. `restore_data` runs the plan of
`orchestrator.plan.restoredata.build_data_restore_plan` through the `Executor` as a
``restore`` run; `orchestrator.commands.rollback.rollback` calls it under its lock, before it
puts the previous release's configs back on the other machines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.connect import Connection
from orchestrator.errors import ConfigError
from orchestrator.execute.executor import DeployResult
from orchestrator.execute.ledger import ReleaseEntry, read_ledger
from orchestrator.execute.run import RunContext
from orchestrator.fleetconfig.model import DeploySpec
from orchestrator.plan.fleet import Fleet, observe_fleet
from orchestrator.plan.restoredata import RestorePoint, build_data_restore_plan

__all__ = ["DataLoss", "RestorePreview", "choose_points", "preview", "restore_data"]


@dataclass(frozen=True, slots=True)
class DataLoss:
    """One slot's restore point and what restoring it loses.

    Attributes:
        point: the restore point.
        machine: the machine in the slot now (``None``: none).
        last_seq_now: its ``last_seq`` now, or ``None`` when it did not say.
    """

    point: RestorePoint
    machine: str | None
    last_seq_now: int | None

    @property
    def lost(self) -> int | None:
        """Return how many records written since the snapshot are lost, when both are known."""
        if self.last_seq_now is None or self.point.last_seq is None:
            return None
        return max(0, self.last_seq_now - self.point.last_seq)

    def to_json(self) -> dict[str, Any]:
        """Return the slot's figures as JSON-ready data."""
        p = self.point
        return {
            "region": p.region,
            "slot": p.slot,
            "machine": self.machine,
            "snapshot": p.snapshot,
            "snapshot_at": p.at,
            "volume": p.volume,
            "last_seq_then": p.last_seq,
            "last_seq_now": self.last_seq_now,
            "records_lost": self.lost,
        }


@dataclass(frozen=True, slots=True)
class RestorePreview:
    """What ``--restore-data`` would do: the release whose points it uses, and each slot."""

    release: str
    taken_at: str
    slots: tuple[DataLoss, ...]

    @property
    def records_lost(self) -> int | None:
        """Return the most records any restored machine loses (the writer's loss), if known."""
        known = [s.lost for s in self.slots if s.lost is not None]
        return max(known) if known else None

    def to_json(self) -> dict[str, Any]:
        """Return the preview as JSON-ready data."""
        return {
            "release": self.release,
            "taken_at": self.taken_at,
            "records_lost": self.records_lost,
            "slots": [s.to_json() for s in self.slots],
        }


def choose_points(
    entries: Sequence[ReleaseEntry], regions: Sequence[str]
) -> tuple[ReleaseEntry, list[RestorePoint]]:
    """Return the newest release with restore points, and its points in ``regions``.

    Raises:
        ConfigError: no release has restore points there (names ``--restore-data``).
    """
    for entry in entries:
        points = [RestorePoint.from_json(p) for p in entry.restore_points]
        chosen = sorted(
            (p for p in points if p is not None and (not regions or p.region in regions)),
            key=lambda p: (p.region, p.slot),
        )
        if chosen:
            return entry, chosen
    where = f" in {', '.join(regions)}" if regions else ""
    raise ConfigError(
        f"no release has restore points{where}: a deploy takes them in waves with "
        "snapshot_before (regions/waves.toml)",
        option="restore_data",
    )


async def preview(conn: Connection, regions: Sequence[str]) -> RestorePreview:
    """Read the restore points to use and each slot's ``last_seq`` now (reads only)."""
    _, entries = await read_ledger(conn)
    entry, points = choose_points(entries, regions)
    fleet = await observe_fleet(conn.client, conn.app)
    slots = []
    for p in points:
        current = fleet.managed_in(p.region).get(p.slot)
        seq = None
        if current is not None and conn.probe.reachable:
            answer = await conn.probe.status(machine_id=current.id)
            value = answer.body.get("last_seq") if answer.ok else None
            seq = value if isinstance(value, int) and not isinstance(value, bool) else None
        slots.append(DataLoss(p, current.id if current else None, seq))
    taken = min((p.at for p in points if p.at), default="")
    return RestorePreview(entry.release, taken, tuple(slots))


async def restore_data(
    conn: Connection,
    run: RunContext,
    *,
    spec: DeploySpec,
    fleet: Fleet,
    points: Sequence[RestorePoint],
    configs: Mapping[tuple[str, int], Mapping[str, Any]],
    release: str,
) -> DeployResult:
    """Replace each point's machine by one on a volume restored from its snapshot."""
    plan = build_data_restore_plan(
        conn.app,
        fleet,
        points,
        configs,
        release=release,
        spec_waves=run.wave_specs,
        primary_region=spec.primary_region,
    )
    executor = run.executor(plan, command="restore", fleet=fleet)
    return await executor.run()
