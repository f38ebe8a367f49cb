"""Answers shaped like Fly's (Machine, Volume, Lease... as the API returns them)."""

from __future__ import annotations

from typing import Any

CONFIG: dict[str, Any] = {
    "image": "registry.fly.io/sample-app:v2",
    "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256},
    "env": {"PRIMARY_REGION": "syd"},
    "mounts": [{"volume": "vol_123", "path": "/app/.data", "name": "data"}],
    "metadata": {"fly_platform_version": "v2", "fly_release_id": "v2"},
    "checks": {"status": {"type": "http", "port": 8080, "path": "/status", "interval": "15s"}},
    "restart": {"policy": "on-failure", "max_retries": 3},
    # A field the models do not name: an update must send it back untouched.
    "stop_config": {"signal": "SIGTERM", "timeout": "10s"},
}


def machine(
    machine_id: str = "148ed193b95e89",
    *,
    state: str = "started",
    region: str = "syd",
    version: str = "01HZX4V6X7KT0YQ5M7N4ZB1V2C",
    **extra: Any,
) -> dict[str, Any]:
    """Return a Machine object as ``GET .../machines/{id}`` answers it."""
    return {
        "id": machine_id,
        "name": f"demo-{region}-1",
        "state": state,
        "region": region,
        "instance_id": version,
        "version": version,
        "private_ip": "fdaa:0:1:a7b:1f8:2a2e:8d2f:2",
        "config": CONFIG,
        "image_ref": {"registry": "registry.fly.io", "repository": "sample-app", "tag": "v2"},
        "created_at": "2026-08-01T10:00:00Z",
        "updated_at": "2026-08-01T10:01:00Z",
        "events": [
            {
                "id": "01HZX",
                "type": "start",
                "status": "started",
                "source": "flyd",
                "timestamp": 1722506460000,
            },
        ],
        "checks": [
            {
                "name": "status",
                "status": "passing",
                "output": "200 OK",
                "updated_at": "2026-08-01T10:01:00Z",
            }
        ],
        "host_status": "ok",
        "cordoned": False,
        **extra,
    }


def volume(volume_id: str = "vol_123", *, state: str = "created", **extra: Any) -> dict[str, Any]:
    """Return a Volume object."""
    return {
        "id": volume_id,
        "name": "data",
        "state": state,
        "size_gb": 1,
        "region": "syd",
        "zone": "a1b2",
        "encrypted": True,
        "attached_machine_id": None,
        "created_at": "2026-08-01T09:00:00Z",
        "snapshot_retention": 5,
        "auto_backup_enabled": True,
        "host_status": "ok",
        "fstype": "ext4",
        **extra,
    }


LEASE_FLAT: dict[str, Any] = {
    "nonce": "7a3c9e1f2b4d",
    "expires_at": 1722506473,
    "owner": "deployer@example.com",
    "description": "orchestrator deploy v2",
    "version": "01HZX4V6X7KT0YQ5M7N4ZB1V2C",
}

# What Fly's docs example and fly-go's MachineLease show: the lease wrapped in status/data.
LEASE_WRAPPED: dict[str, Any] = {"status": "success", "data": LEASE_FLAT}

REGIONS: dict[str, Any] = {
    "nearest": "syd",
    "regions": [
        {
            "code": "syd",
            "name": "Sydney, Australia",
            "gateway_available": True,
            "requires_paid_plan": False,
            "deprecated": False,
            "latitude": -33.87,
            "longitude": 151.21,
            "geo_region": "oceania",
        },
        {
            "code": "dfw",
            "name": "Dallas, Texas (US)",
            "gateway_available": True,
            "requires_paid_plan": False,
            "deprecated": False,
            "latitude": 32.78,
            "longitude": -96.8,
            "geo_region": "north_america",
        },
        {
            "code": "ams",
            "name": "Amsterdam, Netherlands",
            "gateway_available": True,
            "requires_paid_plan": False,
            "deprecated": False,
            "latitude": 52.37,
            "longitude": 4.9,
            "geo_region": "europe",
        },
    ],
}
