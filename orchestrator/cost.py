"""What the fleet costs a month at Fly.io's prices, and what a plan adds or saves.

Prices come from the one shared table, `orchestrator.pricing.FLY_PRICES` (its date and source
go with every figure shown). A machine is priced as if it runs the whole month (what a deploy
leaves it doing; Fly bills a stopped machine only for its root filesystem), a volume by its
provisioned size, attached or not: a volume a scale-down kept still bills. Everything here is
pure except `status_cost`, which lists the volumes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from orchestrator.connect import Connection
from orchestrator.errors import FlyNotFound
from orchestrator.execute.status import FleetStatus
from orchestrator.plan.fleet import Fleet
from orchestrator.plan.model import Plan
from orchestrator.plan.steps import StepKind
from orchestrator.pricing import (
    FLY_PRICES,
    PriceTable,
    guest_per_month,
    snapshots_per_month,
    volumes_per_month,
)
from orchestrator.scale.report import ScaleReport

__all__ = [
    "Cost",
    "cost_json",
    "fleet_cost",
    "machine_month",
    "plan_cost",
    "scale_costs",
    "sizes_cost",
    "status_cost",
]

_ZERO = Decimal(0)
_BYTES_PER_GB = Decimal(1_000_000_000)


@dataclass(frozen=True, slots=True)
class Cost:
    """A monthly cost in USD, by kind.

    Attributes:
        machines: every machine running the whole month.
        volumes: every volume's provisioned size.
        snapshots: snapshot storage beyond the free allowance, when known.
        machine_count: how many machines are counted.
        volume_gb: how many GB of volumes are counted.
    """

    machines: Decimal = _ZERO
    volumes: Decimal = _ZERO
    snapshots: Decimal | None = None
    machine_count: int = 0
    volume_gb: int = 0

    @property
    def total(self) -> Decimal:
        """Return the sum."""
        return self.machines + self.volumes + (self.snapshots or _ZERO)


def machine_month(
    cpu_kind: str, cpus: int, memory_mb: int, region: str, table: PriceTable = FLY_PRICES
) -> Decimal:
    """Return one machine's month; a CPU kind the table does not price counts 0."""
    try:
        return guest_per_month(cpu_kind, cpus, memory_mb, region=region, table=table)
    except ValueError:
        return _ZERO


def _guest(config: Mapping[str, Any]) -> tuple[str, int, int] | None:
    guest = config.get("guest")
    if not isinstance(guest, Mapping):
        return None
    try:
        return str(guest["cpu_kind"]), int(guest["cpus"]), int(guest["memory_mb"])
    except (KeyError, TypeError, ValueError):
        return None


def fleet_cost(fleet: Fleet, table: PriceTable = FLY_PRICES) -> Cost:
    """Return what the observed fleet costs a month: every live machine and volume."""
    machines = sum(
        (
            machine_month(m.guest.cpu_kind, m.guest.cpus, m.guest.memory_mb, m.region, table)
            for m in fleet.machines
        ),
        _ZERO,
    )
    gb = sum(v.size_gb for v in fleet.volumes)
    return Cost(
        machines=machines,
        volumes=volumes_per_month(gb, table=table),
        machine_count=len(fleet.machines),
        volume_gb=gb,
    )


def plan_cost(plan: Plan, fleet: Fleet, table: PriceTable = FLY_PRICES) -> tuple[Cost, Cost]:
    """Return the fleet's monthly cost now, and once ``plan`` has run."""
    now = fleet_cost(fleet, table)
    machines, count, gb = now.machines, now.machine_count, now.volume_gb
    observed = {m.id: m for m in fleet.machines}
    volumes = {v.id: v.size_gb for v in fleet.volumes}
    for step in plan.steps():
        p = step.params
        m = observed.get(step.machine or "")
        if step.kind is StepKind.MACHINE_CREATE:
            guest = _guest(p.get("config") or {})
            if guest is not None:
                machines += machine_month(*guest, step.region, table)
                count += 1
        elif step.kind is StepKind.MACHINE_UPDATE and m is not None:
            guest = _guest(p.get("config") or {})
            if guest is not None:
                machines -= machine_month(
                    m.guest.cpu_kind, m.guest.cpus, m.guest.memory_mb, m.region, table
                )
                machines += machine_month(*guest, step.region, table)
        elif step.kind is StepKind.MACHINE_DESTROY and m is not None:
            machines -= machine_month(
                m.guest.cpu_kind, m.guest.cpus, m.guest.memory_mb, m.region, table
            )
            count -= 1
            if not p.get("keep_volume", True):
                gb -= volumes.get(str(p.get("volume")), 0)
        elif step.kind is StepKind.VOLUME_ENSURE and not p.get("reuse"):
            gb += int(p.get("size_gb") or 0)
    after = Cost(
        machines=machines,
        volumes=volumes_per_month(max(gb, 0), table=table),
        machine_count=count,
        volume_gb=max(gb, 0),
    )
    return now, after


