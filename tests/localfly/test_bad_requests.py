"""Bad requests get Fly's status codes and error bodies, and change nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.localfly.control import Endpoint

from .helpers import api, echo_config, unique_app


def _config(**changes: Any) -> dict[str, Any]:
    config = echo_config()
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


BAD_MACHINES = [
    pytest.param({"region": "xyz", "config": _config()}, 400, "region", id="unknown-region"),
    pytest.param({"region": "syd"}, 400, "config", id="no-config"),
    pytest.param({"region": "syd", "config": _config(image=None)}, 400, "image", id="no-image"),
    pytest.param({"region": "syd", "config": "nope"}, 400, "config", id="config-not-object"),
    pytest.param(
        {"region": "syd", "config": _config(guest={"cpu_kind": "shared", "cpus": 3})},
        400,
        "cpus",
        id="bad-cpus",
    ),
    pytest.param(
        {"region": "syd", "config": _config(guest={"cpus": 1, "memory_mb": 100})},
        400,
        "memory_mb",
        id="bad-memory",
    ),
    pytest.param({"region": "syd", "config": _config(env={"A": 1})}, 400, "env", id="env-int"),
    pytest.param(
        {"region": "syd", "config": _config(restart={"policy": "sometimes"})},
        400,
        "policy",
        id="bad-restart",
    ),
    pytest.param(
        {"region": "syd", "config": _config(checks={"c": {"type": "grpc"}})},
        400,
        "type",
        id="bad-check-type",
    ),
    pytest.param(
        {"region": "syd", "config": _config(checks={"c": {"type": "tcp", "interval": "soon"}})},
        400,
        "interval",
        id="bad-duration",
    ),
    pytest.param(
        {"region": "syd", "config": _config(mounts=[{"volume": "vol_x", "path": "/../etc"}])},
        400,
        "mount",
        id="mount-escapes",
    ),
    pytest.param(
        {"region": "syd", "config": _config(mounts=[{"volume": "vol_nope", "path": "/data"}])},
        400,
        "vol_nope",
        id="unknown-volume",
    ),
    pytest.param(
        {"region": "syd", "config": _config(image="nobody/knows:1")},
        422,
        "image",
        id="unmapped-image",
    ),
    pytest.param(
        {"region": "syd", "config": _config(), "lease_ttl": "x"},
        400,
        "lease_ttl",
        id="bad-lease-ttl",
    ),
]


def _mutations(endpoint: Endpoint, app: str) -> list[dict[str, Any]]:
    lines = (endpoint.state_dir / "requests.log").read_text().splitlines()
    return [
        entry
        for entry in map(json.loads, lines)
        if entry["mutating"] and f"/apps/{app}/" in entry["path"] and entry["status"] < 400
    ]


@pytest.mark.parametrize(("body", "status", "mentions"), BAD_MACHINES)
def test_a_bad_machine_create_changes_nothing(
    localfly: Endpoint, body: dict[str, Any], status: int, mentions: str
) -> None:
    app = unique_app()
    with api(localfly) as c:
        c.post("/v1/apps", json={"name": app}).raise_for_status()
        r = c.post(f"/v1/apps/{app}/machines", json=body)
        assert r.status_code == status, r.text
        assert set(r.json()) == {"error", "status"}
        assert mentions in r.json()["error"]
        assert "Traceback" not in r.text
        assert c.get(f"/v1/apps/{app}/machines", params={"include_deleted": "true"}).json() == []
    assert _mutations(localfly, app) == []


def test_a_volume_must_be_in_its_machines_region(localfly: Endpoint) -> None:
    app = unique_app()
    with api(localfly) as c:
        c.post("/v1/apps", json={"name": app}).raise_for_status()
        vol = c.post(f"/v1/apps/{app}/volumes", json={"name": "data", "region": "ams"}).json()
        config = _config(mounts=[{"volume": vol["id"], "path": "/app/.data"}])
        r = c.post(f"/v1/apps/{app}/machines", json={"region": "syd", "config": config})
        assert r.status_code == 400
        assert r.json()["error"].startswith(f"volume {vol['id']} is in region ams")
        assert c.get(f"/v1/apps/{app}/machines").json() == []
        assert (
            c.get(f"/v1/apps/{app}/volumes/{vol['id']}").json().get("attached_machine_id") is None
        )


def test_other_bad_requests(localfly: Endpoint) -> None:
    app = unique_app()
    with api(localfly) as c:
        assert c.post("/v1/apps", json={"name": "Bad Name"}).status_code == 400
        assert c.post("/v1/apps", json={"name": app}).status_code == 201
        taken = c.post("/v1/apps", json={"name": app})
        assert taken.status_code == 422
        assert taken.json()["status"] == "name_taken"
        bad_volumes = [
            {"name": "data", "region": "nowhere"},
            {"name": "../../etc", "region": "syd"},
            {"name": "data", "region": "syd", "size_gb": 0},
            {"name": "data", "region": "syd", "source_volume_id": "vol_missing"},
            {"name": "data", "region": "syd", "snapshot_id": "vs_missing"},
        ]
        for body in bad_volumes:
            other = unique_app()  # a fresh app each: volume creates are limited per app
            c.post("/v1/apps", json={"name": other}).raise_for_status()
            r = c.post(f"/v1/apps/{other}/volumes", json=body)
            assert r.status_code == 400, body
            assert set(r.json()) == {"error", "status"}
            assert c.get(f"/v1/apps/{other}/volumes").json() == []
        invalid_json = c.post(
            f"/v1/apps/{app}/machines",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        assert invalid_json.status_code == 400
        assert invalid_json.json()["error"] == "request body is not valid JSON"
        assert c.get("/v1/apps/no-such-app/machines").status_code == 404
        assert c.get(f"/v1/apps/{app}/machines/..%2F..%2Fetc").status_code == 404
        assert c.get("/v1/nothing-here").json() == {
            "error": "no such endpoint: GET /v1/nothing-here",
            "status": "unknown",
        }
        assert c.put("/v1/platform/regions").status_code == 405
        wait = c.get(f"/v1/apps/{app}/machines/x/wait", params={"state": "sleeping"})
        assert wait.status_code == 404  # the machine comes first
    assert _mutations(localfly, app) == []


def test_the_local_fly_refuses_what_fly_refuses_in_plain_words(localfly: Endpoint) -> None:
    app = unique_app()
    with api(localfly) as c:
        # An organization that does not exist: no app is made in it.
        resp = c.post("/v1/apps", json={"name": app, "org_slug": "no-such-org"})
        assert resp.status_code == 404, resp.text
        assert "organization" in resp.json()["error"]
        assert c.get("/v1/apps", params={"org_slug": "no-such-org"}).status_code == 404
        assert c.get(f"/v1/apps/{app}").status_code == 404
        # A missing name is shown as JSON shows it, not as a Python repr.
        resp = c.post("/v1/apps", json={"name": None, "org_slug": "personal"})
        assert resp.status_code == 400
        assert "None" not in resp.json()["error"]
        assert "null" in resp.json()["error"]

        c.post("/v1/apps", json={"name": app, "org_slug": "personal"}).raise_for_status()
        made = c.post(
            f"/v1/apps/{app}/machines",
            json={"region": "syd", "config": echo_config(), "skip_launch": True},
        )
        assert made.status_code == 200, made.text
        wait = f"/v1/apps/{app}/machines/{made.json()['id']}/wait"
        for params in (
            {"state": "running"},
            {"state": "started,booting"},
            {"timeout": "1.5"},
            {"timeout": "10s"},
            {"timeout": "61"},
            {"timeout": "0"},
            {"timeout": "-1"},
        ):
            resp = c.get(wait, params=params)
            assert resp.status_code == 400, (params, resp.status_code)
            assert "'" not in resp.json()["error"], resp.json()["error"]
        # Within the document's rules it waits (and times out as Fly does).
        assert c.get(wait, params={"state": "stopped", "timeout": "1"}).status_code in (200, 408)
        missing = c.get(f"/v1/apps/{app}/machines/nope")
        assert missing.status_code == 404
        assert missing.json()["error"] == 'machine "nope" not found'
