"""The fleet's monthly cost and what a plan adds or saves, from the shared price table."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from plan.plan_helpers import fleet_at, sample_spec, to_fleet

from orchestrator.cost import plan_cost
from orchestrator.plan import build_plan
from orchestrator.pricing import guest_per_month, volumes_per_month


def _shared_1x(region: str, n: int) -> Decimal:
    return guest_per_month("shared", 1, 256, region=region) * n


def test_a_first_deploy_adds_every_machine_and_volume_it_creates() -> None:
    spec = sample_spec()  # syd 2, dfw 2, ams 1; shared-cpu-1x, 1 GB volumes

    now, after = plan_cost(build_plan(spec, to_fleet([], [])), to_fleet([], []))

    assert now.total == 0
    assert after.machine_count == 5
    assert after.volume_gb == 5
    expected = _shared_1x("syd", 2) + _shared_1x("dfw", 2) + _shared_1x("ams", 1)
    assert after.machines == expected
    assert after.volumes == volumes_per_month(5)


def test_a_scale_down_saves_the_machine_and_keeps_billing_its_volume() -> None:
    spec = sample_spec()
    fleet = to_fleet(*fleet_at(spec))
    smaller = replace(spec, regions={**spec.regions, "dfw": replace(spec.regions["dfw"], count=1)})

    now, after = plan_cost(build_plan(smaller, fleet), fleet)

    assert now.machine_count == 5
    assert after.machine_count == 4
    assert now.total - after.total == _shared_1x("dfw", 1)
    assert after.volumes == now.volumes  # the kept volume still bills


def test_an_image_change_costs_nothing_more() -> None:
    spec = sample_spec()
    fleet = to_fleet(*fleet_at(spec))

    v2 = replace(spec, image="registry.fly.io/sample-app:v2")

    now, after = plan_cost(build_plan(v2, fleet), fleet)

    assert now.total == after.total > 0