def sizes_cost(
    machines: Iterable[tuple[str, str, int, int, int]],
    volume_gb: int,
    table: PriceTable = FLY_PRICES,
) -> Cost:
    """Return the cost of ``(region, cpu_kind, cpus, memory_mb, count)`` groups and volumes."""
    total, count = _ZERO, 0
    for region, kind, cpus, memory_mb, n in machines:
        total += machine_month(kind, cpus, memory_mb, region, table) * n
        count += n
    return Cost(
        machines=total,
        volumes=volumes_per_month(volume_gb, table=table),
        machine_count=count,
        volume_gb=volume_gb,
    )


def cost_json(cost: Cost) -> dict[str, Any]:
    """Return a cost as JSON-ready values (USD as strings rounded to cents, and the source)."""

    def usd(value: Decimal | None) -> str | None:
        return None if value is None else str(value.quantize(Decimal("0.01")))

    return {
        "total_usd": usd(cost.total),
        "machines_usd": usd(cost.machines),
        "volumes_usd": usd(cost.volumes),
        "snapshots_usd": usd(cost.snapshots),
        "machines": cost.machine_count,
        "volume_gb": cost.volume_gb,
        "prices_as_of": FLY_PRICES.as_of.isoformat(),
        "prices_source": FLY_PRICES.source,
    }


async def status_cost(conn: Connection, status: FleetStatus, *, region: str | None) -> Cost:
    """Return the month's cost of what ``invoke status`` shows, every volume (kept ones too)
    and the volumes' snapshots (by their stored bytes, before the organization's free GB)."""
    try:
        volumes = await conn.client.list_volumes(conn.app)
    except FlyNotFound:
        volumes = []
    gb = sum(
        v.size_gb
        for v in volumes
        if v.state not in ("pending_destroy", "destroyed", "destroying")
        and (region is None or v.region == region)
    )
    groups = [
        (code, m.cpu_kind, m.cpus, m.memory_mb, 1)
        for code, machines in status.regions.items()
        for m in machines
    ]
    stored = 0
    for v in volumes:
        if v.state in ("pending_destroy", "destroyed", "destroying"):
            continue
        if region is not None and v.region != region:
            continue
        try:
            stored += sum(s.size for s in await conn.client.list_snapshots(conn.app, v.id))
        except FlyNotFound:
            continue
    # The free allowance is per organization, shared with other apps: not taken off here.
    snapshots = snapshots_per_month(Decimal(stored) / _BYTES_PER_GB, apply_free=False)
    return dataclasses.replace(sizes_cost(groups, gb), snapshots=snapshots)


def scale_costs(report: ScaleReport) -> tuple[Cost, Cost]:
    """Return the month's cost of the regions as observed, and at their desired sizes."""
    observed, desired = [], []
    observed_gb = desired_gb = 0
    for r in report.regions:
        for size in r.observed.sizes:
            observed.append((r.code, size.cpu_kind, size.cpus, size.memory_mb, size.machines))
        if r.observed.volume_size_gb is not None:
            observed_gb += r.observed.volume_size_gb * r.observed.volumes
        else:
            observed_gb += sum(r.observed.volume_sizes)  # mixed sizes: a lower bound
        d = r.desired
        if d is not None:
            desired.append((r.code, d.cpu_kind, d.cpus, d.memory_mb, d.count))
            desired_gb += (d.volume_size_gb or 0) * d.count
    return sizes_cost(observed, observed_gb), sizes_cost(desired, desired_gb)
