"""Machines API: list, create, get, update, destroy (and the JSON a machine is shown as)."""

from __future__ import annotations

import base64
import copy
import json
import time
from typing import Any

from starlette.responses import Response

from orchestrator.localfly import lifecycle, secrets
from orchestrator.localfly.checks import service_check_names
from orchestrator.localfly.core import RUNNING, Call, LocalFly, json_response
from orchestrator.localfly.images import parse_image, resolve_command
from orchestrator.localfly.regions import NEAREST
from orchestrator.localfly.state import LeaseRecord, MachineRecord
from orchestrator.localfly.util import ApiError, iso_now, machine_id, nonce, show, ulid
from orchestrator.localfly.validate import (
    check_body,
    check_config,
    check_machine_name,
    check_region,
)

__all__ = [
    "create_machine",
    "destroy_machine",
    "get_machine",
    "list_machines",
    "machine_to_api",
    "new_lease",
    "update_machine",
]

LIST_STATES = {
    "created",
    "started",
    "stopped",
    "suspended",
    "failed",
    "destroyed",
    "starting",
    "stopping",
    "replacing",
    "destroying",
    "restarting",
}
CURSOR_TTL = 30 * 60


def machine_to_api(
    fly: LocalFly,
    m: MachineRecord,
    *,
    summary: bool = False,
    include_lease: bool = False,
    events: int = 20,
) -> dict[str, Any]:
    """Return a machine as Fly's ``Machine`` object."""
    out: dict[str, Any] = {
        "id": m.id,
        "name": m.name,
        "state": m.state,
        "region": m.region,
        "instance_id": m.version,
        "version": m.version,
        "private_ip": m.private_ip,
        "created_at": m.created_at,
        "updated_at": m.updated_at,
        "image_ref": parse_image(str(m.config.get("image", ""))).to_api(),
        "cordoned": m.cordoned,
    }
    if include_lease and m.lease is not None and m.lease.expires_at > time.time():
        out["lease"] = {
            "owner": m.lease.owner,
            "description": m.lease.description,
            "expires_at": int(m.lease.expires_at),
        }
    if summary:
        return out
    out["config"] = m.config
    out["host_status"] = "unreachable" if m.region in fly.outages else "ok"
    out["events"] = list(reversed(m.events[-events:])) if events else []
    rt = fly.runtime.get(m.id)
    if m.config.get("checks") or service_check_names(m.config):
        results = rt.checks if rt is not None else {}
        out["checks"] = [results[k].to_api() for k in sorted(results)]
    return out


def _private_ip(mid: str) -> str:
    return f"fdaa:0:1:a7b:{mid[:4]}:{mid[4:8]}:{mid[8:12]}:{mid[12:14] or '0'}"


def new_lease(m: MachineRecord, ttl: int, description: str = "") -> LeaseRecord:
    """Give ``m`` a fresh lease for ``ttl`` seconds."""
    m.lease = LeaseRecord(
        nonce=nonce(),
        expires_at=time.time() + ttl,
        owner="local@localfly",
        description=description,
        version=ulid(),
    )
    return m.lease


