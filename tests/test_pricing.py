"""Fly's price table reproduces the prices Fly's pricing page prints."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orchestrator import pricing
from orchestrator.fleetconfig.sizes import PRESETS
from orchestrator.pricing import (
    FLY_PRICES,
    format_usd,
    guest_per_month,
    guest_per_second,
    snapshots_per_month,
    volumes_per_month,
)


@pytest.mark.parametrize(
    ("cpu_kind", "cpus", "memory_mb", "printed"),
    [
        # The rows Fly's page types out for its base regions (iad, ewr), per 30 days.
        ("shared", 1, 256, "$2.19"),
        ("shared", 1, 512, "$3.69"),
        ("shared", 1, 1024, "$6.70"),
        ("shared", 2, 2048, "$13.39"),
        ("performance", 1, 2048, "$33.00"),
        ("performance", 2, 4096, "$66.00"),
    ],
)
def test_monthly_price_matches_the_page(
    cpu_kind: str, cpus: int, memory_mb: int, printed: str
) -> None:
    assert format_usd(guest_per_month(cpu_kind, cpus, memory_mb)) == printed


def test_additional_ram_costs_six_dollars_a_gb_month() -> None:
    one_gb_more = guest_per_month("performance", 1, 3072) - guest_per_month("performance", 1, 2048)
    assert format_usd(one_gb_more) == "$6.00"


@pytest.mark.parametrize(
    ("region", "printed"), [("iad", "$6.70"), ("fra", "$7.73"), ("sin", "$8.50")]
)
def test_region_marks_the_price_up_as_the_page_example(region: str, printed: str) -> None:
    # Fly's three-region example: one shared-cpu-1x 1GB machine in each of iad, fra, sin.
    assert format_usd(guest_per_month("shared", 1, 1024, region=region)) == printed


def test_unlisted_region_is_priced_at_the_base_rate() -> None:
    assert guest_per_second("shared", 1, 256, region="zzz") == FLY_PRICES.cpu_per_second["shared"]


def test_every_preset_has_a_price_that_grows_with_its_size() -> None:
    for kind in ("shared", "performance"):
        sizes = sorted((s for s in PRESETS.values() if s.cpu_kind == kind), key=lambda s: s.cpus)
        prices = [guest_per_second(s.cpu_kind, s.cpus, s.memory_mb) for s in sizes]
        assert prices == sorted(prices)
        assert len(set(prices)) == len(prices)
        # A preset's memory is exactly what its CPUs include: no RAM surcharge.
        for size, price in zip(sizes, prices, strict=True):
            assert price == FLY_PRICES.cpu_per_second[kind] * size.cpus


def test_count_multiplies_and_a_month_is_thirty_days() -> None:
    one = guest_per_second("shared", 2, 1024)
    assert guest_per_month("shared", 2, 1024, count=3) == one * 3 * 2_592_000


def test_volumes_are_fifteen_cents_a_gb_month() -> None:
    assert format_usd(volumes_per_month(10)) == "$1.50"
    assert volumes_per_month(1, count=4) == Decimal("0.60")


def test_snapshots_take_off_the_free_allowance() -> None:
    assert snapshots_per_month(8) == 0
    assert format_usd(snapshots_per_month(25)) == "$1.20"
    assert format_usd(snapshots_per_month(25, apply_free=False)) == "$2.00"


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="gpu"):
        guest_per_second("gpu", 1, 256)
    with pytest.raises(ValueError, match="-1 CPUs"):
        guest_per_second("shared", -1, 256)
    with pytest.raises(ValueError, match="-1 GB"):
        volumes_per_month(-1)
    with pytest.raises(ValueError, match=r"-0\.5 GB"):
        snapshots_per_month(-0.5)


def test_format_usd_rounds_to_cents_and_signs_on_request() -> None:
    assert format_usd(Decimal("1234.565")) == "$1,234.57"
    assert format_usd(Decimal("-0.5"), signed=True) == "-$0.50"
    assert format_usd(Decimal("3"), signed=True) == "+$3.00"


def test_table_says_where_and_when_it_was_read() -> None:
    assert FLY_PRICES.source.startswith("https://fly.io/docs/about/pricing")
    assert FLY_PRICES.as_of.year >= 2026
    assert pricing.SECONDS_PER_MONTH == 2_592_000
