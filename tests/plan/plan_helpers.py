"""Builders for plan tests: the sample fleet's spec and Machines-API-shaped fleets.

Specs are built from the dataclasses directly (not the loader), and fleets from JSON dicts
shaped like what ``GET /v1/apps/{app}/machines`` and ``/volumes`` return, parsed by the same
``Machine.from_api`` / ``Volume.from_api`` the client uses.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from orchestrator.fleetconfig.model import (
    DeploySpec,
    MountSpec,
    RegionSpec,
    ServiceCheckSpec,
    ServiceSpec,
    VMSize,
    WaveSpec,
)
from orchestrator.fly.models import Machine, Volume
from orchestrator.plan import Fleet, desired_config, fleet_from_api

APP = "sample-fleet"
IMAGE_V1 = "registry.fly.io/sample-app:v1"
IMAGE_V2 = "registry.fly.io/sample-app:v2"
SHARED_1X = VMSize("shared", 1, 256, "shared-cpu-1x")


def region(code: str, count: int, role: str = "replica", *, vm: VMSize = SHARED_1X) -> RegionSpec:
    """Return a region of the sample fleet (1 GB volumes, max_unavailable 1)."""
    return RegionSpec(
        code=code,
        count=count,
        vm=vm,
        volume_size_gb=1,
        role="primary" if role == "primary" else "replica",
        max_unavailable=1,
        source=f"regions/{code}.toml",
    )


def sample_spec(
    *,
    syd: int = 2,
    dfw: int = 2,
    ams: int = 1,
    image: str = IMAGE_V1,
    bake_s: float = 3.0,
) -> DeploySpec:
    """Return the sample fleet: syd (primary) 2, dfw 2, ams 1; waves [syd], [dfw, ams]."""
    return DeploySpec(
        app=APP,
        primary_region="syd",
        image=image,
        env={"DATA_DIR": "/app/.data", "LOG_LEVEL": "info"},
        mount=MountSpec(source="data", destination="/app/.data", initial_size_gb=1),
        service=ServiceSpec(
            internal_port=8080,
            force_https=True,
            auto_stop_machines="off",
            auto_start_machines=True,
            min_machines_running=1,
            checks=(
                ServiceCheckSpec(
                    type="http",
                    method="GET",
                    path="/status",
                    interval_s=2.0,
                    timeout_s=1.0,
                    grace_period_s=2.0,
                ),
            ),
        ),
        regions={
            "ams": region("ams", ams),
            "dfw": region("dfw", dfw),
            "syd": region("syd", syd, "primary"),
        },
        waves=(
            WaveSpec(index=1, regions=("syd",), bake_s=bake_s, max_p95_ms=500.0),
            WaveSpec(
                index=2,
                regions=("dfw", "ams"),
                bake_s=bake_s,
                max_p95_ms=500.0,
                on_failure="rollback_wave",
            ),
        ),
        root=".",
    )


def machine_json(
    mid: str,
    region_code: str,
    config: Mapping[str, Any],
    *,
    state: str = "started",
    version: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Return a machine as the Machines API lists it."""
    return {
        "id": mid,
        "name": name or f"{APP}-{region_code}-{mid}",
        "state": state,
        "region": region_code,
        "instance_id": version or f"01J{mid.upper():0>23}"[:26],
        "private_ip": "fdaa:0:1::3",
        "config": copy.deepcopy(dict(config)),
        "image_ref": {"registry": "registry.fly.io", "repository": "sample-app", "tag": "v1"},
        "checks": [{"name": "status", "status": "passing", "output": "200 OK"}],
        "events": [],
        "host_status": "ok",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }


def volume_json(
    vid: str,
    region_code: str,
    *,
    attached: str | None = None,
    size_gb: int = 1,
    name: str = "data",
    state: str = "created",
) -> dict[str, Any]:
    """Return a volume as the Machines API lists it."""
    return {
        "id": vid,
        "name": name,
        "state": state,
        "size_gb": size_gb,
        "region": region_code,
        "zone": "b6a7",
        "encrypted": True,
        "attached_machine_id": attached,
        "attached_alloc_id": None,
        "created_at": "2026-01-01T00:00:00Z",
        "host_status": "ok",
        "snapshot_retention": 5,
        "auto_backup_enabled": True,
    }


def managed_machine(
    spec: DeploySpec, region_code: str, slot: int, mid: str, vol: str | None, **kw: Any
) -> dict[str, Any]:
    """Return a machine the orchestrator created for ``spec`` in ``slot``, on volume ``vol``."""
    config = desired_config(spec, region_code, slot)
    if vol is not None:
        config["mounts"][0]["volume"] = vol
    config["metadata"]["orch_launch_id"] = f"launch-{mid}"
    return machine_json(mid, region_code, config, name=f"{APP}-{region_code}-{slot}", **kw)


def fleet_at(
    spec: DeploySpec,
    *,
    skip: Iterable[tuple[str, int]] = (),
    extra_machines: Iterable[dict[str, Any]] = (),
    extra_volumes: Iterable[dict[str, Any]] = (),
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return machine and volume JSON for a fleet exactly at ``spec`` (ids like ``m-syd-1``)."""
    machines: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    skipped = set(skip)
    for code, rs in sorted(spec.regions.items()):
        for slot in range(1, rs.count + 1):
            if (code, slot) in skipped:
                continue
            mid, vid = f"m-{code}-{slot}", f"vol_{code}_{slot}"
            machines.append(managed_machine(spec, code, slot, mid, vid))
            volumes.append(volume_json(vid, code, attached=mid))
    return machines + list(extra_machines), volumes + list(extra_volumes)


def to_fleet(machines: Iterable[Mapping[str, Any]], volumes: Iterable[Mapping[str, Any]]) -> Fleet:
    """Parse API JSON into a Fleet, as observe() would."""
    return fleet_from_api(
        APP, [Machine.from_api(m) for m in machines], [Volume.from_api(v) for v in volumes]
    )


def with_image(spec: DeploySpec, image: str) -> DeploySpec:
    """Return ``spec`` deploying ``image``."""
    return replace(spec, image=image)
