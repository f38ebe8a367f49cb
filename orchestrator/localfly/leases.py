"""Machine leases, metadata, events and versions."""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import Response

from orchestrator.localfly.core import Call, LocalFly, json_response
from orchestrator.localfly.machines import new_lease
from orchestrator.localfly.state import MachineRecord
from orchestrator.localfly.util import ApiError, show
from orchestrator.localfly.validate import check_body

__all__ = [
    "acquire_lease",
    "delete_metadata_key",
    "get_lease",
    "get_metadata",
    "get_metadata_key",
    "list_events",
    "list_versions",
    "release_lease",
    "set_metadata_key",
    "update_metadata",
]

DEFAULT_TTL = 30


def _envelope(m: MachineRecord) -> dict[str, Any]:
    assert m.lease is not None
    return {"status": "success", "data": m.lease.to_api()}


def _held(m: MachineRecord) -> bool:
    if m.lease is not None and m.lease.expires_at <= time.time():
        m.lease = None
    return m.lease is not None


async def get_lease(fly: LocalFly, call: Call) -> Response:
    """Answer ``GET .../lease``: the current lease (404 when there is none)."""
    m = fly.machine(call.params["app_name"], call.params["machine_id"])
    if not _held(m):
        raise ApiError(404, f"lease not found for machine {m.id}")
    return json_response(_envelope(m))


async def acquire_lease(fly: LocalFly, call: Call) -> Response:
    """Answer ``POST .../lease``: acquire, or refresh with the current nonce; 409 if held."""
    m = fly.machine(call.params["app_name"], call.params["machine_id"])
    body = await call.json()
    body = check_body("CreateLeaseRequest", {} if body is None else body)
    ttl: Any = body.get("ttl")
    if ttl is None and call.query("ttl") is not None:
        text = call.query("ttl") or ""
        if not text.isdigit():
            raise ApiError(400, f"invalid ttl {show(text)}: seconds")
        ttl = int(text)
    ttl = DEFAULT_TTL if ttl is None else ttl
    if ttl < 1:
        raise ApiError(400, "ttl must be at least 1 second")
    description = str(body.get("description") or "")
    if _held(m):
        assert m.lease is not None
        if call.nonce != m.lease.nonce:
            raise ApiError(
                409,
                f"lease currently held by {m.lease.owner} (machine {m.id}, "
                f"expires at {int(m.lease.expires_at)})",
            )
        m.lease.expires_at = time.time() + ttl
        if description:
            m.lease.description = description
    else:
        new_lease(m, ttl, description)
    fly.save(m)
    return json_response(_envelope(m), status=201)


async def release_lease(fly: LocalFly, call: Call) -> Response:
    """Answer ``DELETE .../lease``: release with the nonce."""
    m = fly.machine(call.params["app_name"], call.params["machine_id"])
    if not call.nonce:
        raise ApiError(400, "fly-machine-lease-nonce header is required")
    if not _held(m):
        raise ApiError(404, f"lease not found for machine {m.id}")
    assert m.lease is not None
    if call.nonce != m.lease.nonce:
        raise ApiError(409, f"lease currently held by {m.lease.owner}; the nonce does not match")
    m.lease = None
    fly.save(m)
    return json_response({"status": "success"})


def _metadata(m: MachineRecord) -> dict[str, str]:
    md = m.config.get("metadata")
    if not isinstance(md, dict):
        md = m.config["metadata"] = {}
    return md


async def get_metadata(fly: LocalFly, call: Call) -> Response:
    """Answer ``GET .../metadata``."""
    m = fly.machine(call.params["app_name"], call.params["machine_id"])
    return json_response(_metadata(m))


async def update_metadata(fly: LocalFly, call: Call) -> Response:
    """Answer ``PATCH .../metadata``: set keys, delete those given as null or ""; 412 when stale."""
    m = fly.machine(call.params["app_name"], call.params["machine_id"])
    body = await call.json()
    if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
        raise ApiError(400, 'body must be {"metadata": {key: value|null}}')
    changes = body.get("metadata", {})
    for key, value in changes.items():
        if not key or not isinstance(value, str | None):
            raise ApiError(400, f"invalid metadata {show(key)}: values are strings or null")
    version = body.get("machine_version")
    if version is not None and not isinstance(version, str):
        raise ApiError(400, "machine_version must be a string")
    fly.check_lease(m, call.nonce)
    if version and version != m.version:
        raise ApiError(412, f"machine {m.id} is at version {m.version}, not {version}")
    md = _metadata(m)
    for key, value in changes.items():
        if value in (None, ""):
            md.pop(key, None)
        else:
            md[key] = value
    fly.set_state(m, m.state)
    return Response(status_code=204)


async def get_metadata_key(fly: LocalFly, call: Call) -> Response:
    """Answer ``GET .../metadata/{key}``."""
    m = fly.machine(call.params["app_name"], call.params["machine_id"])
    value = _metadata(m).get(call.params["key"])
    if value is None:
        raise ApiError(404, f"metadata key {show(call.params['key'])} not found")
    return json_response({"value": value})


async def set_metadata_key(fly: LocalFly, call: Call) -> Response:
    """Answer ``POST .../metadata/{key}`` with ``{"value": ...}``."""
    m = fly.machine(call.params["app_name"], call.params["machine_id"])
    body = check_body("upsertMetadataKeyRequest", await call.json())
    if not isinstance(body.get("value"), str):
        raise ApiError(400, "value is required")
    fly.check_lease(m, call.nonce)
    _metadata(m)[call.params["key"]] = body["value"]
    fly.set_state(m, m.state)
    return Response(status_code=204)


async def delete_metadata_key(fly: LocalFly, call: Call) -> Response:
    """Answer ``DELETE .../metadata/{key}``."""
    m = fly.machine(call.params["app_name"], call.params["machine_id"])
    fly.check_lease(m, call.nonce)
    _metadata(m).pop(call.params["key"], None)
    fly.set_state(m, m.state)
    return Response(status_code=204)


async def list_events(fly: LocalFly, call: Call) -> Response:
    """Answer ``GET .../events?limit=`` newest first (default 20, at most 50)."""
    m = fly.machine(call.params["app_name"], call.params["machine_id"], live=False)
    text = call.query("limit") or "20"
    if not text.isdigit():
        raise ApiError(400, f"invalid limit {show(text)}")
    limit = min(max(int(text), 1), 50)
    return json_response(list(reversed(m.events[-limit:])))


async def list_versions(fly: LocalFly, call: Call) -> Response:
    """Answer ``GET .../versions`` newest first."""
    m = fly.machine(call.params["app_name"], call.params["machine_id"], live=False)
    return json_response(
        [{"version": v["version"], "user_config": v["config"]} for v in reversed(m.versions)]
    )
