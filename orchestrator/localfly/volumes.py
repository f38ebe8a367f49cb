"""Volumes API: directories under ``volumes/<id>/data``, forks, snapshots and restores."""

from __future__ import annotations

import asyncio
import math
import secrets
import shutil
from typing import Any

from starlette.responses import Response

from orchestrator.localfly import disk
from orchestrator.localfly.core import Call, LocalFly, json_response
from orchestrator.localfly.state import SnapshotRecord, VolumeRecord
from orchestrator.localfly.util import ApiError, iso_now, snapshot_id, volume_id
from orchestrator.localfly.validate import VOLUME_NAME, check_body, check_region

__all__ = [
    "create_snapshot",
    "create_volume",
    "destroy_volume",
    "extend_volume",
    "get_volume",
    "list_snapshots",
    "list_volumes",
    "update_volume",
    "volume_to_api",
]

GIB = 1024**3
MAX_SIZE_GB = 500


def volume_to_api(fly: LocalFly, v: VolumeRecord, *, summary: bool = False) -> dict[str, Any]:
    """Return a volume as Fly's ``Volume`` object."""
    out: dict[str, Any] = {
        "id": v.id,
        "name": v.name,
        "state": v.state,
        "size_gb": v.size_gb,
        "region": v.region,
        "created_at": v.created_at,
    }
    if v.attached_machine_id:
        out["attached_machine_id"] = v.attached_machine_id
        out["attached_alloc_id"] = v.attached_machine_id
    if summary:
        return out
    out.update(
        zone=v.zone,
        encrypted=v.encrypted,
        snapshot_retention=v.snapshot_retention,
        auto_backup_enabled=v.auto_backup_enabled,
        host_status="unreachable" if v.region in fly.outages else "ok",
        type="local",
        fstype=v.fstype,
        bytes_total=v.size_gb * GIB,
    )
    return out


def _size(value: Any, at_least: int = 1) -> int:
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not at_least <= value <= MAX_SIZE_GB
    ):
        raise ApiError(400, f"invalid size_gb {value!r}: between {at_least} and {MAX_SIZE_GB}")
    return value


def _retention(value: Any) -> int:
    if not isinstance(value, int) or not 1 <= value <= 60:
        raise ApiError(400, f"invalid snapshot_retention {value!r}: 1 to 60 days")
    return value


def _bytes_used(fly: LocalFly, volumes: list[VolumeRecord]) -> list[int]:
    """Return the bytes of the files in each volume's directory (one walk per volume)."""
    return [disk.tree_size(fly.volume_data(v.id)) for v in volumes]


async def list_volumes(fly: LocalFly, call: Call) -> Response:
    """Answer ``GET /apps/{app}/volumes`` (with ``bytes_used`` unless ``summary``)."""
    app = fly.app(call.params["app_name"]).name
    rows = sorted((v for v in fly.volumes.values() if v.app == app), key=lambda v: v.created_at)
    summary = call.flag("summary")
    out = [volume_to_api(fly, v, summary=summary) for v in rows]
    if not summary:
        used = await asyncio.to_thread(_bytes_used, fly, rows)
        for body, n in zip(out, used, strict=True):
            body["bytes_used"] = n
    return json_response(out)


async def create_volume(fly: LocalFly, call: Call) -> Response:
    """Answer ``POST /apps/{app}/volumes``: empty, forked (``source_volume_id``) or restored."""
    app = fly.app(call.params["app_name"]).name
    body = check_body("CreateVolumeRequest", await call.json())
    source_id, snap_id = body.get("source_volume_id"), body.get("snapshot_id")
    if source_id and snap_id:
        raise ApiError(400, "give either source_volume_id or snapshot_id, not both")
    source = snap = None
    size_floor = 1
    if source_id:
        source = fly.volumes.get(source_id)
        if source is None or source.app != app or source.state == "pending_destroy":
            raise ApiError(400, f"source volume {source_id!r} not found")
        size_floor = source.size_gb
        region = check_region(body.get("region") or source.region)
        name = body.get("name") or source.name
        if source.region in fly.outages:
            raise ApiError(503, f"region {source.region} is unavailable (local outage)")
    else:
        if snap_id:
            snap = fly.snapshots.get(snap_id)
            if snap is None or snap.app != app:
                raise ApiError(400, f"snapshot {snap_id!r} not found")
            if snap.status != "created":
                raise ApiError(400, f"snapshot {snap_id} is not ready (status {snap.status})")
            size_floor = max(1, math.ceil(snap.volume_size / GIB))
        if not body.get("region"):
            raise ApiError(400, "region is required")
        region = check_region(body["region"])
        name = body.get("name")
    if not isinstance(name, str) or not VOLUME_NAME.match(name):
        raise ApiError(
            400,
            f"invalid volume name {name!r}: lowercase letters, numbers and underscores, at most 30",
        )
    size = _size(body.get("size_gb", size_floor), size_floor)
    retention = _retention(body.get("snapshot_retention", 5))
    vid = volume_id()
    v = VolumeRecord(
        id=vid,
        app=app,
        name=name,
        region=region,
        size_gb=size,
        state="creating",
        created_at=iso_now(),
        encrypted=bool(body.get("encrypted", True)),
        snapshot_retention=retention,
        auto_backup_enabled=bool(body.get("auto_backup_enabled", True)),
        zone=secrets.token_hex(2),
        fstype=str(body.get("fstype") or "ext4"),
    )
    data = fly.volume_data(vid)
    if source is not None:
        await asyncio.to_thread(disk.copy_tree, fly.volume_data(source.id), data)
    elif snap is not None:
        await asyncio.to_thread(disk.restore_tar, fly.snapshot_path(snap.id), data)
    else:
        data.mkdir(parents=True, exist_ok=True)
    # Fly's states: a fork hydrates and a restore restores before it is "created"; the
    # data is already in place, so the volume is mountable throughout.
    transient = "hydrating" if source else "restoring" if snap else "created"
    delay = fly.profile.duration("create", fly.rng) if transient != "created" else 0.0
    v.state = transient if delay > 0 else "created"
    fly.volumes[vid] = v
    fly.save(v)
    if delay > 0:

        async def settle() -> None:
            await asyncio.sleep(delay)
            if v.state == transient:
                v.state = "created"
                fly.save(v)

        fly.track(settle())
    return json_response(volume_to_api(fly, v))


