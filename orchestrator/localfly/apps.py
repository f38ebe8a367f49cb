"""Apps API and the platform's region list."""

from __future__ import annotations

import shutil
import time
from typing import Any

from starlette.responses import Response

from orchestrator.localfly import lifecycle, secrets
from orchestrator.localfly.core import Call, LocalFly, json_response
from orchestrator.localfly.regions import regions_response
from orchestrator.localfly.state import AppRecord, MachineRecord
from orchestrator.localfly.util import ApiError, app_id, show
from orchestrator.localfly.validate import check_app_name, check_body, check_org
from orchestrator.localfly.volumes import purge_app_data

__all__ = ["app_to_api", "create_app", "delete_app", "get_app", "list_apps", "list_regions"]


def app_to_api(fly: LocalFly, a: AppRecord) -> dict[str, Any]:
    """Return an app as Fly's ``App`` object."""
    machines = [m for m in fly.machines.values() if m.app == a.name and m.state != "destroyed"]
    volumes = [v for v in fly.volumes.values() if v.app == a.name and v.state != "pending_destroy"]
    return {
        "id": a.id,
        "name": a.name,
        "status": "deployed" if any(m.state == "started" for m in machines) else "pending",
        "organization": {"name": a.org_slug, "slug": a.org_slug},
        "machine_count": len(machines),
        "volume_count": len(volumes),
        "network": a.network,
    }


async def list_apps(fly: LocalFly, call: Call) -> Response:
    """Answer ``GET /apps?org_slug=``."""
    org = call.query("org_slug")
    if org:
        check_org(org)
    apps = [
        app_to_api(fly, a)
        for a in sorted(fly.apps.values(), key=lambda a: a.name)
        if not org or a.org_slug == org
    ]
    return json_response({"apps": apps, "total_apps": len(apps)})


async def create_app(fly: LocalFly, call: Call) -> Response:
    """Answer ``POST /apps``: 201 ``{id, created_at}``, 422 ``name_taken``; keyed retry safe."""
    body = check_body("CreateAppRequest", await call.json())
    key = body.get("idempotency_key") or None
    if key:
        for existing in fly.apps.values():
            if existing.idempotency_key == key:
                if body.get("name") not in (None, "", existing.name):
                    raise ApiError(
                        400,
                        f"idempotency_key was used to create app {show(existing.name)}, "
                        f"not {show(body.get('name'))}",
                    )
                return json_response(
                    {"id": existing.id, "created_at": existing.created_at}, status=201
                )
    org = check_org(body.get("org_slug"))
    name = check_app_name(body.get("name") or (f"app-{app_id()[:8]}" if key else None))
    if name in fly.apps:
        raise ApiError(422, f"app name {show(name)} is already taken", fly_status="name_taken")
    a = AppRecord(
        id=app_id(),
        name=name,
        org_slug=org,
        network=str(body.get("network") or "default"),
        created_at=int(time.time() * 1000),
        idempotency_key=key,
    )
    fly.apps[name] = a
    fly.save(a)
    return json_response({"id": a.id, "created_at": a.created_at}, status=201)


async def get_app(fly: LocalFly, call: Call) -> Response:
    """Answer ``GET /apps/{app}``."""
    return json_response(app_to_api(fly, fly.app(call.params["app_name"])))


async def delete_app(fly: LocalFly, call: Call) -> Response:
    """Answer ``DELETE /apps/{app}``: kill its machines, delete its volumes and the app (202)."""
    a = fly.app(call.params["app_name"])
    for m in [m for m in fly.machines.values() if m.app == a.name]:
        lifecycle.cancel_pending(fly, m)
        async with fly.rt(m.id).lock:
            await lifecycle.halt(fly, m, "destroyed", sig=9)
        shutil.rmtree(fly.machine_dir(m.id), ignore_errors=True)
        fly.machines.pop(m.id)
        fly.runtime.pop(m.id, None)
        fly.store.delete(MachineRecord, m.id)
    purge_app_data(fly, a.name)
    secrets.store(fly).forget(a.name)
    fly.apps.pop(a.name)
    fly.store.delete(AppRecord, a.name)
    return Response(status_code=202)


async def list_regions(fly: LocalFly, call: Call) -> Response:
    """Answer ``GET /platform/regions``."""
    return json_response(regions_response())