def _cursor(seq: int, first: float) -> str:
    raw = json.dumps({"after": seq, "first": first}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _uncursor(text: str) -> tuple[int, float]:
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        after, first = int(data["after"]), float(data["first"])
    except (ValueError, KeyError, TypeError):
        raise ApiError(400, "invalid cursor") from None
    if time.time() - first > CURSOR_TTL:
        raise ApiError(400, "cursor expired; list again from the first page")
    return after, first


async def list_machines(fly: LocalFly, call: Call) -> Response:
    """Answer ``GET /apps/{app}/machines`` with Fly's filters and cursor paging."""
    app = fly.app(call.params["app_name"]).name
    region = call.query("region")
    states: set[str] = set()
    for value in call.request.query_params.getlist("state"):
        states.update(s for s in value.split(",") if s)
    if states - LIST_STATES:
        raise ApiError(400, f"invalid state filter: {', '.join(sorted(states - LIST_STATES))}")
    include_deleted = call.flag("include_deleted") or "destroyed" in states
    meta = [
        (k[len("metadata.") :], v)
        for k, v in call.request.query_params.multi_items()
        if k.startswith("metadata.")
    ]
    limit_text = call.query("limit")
    limit = None
    if limit_text is not None:
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
            raise ApiError(400, "limit must be between 1 and 1000")
        limit = int(limit_text)
    after, first = -1, time.time()
    if call.query("cursor"):
        if limit is None:
            raise ApiError(400, "cursor requires limit")
        after, first = _uncursor(call.query("cursor") or "")
    rows = []
    for m in sorted(fly.machines.values(), key=lambda r: r.seq):
        if m.app != app or m.seq <= after:
            continue
        if m.state == "destroyed" and not include_deleted:
            continue
        if region and m.region != region:
            continue
        if states and m.state not in states:
            continue
        md = m.config.get("metadata") or {}
        if any(md.get(k) != v for k, v in meta):
            continue
        rows.append(m)
    headers = {}
    if limit is not None and len(rows) > limit:
        rows = rows[:limit]
        headers["fly-next-cursor"] = _cursor(rows[-1].seq, first)
    body = [
        machine_to_api(
            fly,
            m,
            summary=call.flag("summary"),
            include_lease=call.flag("include_leases"),
            events=5,
        )
        for m in rows
    ]
    return json_response(body, headers=headers)


def _attach_mounts(fly: LocalFly, m: MachineRecord, config: dict[str, Any]) -> list[str]:
    """Check the config's volumes can be mounted by ``m``; return their ids."""
    ids = []
    for mount in config.get("mounts") or []:
        vid = str(mount["volume"])
        v = fly.volumes.get(vid)
        if v is None or v.app != m.app or v.state in ("pending_destroy", "destroyed"):
            raise ApiError(400, f"volume {show(vid)} not found for app {m.app}")
        if v.region != m.region:
            raise ApiError(
                400,
                f"volume {vid} is in region {v.region} but the machine is in {m.region}; "
                "a volume must be in its machine's region",
            )
        if v.attached_machine_id not in (None, m.id):
            raise ApiError(
                409, f"volume {vid} is already attached to machine {v.attached_machine_id}"
            )
        mount.setdefault("name", v.name)
        mount.setdefault("size_gb", v.size_gb)
        mount.setdefault("encrypted", v.encrypted)
        ids.append(vid)
    return ids


async def create_machine(fly: LocalFly, call: Call) -> Response:
    """Answer ``POST /apps/{app}/machines``: record the machine, launch it unless told not to."""
    app = fly.app(call.params["app_name"]).name
    body = check_body("CreateMachineRequest", await call.json())
    region = check_region(body.get("region") or NEAREST)
    config = check_config(copy.deepcopy(body.get("config")))
    resolve_command(str(config["image"]), fly.state_dir)
    name = check_machine_name(body["name"]) if body.get("name") else None
    if name and any(
        x.app == app and x.name == name and x.state != "destroyed" for x in fly.machines.values()
    ):
        raise ApiError(422, f"a machine named {show(name)} already exists", fly_status="name_taken")
    ttl = body.get("lease_ttl")
    if ttl is not None and ttl < 1:
        raise ApiError(400, "lease_ttl must be at least 1 second")
    pinned = secrets.pin(fly, app, body)
    mid = machine_id()
    now = iso_now()
    version = ulid()
    m = MachineRecord(
        id=mid,
        app=app,
        name=name or mid,
        region=region,
        config=config,
        version=version,
        state="created",
        seq=fly.next_seq,
        created_at=now,
        updated_at=now,
        versions=[{"version": version, "config": config}],
        private_ip=_private_ip(mid),
        secrets_version=pinned,
    )
    for vid in _attach_mounts(fly, m, config):
        fly.volumes[vid].attached_machine_id = mid
        fly.save(fly.volumes[vid])
    fly.next_seq += 1
    fly.machines[mid] = m
    lease = new_lease(m, int(ttl), "created with lease_ttl") if ttl else None
    fly.event(m, "launch", "created", source="user")
    fly.save(m)
    if not body.get("skip_launch"):
        lifecycle.schedule(
            fly, m, fly.profile.duration("create", fly.rng), lambda: lifecycle.launch(fly, m)
        )
    out = machine_to_api(fly, m)
    if lease is not None:
        out["nonce"] = lease.nonce
    return json_response(out)


async def get_machine(fly: LocalFly, call: Call) -> Response:
    """Answer ``GET /apps/{app}/machines/{id}`` (destroyed machines are still shown)."""
    m = fly.machine(call.params["app_name"], call.params["machine_id"], live=False)
    return json_response(machine_to_api(fly, m, include_lease=call.flag("include_leases")))


async def update_machine(fly: LocalFly, call: Call) -> Response:
    """Answer ``POST /apps/{app}/machines/{id}``: a new version with the FULL config."""
    m = fly.machine(call.params["app_name"], call.params["machine_id"])
    body = check_body("UpdateMachineRequest", await call.json())
    fly.check_lease(m, call.nonce)
    current = body.get("current_version")
    if current and current != m.version:
        raise ApiError(
            409, f"machine {m.id} version mismatch: current is {m.version}, request had {current}"
        )
    if body.get("region") and body["region"] != m.region:
        raise ApiError(400, f"cannot move machine {m.id} from {m.region} to {body['region']}")
    config = check_config(copy.deepcopy(body.get("config")))
    resolve_command(str(config["image"]), fly.state_dir)
    old = [str(x.get("volume")) for x in m.config.get("mounts") or []]
    new = [str(x.get("volume")) for x in config.get("mounts") or []]
    if old != new:
        raise ApiError(
            400, f"machine {m.id} mounts {old or 'no volume'}; an update must keep the same mounts"
        )
    _attach_mounts(fly, m, config)
    name = check_machine_name(body["name"]) if body.get("name") else m.name
    ttl = body.get("lease_ttl")
    if ttl is not None and ttl < 1:
        raise ApiError(400, "lease_ttl must be at least 1 second")
    pinned = secrets.pin(fly, m.app, body)
    m.name, m.config, m.version, m.restarts = name, config, ulid(), 0
    m.secrets_version = pinned
    m.versions.append({"version": m.version, "config": config})
    del m.versions[:-20]
    lease = new_lease(m, int(ttl), "updated with lease_ttl") if ttl and m.lease is None else None
    fly.event(m, "update", "replacing", source="user")
    lifecycle.cancel_pending(fly, m)
    if body.get("skip_launch"):
        if fly.rt(m.id).proc is not None or m.state in RUNNING:
            fly.set_state(m, "stopping")
            lifecycle.schedule(fly, m, 0, lambda: lifecycle.halt(fly, m, "stopped"))
        else:
            fly.set_state(m, m.state)
    else:
        fly.set_state(m, "replacing")

        async def replace() -> None:
            await lifecycle.halt(fly, m, "replacing")
            await lifecycle.launch(fly, m)

        lifecycle.schedule(fly, m, fly.profile.duration("update", fly.rng), replace)
    out = machine_to_api(fly, m)
    if lease is not None:
        out["nonce"] = lease.nonce
    return json_response(out)


async def destroy_machine(fly: LocalFly, call: Call) -> Response:
    """Answer ``DELETE /apps/{app}/machines/{id}``: kill (with force), forget, keep the volume."""
    m = fly.machine(call.params["app_name"], call.params["machine_id"])
    fly.check_lease(m, call.nonce)
    force = call.flag("force") or call.flag("kill")
    rt = fly.rt(m.id)
    if not force and (m.state in RUNNING or m.state == "stopping" or rt.proc is not None):
        raise ApiError(
            412,
            f"unable to destroy machine {m.id}, not currently stopped or suspended "
            f"(state {m.state}); stop it first or pass force=true",
        )
    lifecycle.cancel_pending(fly, m)
    m.state = "destroying"
    fly.notify(m)
    async with rt.lock:
        await lifecycle.halt(fly, m, "destroying", sig=9 if force else None)
        for v in fly.volumes.values():
            if v.attached_machine_id == m.id:
                v.attached_machine_id = None
                fly.save(v)
        m.lease = None
        fly.event(m, "destroy", "destroyed", source="user")
        fly.set_state(m, "destroyed")
    return json_response({"ok": True})