async def get_volume(fly: LocalFly, call: Call) -> Response:
    """Answer ``GET /apps/{app}/volumes/{id}`` (with ``bytes_used``)."""
    v = fly.volume(call.params["app_name"], call.params["volume_id"])
    out = volume_to_api(fly, v)
    (out["bytes_used"],) = await asyncio.to_thread(_bytes_used, fly, [v])
    return json_response(out)


async def update_volume(fly: LocalFly, call: Call) -> Response:
    """Answer ``PUT /apps/{app}/volumes/{id}``: retention and automatic backups."""
    v = fly.volume(call.params["app_name"], call.params["volume_id"])
    body = check_body("UpdateVolumeRequest", await call.json() or {})
    if "snapshot_retention" in body:
        v.snapshot_retention = _retention(body["snapshot_retention"])
    if "auto_backup_enabled" in body:
        v.auto_backup_enabled = bool(body["auto_backup_enabled"])
    fly.save(v)
    return json_response(volume_to_api(fly, v))


async def extend_volume(fly: LocalFly, call: Call) -> Response:
    """Answer ``PUT .../extend``: grow (never shrink); local directories need no restart."""
    v = fly.volume(call.params["app_name"], call.params["volume_id"])
    body = check_body("ExtendVolumeRequest", await call.json())
    if v.state == "pending_destroy":
        raise ApiError(400, f"volume {v.id} is being destroyed")
    v.size_gb = _size(body.get("size_gb"), v.size_gb + 1)
    fly.save(v)
    return json_response({"volume": volume_to_api(fly, v), "needs_restart": False})


async def destroy_volume(fly: LocalFly, call: Call) -> Response:
    """Answer ``DELETE /apps/{app}/volumes/{id}``: soft delete; refused while attached."""
    v = fly.volume(call.params["app_name"], call.params["volume_id"])
    if v.state == "pending_destroy":
        raise ApiError(404, f"volume {v.id} not found (already destroyed)")
    if v.attached_machine_id:
        raise ApiError(
            412,
            f"volume {v.id} is attached to machine {v.attached_machine_id}; "
            "destroy the machine first",
        )
    v.state = "pending_destroy"
    fly.save(v)
    return json_response(volume_to_api(fly, v))


async def list_snapshots(fly: LocalFly, call: Call) -> Response:
    """Answer ``GET .../snapshots``: oldest first, with digests once they are taken."""
    v = fly.volume(call.params["app_name"], call.params["volume_id"])
    rows = sorted(
        (s for s in fly.snapshots.values() if s.volume_id == v.id),
        key=lambda s: (s.created_at, s.id),
    )
    return json_response(
        [
            {
                "id": s.id,
                "created_at": s.created_at,
                "digest": s.digest,
                "size": s.size,
                "volume_size": s.volume_size,
                "status": s.status,
                "retention_days": s.retention_days,
            }
            for s in rows
        ]
    )


async def create_snapshot(fly: LocalFly, call: Call) -> Response:
    """Answer ``POST .../snapshots``: 200 with no body; the snapshot completes in the background."""
    v = fly.volume(call.params["app_name"], call.params["volume_id"])
    if v.state == "pending_destroy":
        raise ApiError(400, f"volume {v.id} is being destroyed")
    s = SnapshotRecord(
        id=snapshot_id(),
        app=v.app,
        volume_id=v.id,
        created_at=iso_now(),
        status="running",
        volume_size=v.size_gb * GIB,
        retention_days=v.snapshot_retention,
    )
    fly.snapshots[s.id] = s
    fly.save(s)

    async def take() -> None:
        try:
            s.digest, s.size = await asyncio.to_thread(
                disk.write_snapshot, fly.volume_data(v.id), fly.snapshot_path(s.id)
            )
            s.status = "created"
        except OSError:
            s.status = "failed"
        fly.save(s)

    fly.track(take())
    return Response(status_code=200)


def purge_app_data(fly: LocalFly, app: str) -> None:
    """Delete the directories and snapshots of an app's volumes (app deletion)."""
    for v in [v for v in fly.volumes.values() if v.app == app]:
        shutil.rmtree(fly.volume_data(v.id).parent, ignore_errors=True)
        fly.volumes.pop(v.id)
        fly.store.delete(VolumeRecord, v.id)
    for s in [s for s in fly.snapshots.values() if s.app == app]:
        fly.snapshot_path(s.id).unlink(missing_ok=True)
        fly.snapshots.pop(s.id)
        fly.store.delete(SnapshotRecord, s.id)
