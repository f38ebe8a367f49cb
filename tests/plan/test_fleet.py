"""The observed fleet: parsing the Machines API's lists into pure values."""

from __future__ import annotations

import asyncio
from typing import Any

from fly.openapi import FlyAPI, json_response

from orchestrator.fly.client import FlyClient
from orchestrator.plan import Fleet, ObservedGuest, observe
from orchestrator.plan.config import config_digest

from .plan_helpers import APP, fleet_at, machine_json, sample_spec, to_fleet, volume_json

BASE_URL = "https://api.machines.dev"


def test_managed_machines_carry_slot_release_digest_and_volume() -> None:
    spec = sample_spec()
    fleet = to_fleet(*fleet_at(spec))
    m = fleet.managed_in("dfw")[2]
    assert m.id == "m-dfw-2"
    assert m.name == "sample-fleet-dfw-2"
    assert m.slot == 2
    assert m.release is not None
    assert m.release.startswith("v1-")
    assert m.config_digest == config_digest(m.config)
    assert m.volume_id == "vol_dfw_2"
    assert m.guest == ObservedGuest("shared", 1, 256)
    assert m.checks_passing
    assert not m.cordoned
    assert m.config["mounts"][0]["volume"] == "vol_dfw_2"
    assert m.metadata["orch_launch_id"] == "launch-m-dfw-2"


def test_config_is_a_copy_of_what_fly_sent() -> None:
    machines, volumes = fleet_at(sample_spec())
    fleet = to_fleet(machines, volumes)
    machines[0]["config"]["image"] = "changed"
    assert fleet.machines[0].config["image"] != "changed"


def test_destroyed_machines_and_soft_deleted_volumes_are_ignored() -> None:
    machines, volumes = fleet_at(sample_spec(), skip=[("syd", 2)])
    gone = machines[0] | {"id": "m-gone", "state": "destroyed"}
    volumes.append(volume_json("vol_gone", "syd", state="pending_destroy"))
    fleet = to_fleet([*machines, gone], volumes)
    assert fleet.machine("m-gone") is None
    assert fleet.volume("vol_gone") is None
    assert len(fleet.machines) == len(machines)


def test_machines_without_a_valid_slot_are_unmanaged() -> None:
    cfg = {"image": "nginx", "metadata": {"orch_slot": "abc"}}
    zero = {"image": "nginx", "metadata": {"orch_slot": "0"}}
    fleet = to_fleet([machine_json("m-a", "syd", cfg), machine_json("m-b", "syd", zero)], [])
    assert [m.id for m in fleet.unmanaged()] == ["m-a", "m-b"]
    assert fleet.managed_in("syd") == {}


def test_order_does_not_depend_on_the_api() -> None:
    machines, volumes = fleet_at(sample_spec())
    a = to_fleet(machines, volumes)
    b = to_fleet(list(reversed(machines)), list(reversed(volumes)))
    assert a == b
    assert [m.id for m in a.machines][:2] == ["m-ams-1", "m-dfw-1"]


def test_a_slot_claimed_twice_is_held_by_the_lowest_id() -> None:
    spec = sample_spec()
    machines, volumes = fleet_at(spec)
    clone = machines[-1] | {"id": "m-zzz"}  # a copy of syd slot 2
    fleet = to_fleet([*machines, clone], volumes)
    assert fleet.managed_in("syd")[2].id == "m-syd-2"
    assert [m.id for m in fleet.duplicates_in("syd")] == ["m-zzz"]


def test_unattached_volumes_exclude_any_mounted_volume() -> None:
    machines, volumes = fleet_at(sample_spec())
    # Fly has not caught up yet: the volume says unattached but a machine mounts it.
    volumes = [v | {"attached_machine_id": None} if v["id"] == "vol_syd_1" else v for v in volumes]
    volumes += [
        volume_json("vol_b", "syd"),
        volume_json("vol_a", "syd"),
        volume_json("x", "syd", name="logs"),
    ]
    fleet = to_fleet(machines, volumes)
    assert [v.id for v in fleet.unattached_volumes("syd", "data")] == ["vol_a", "vol_b"]


async def _observe_over_http(
    machine_pages: list[list[dict[str, Any]]], volumes: list[dict[str, Any]]
) -> tuple[Fleet, FlyAPI]:
    """Observe through the real FlyClient, answered by the OpenAPI-checking transport."""
    api = FlyAPI()
    # Each page but the last names the next one, as Fly's fly-next-cursor header does.
    pages = [
        json_response(200, page, fly_next_cursor=f"c{n}") for n, page in enumerate(machine_pages, 1)
    ]
    pages[-1] = json_response(200, machine_pages[-1])
    api.on("Machines_list", *pages)
    api.on("Volumes_list", json_response(200, volumes))
    async with FlyClient(
        BASE_URL, "test-token", transport=api.transport(), rate_limit=False
    ) as fly:
        fleet = await observe(fly, APP)
    return fleet, api


def test_observe_lists_machines_and_volumes_over_the_api() -> None:
    machines, volumes = fleet_at(sample_spec())
    half = len(machines) // 2
    # A fleet longer than one page: every page is read, none counted twice.
    fleet, api = asyncio.run(_observe_over_http([machines[:half], machines[half:]], volumes))
    assert isinstance(fleet, Fleet)
    assert [(c.operation_id, c.query_value("cursor")) for c in api.calls] == [
        ("Machines_list", None),
        ("Machines_list", "c1"),
        ("Volumes_list", None),
    ]
    assert all(c.path_params["app_name"] == APP for c in api.calls)
    assert fleet == to_fleet(machines, volumes)
    assert len(fleet.machines) == len(machines)
