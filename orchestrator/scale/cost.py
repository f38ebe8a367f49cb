"""What a scale does to the fleet's size and monthly bill, and whether it must be confirmed.

`scale_impact` compares the machines a region has now (observed) with what the edited region
file asks for, and prices both with Fly's published rates (`orchestrator.pricing`). A change
needs the operator's confirmation when it adds more than `ADD_ABOVE` machines to a region,
more than doubles a region, or destroys any machine: on Fly.io each machine and volume is
billed, and a destroy takes capacity away. Pure: no clock, network or filesystem.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from orchestrator.fleetconfig.edit import RegionEdit
from orchestrator.plan.fleet import Fleet
from orchestrator.pricing import FLY_PRICES, format_usd, guest_per_month, volumes_per_month

__all__ = ["ADD_ABOVE", "RegionImpact", "ScaleImpact", "scale_impact"]

ADD_ABOVE = 10
"""Adding more machines than this to one region asks first (so does more than doubling it)."""


@dataclass(frozen=True, slots=True)
class RegionImpact:
    """One region's change.

    Attributes:
        region: the region.
        machines_before: its managed machines now.
        machines_after: the count its file asks for.
        monthly_before: those machines and their volumes per month now, USD.
        monthly_after: the same after the scale, USD (kept volumes still cost).
    """

    region: str
    machines_before: int
    machines_after: int
    monthly_before: Decimal
    monthly_after: Decimal

    @property
    def added(self) -> int:
        """Return how many machines the scale creates."""
        return max(self.machines_after - self.machines_before, 0)

    @property
    def destroyed(self) -> int:
        """Return how many machines the scale destroys."""
        return max(self.machines_before - self.machines_after, 0)

    @property
    def monthly_change(self) -> Decimal:
        """Return the change of the monthly bill, USD (negative: cheaper)."""
        return self.monthly_after - self.monthly_before

    @property
    def large(self) -> bool:
        """Tell whether it adds more than `ADD_ABOVE` machines or more than doubles the region."""
        return self.added > ADD_ABOVE or (
            self.machines_before > 0 and self.machines_after > 2 * self.machines_before
        )

    def describe(self) -> str:
        """Return one line: ``syd 2 → 500 machines (+498), +$1,090.62/month``."""
        delta = self.machines_after - self.machines_before
        return (
            f"{self.region} {self.machines_before} → {self.machines_after} machines "
            f"({delta:+d}), {format_usd(self.monthly_change, signed=True)}/month"
        )


@dataclass(frozen=True, slots=True)
class ScaleImpact:
    """The whole scale's change, region by region.

    Attributes:
        regions: each changed region, in the order given.
        destroy_volumes: whether the volumes of destroyed machines go too.
    """

    regions: tuple[RegionImpact, ...]
    destroy_volumes: bool = False

    @property
    def monthly_change(self) -> Decimal:
        """Return the change of the monthly bill over every region, USD."""
        return sum((r.monthly_change for r in self.regions), Decimal(0))

    @property
    def needs_confirmation(self) -> bool:
        """Tell whether the change is large or destroys machines."""
        return any(r.large or r.destroyed for r in self.regions)

    def why(self) -> str:
        """Return why it needs confirmation, one line, naming each region and the cost."""
        parts = [r.describe() for r in self.regions if r.large or r.destroyed]
        total = format_usd(self.monthly_change, signed=True)
        destroys = sum(r.destroyed for r in self.regions)
        verb = ""
        if destroys:
            kept = "and their volumes" if self.destroy_volumes else "(volumes kept)"
            verb = f"; destroys {destroys} machine(s) {kept}"
        return (
            f"{'; '.join(parts)}{verb}; in all {total}/month at Fly's prices of "
            f"{FLY_PRICES.as_of.isoformat()}"
        )


def _region_cost(fleet: Fleet, edit: RegionEdit, *, destroy_volumes: bool) -> RegionImpact:
    code = edit.region
    machines = list(fleet.managed_in(code).values())
    before = sum(
        (
            guest_per_month(m.guest.cpu_kind, m.guest.cpus, m.guest.memory_mb, region=code)
            for m in machines
        ),
        Decimal(0),
    )
    volumes = {v.id: v.size_gb for v in fleet.volumes_in(code)}
    before += sum((volumes_per_month(size) for size in volumes.values()), Decimal(0))
    after_spec = edit.after
    after = guest_per_month(
        after_spec.vm.cpu_kind,
        after_spec.vm.cpus,
        after_spec.vm.memory_mb,
        count=after_spec.count,
        region=code,
    )
    # Volumes only grow, and a scale-down keeps its machines' volumes unless told otherwise.
    kept = len(volumes) if not destroy_volumes else min(len(volumes), after_spec.count)
    after += volumes_per_month(after_spec.volume_size_gb, count=max(kept, after_spec.count))
    return RegionImpact(code, len(machines), after_spec.count, before, after)


def scale_impact(
    fleet: Fleet, edits: Sequence[RegionEdit], *, destroy_volumes: bool = False
) -> ScaleImpact:
    """Return what ``edits`` would do to ``fleet``'s machine counts and monthly bill."""
    return ScaleImpact(
        tuple(_region_cost(fleet, e, destroy_volumes=destroy_volumes) for e in edits),
        destroy_volumes=destroy_volumes,
    )
