"""Price Fly.io resources from Fly's published rates: machines, volumes and snapshots.

Every number lives in :data:`FLY_PRICES`, one table with the date it was read and the page it
came from, so a price change is a one-place edit. Fly prices a started machine per second as
the CPU preset's rate (each shared vCPU includes 256 MB, each performance vCPU 2 GB) plus a
per-GB rate for RAM above what the preset includes; the region multiplies the whole price.
A "month" is 30 days of continuous running (2,592,000 s), as Fly's own page computes it.

Amounts are :class:`~decimal.Decimal` US dollars, unrounded; round only when showing them
(:func:`format_usd`). These functions are pure: no clock, network or filesystem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

__all__ = [
    "FLY_PRICES",
    "SECONDS_PER_MONTH",
    "PriceTable",
    "format_usd",
    "guest_per_month",
    "guest_per_second",
    "included_memory_mb",
    "region_markup",
    "snapshots_per_month",
    "volumes_per_month",
]

SECONDS_PER_MONTH = 30 * 24 * 3600
"""Fly's "month" in its price table: 30 days of continuous running."""

_MB_PER_GB = Decimal(1024)


@dataclass(frozen=True, slots=True)
class PriceTable:
    """Fly's usage prices in USD, as published on :attr:`source` on :attr:`as_of`.

    Attributes:
        as_of: when the prices were read from the source.
        source: the page the prices were read from.
        cpu_per_second: per vCPU per second while started, by CPU kind, in the base regions.
        included_memory_mb_per_cpu: RAM each vCPU of a kind includes in its rate.
        ram_per_gb_second: each GB of RAM above the included amount, per second.
        volume_per_gb_month: provisioned volume capacity, attached or not.
        snapshot_per_gb_month: volume snapshot data stored.
        snapshot_free_gb: snapshot storage free each month, per organization.
        stopped_rootfs_per_gb_month: a stopped or suspended machine's root filesystem.
        base_regions: the regions the machine rates are quoted for (markup 1).
        region_markup: how much each other region multiplies the machine price by.
    """

    as_of: date
    source: str
    cpu_per_second: Mapping[str, Decimal]
    included_memory_mb_per_cpu: Mapping[str, int]
    ram_per_gb_second: Decimal
    volume_per_gb_month: Decimal
    snapshot_per_gb_month: Decimal
    snapshot_free_gb: int
    stopped_rootfs_per_gb_month: Decimal
    base_regions: tuple[str, ...]
    region_markup: Mapping[str, Decimal]


FLY_PRICES = PriceTable(
    as_of=date(2026, 10, 9),
    source="https://fly.io/docs/about/pricing/",
    cpu_per_second={"shared": Decimal("0.0000008465"), "performance": Decimal("0.000012732")},
    included_memory_mb_per_cpu={"shared": 256, "performance": 2048},
    ram_per_gb_second=Decimal("0.000002316"),
    volume_per_gb_month=Decimal("0.15"),
    snapshot_per_gb_month=Decimal("0.08"),
    snapshot_free_gb=10,
    stopped_rootfs_per_gb_month=Decimal("0.15"),
    base_regions=("iad", "ewr"),
    region_markup={
        "ams": Decimal("1.038461538"),
        "arn": Decimal("1.038461538"),
        "bom": Decimal("1.076923077"),
        "cdg": Decimal("1.134615385"),
        "dfw": Decimal("1.25"),
        "fra": Decimal("1.153846154"),
        "gru": Decimal("1.615384615"),
        "jnb": Decimal("1.302884615"),
        "lax": Decimal("1.199519231"),
        "lhr": Decimal("1.134615385"),
        "nrt": Decimal("1.307692308"),
        "ord": Decimal("1.25"),
        "sin": Decimal("1.269230769"),
        "sjc": Decimal("1.192307692"),
        "syd": Decimal("1.269230769"),
        "yyz": Decimal("1.115384615"),
    },
)


def region_markup(region: str | None, table: PriceTable = FLY_PRICES) -> Decimal:
    """Return the factor ``region``'s machine prices are marked up by.

    A region the table does not list (or ``None``) is priced at the base rate, so a cost shown
    for it is a lower bound rather than a guess.
    """
    if region is None or region in table.base_regions:
        return Decimal(1)
    return table.region_markup.get(region, Decimal(1))


def included_memory_mb(cpu_kind: str, cpus: int, table: PriceTable = FLY_PRICES) -> int:
    """Return the RAM in MB the CPU rate of ``cpus`` vCPUs of ``cpu_kind`` already pays for."""
    return _included_per_cpu(cpu_kind, table) * cpus


def _included_per_cpu(cpu_kind: str, table: PriceTable) -> int:
    try:
        return table.included_memory_mb_per_cpu[cpu_kind]
    except KeyError:
        kinds = ", ".join(sorted(table.cpu_per_second))
        raise ValueError(f"no price for CPU kind {cpu_kind!r} (priced: {kinds})") from None


def guest_per_second(
    cpu_kind: str,
    cpus: int,
    memory_mb: int,
    *,
    region: str | None = None,
    table: PriceTable = FLY_PRICES,
) -> Decimal:
    """Return what one started machine of this size costs per second, in USD.

    Memory below what the CPUs include is not discounted: Fly bills the preset's rate.

    Raises:
        ValueError: ``cpu_kind`` is not in the table, or ``cpus`` or ``memory_mb`` is negative.
    """
    if cpus < 0 or memory_mb < 0:
        raise ValueError(f"cannot price {cpus} CPUs with {memory_mb} MB")
    included = _included_per_cpu(cpu_kind, table) * cpus
    extra_gb = Decimal(max(memory_mb - included, 0)) / _MB_PER_GB
    base = table.cpu_per_second[cpu_kind] * cpus + table.ram_per_gb_second * extra_gb
    return base * region_markup(region, table)


def guest_per_month(
    cpu_kind: str,
    cpus: int,
    memory_mb: int,
    *,
    count: int = 1,
    region: str | None = None,
    table: PriceTable = FLY_PRICES,
) -> Decimal:
    """Return what ``count`` machines of this size cost running for a 30-day month, in USD."""
    per_second = guest_per_second(cpu_kind, cpus, memory_mb, region=region, table=table)
    return per_second * SECONDS_PER_MONTH * count


def volumes_per_month(size_gb: int, *, count: int = 1, table: PriceTable = FLY_PRICES) -> Decimal:
    """Return what ``count`` volumes of ``size_gb`` GB cost per month (billed provisioned)."""
    if size_gb < 0 or count < 0:
        raise ValueError(f"cannot price {count} volumes of {size_gb} GB")
    return table.volume_per_gb_month * size_gb * count


def snapshots_per_month(
    stored_gb: float | Decimal, *, apply_free: bool = True, table: PriceTable = FLY_PRICES
) -> Decimal:
    """Return what ``stored_gb`` GB of snapshot data costs per month.

    ``apply_free`` takes off the organization's free allowance; leave it off to price the
    snapshots of one app that shares the allowance with others.
    """
    stored = Decimal(str(stored_gb))
    if stored < 0:
        raise ValueError(f"cannot price {stored_gb} GB of snapshots")
    if apply_free:
        stored = max(stored - table.snapshot_free_gb, Decimal(0))
    return table.snapshot_per_gb_month * stored


def format_usd(amount: Decimal, *, signed: bool = False) -> str:
    """Show ``amount`` as dollars and cents: ``$12.34``, or ``+$12.34`` / ``-$0.50`` if signed."""
    cents = amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    sign = "-" if cents < 0 else ("+" if signed else "")
    return f"{sign}${abs(cents):,.2f}"
