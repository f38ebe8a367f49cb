"""The ``sim`` profile: the same API over machines that are state only, with no process."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from orchestrator.localfly import control
from orchestrator.localfly.control import Endpoint
from orchestrator.render.local import local_status_view

from .helpers import api, assert_no_processes, machine_pids, unique_app

IMAGE = "registry.fly.io/sample-app:v1"


def _config(image: str = IMAGE, **env: str) -> dict[str, Any]:
    return {
        "image": image,
        "env": env,
        "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256},
        "services": [{"internal_port": 8080, "protocol": "tcp", "ports": [{"port": 80}]}],
        "checks": {
            "status": {
                "type": "http",
                "port": 8080,
                "path": "/status",
                "interval": "2s",
                "timeout": "2s",
                "grace_period": "2s",
            }
        },
    }


@pytest.fixture
def sim_fly(tmp_path: Path) -> Iterator[Endpoint]:
    """Run a ``sim`` local Fly at time factor 0.1 (grace 0.2 s, update 0.2-0.5 s)."""
    state_dir = tmp_path / "sim"
    state_dir.mkdir(mode=0o700)
    endpoint = control.ensure_running(state_dir, profile="sim", time_factor=0.1)
    try:
        yield endpoint
    finally:
        pids = [endpoint.pid, *machine_pids(state_dir)]
        control.stop(state_dir)
        assert_no_processes(state_dir, pids)


def _wait_checks(c: httpx.Client, app: str, mid: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10.0
    while True:
        m: dict[str, Any] = c.get(f"/v1/apps/{app}/machines/{mid}").json()
        if [x["status"] for x in m.get("checks") or []] == [status]:
            return m
        assert time.monotonic() < deadline, m
        time.sleep(0.05)


def test_sim_machines_run_no_process_but_answer_like_the_realistic_profile(
    sim_fly: Endpoint,
) -> None:
    app = unique_app()
    with api(sim_fly) as c:
        c.post("/v1/apps", json={"name": app}).raise_for_status()
        created = c.post(
            f"/v1/apps/{app}/machines", json={"region": "syd", "config": _config()}
        ).json()
        mid = created["id"]
        assert created["state"] == "created"  # the realistic create delay, scaled
        wait = c.get(f"/v1/apps/{app}/machines/{mid}/wait", params={"state": "started"})
        assert wait.status_code == 200, wait.text
        assert wait.elapsed.total_seconds() >= 0.05  # create takes 1-3 s x 0.1

        # Checks: waiting through the grace period, then passing, with no process to probe.
        m = _wait_checks(c, app, mid, "passing")
        assert "simulated" in m["checks"][0]["output"]
        info = c.get("/_localfly/info").json()
        assert info["profile"] == "sim"
        assert info["processes"] == 0
        assert machine_pids(sim_fly.state_dir) == []

        # The edge proxy answers the sample app's /status and /metrics for it.
        proxy = httpx.Client(
            base_url=sim_fly.proxy_url, headers={"host": f"{app}.fly.dev"}, trust_env=False
        )
        with proxy:
            status = proxy.get("/status")
            assert status.status_code == 200
            assert status.headers["fly-machine-id"] == mid
            assert status.json()["release"] == "v1"
            metrics = proxy.get("/metrics", headers={"fly-force-instance-id": mid})
            assert "http_requests_total" in metrics.text

        # An update is timed (2-5 s x 0.1) and its checks start over from the grace period.
        version = c.get(f"/v1/apps/{app}/machines/{mid}").json()["instance_id"]
        t0 = time.monotonic()
        updated = c.post(
            f"/v1/apps/{app}/machines/{mid}",
            json={"config": _config("registry.fly.io/sample-app:v2"), "current_version": version},
        )
        assert updated.status_code == 200, updated.text
        new_version = updated.json()["instance_id"]
        wait = c.get(
            f"/v1/apps/{app}/machines/{mid}/wait",
            params={"state": "started", "version": new_version, "timeout": 10},
        )
        assert wait.status_code == 200, wait.text
        assert time.monotonic() - t0 >= 0.2
        _wait_checks(c, app, mid, "passing")

        # Fault injection applies: an outage fails the checks; stop and destroy work.
        c.post("/_localfly/outage/syd").raise_for_status()
        _wait_checks(c, app, mid, "critical")
        c.delete("/_localfly/outage/syd").raise_for_status()
        assert c.post(f"/v1/apps/{app}/machines/{mid}/stop").status_code == 200
        wait = c.get(f"/v1/apps/{app}/machines/{mid}/wait", params={"state": "stopped"})
        assert wait.status_code == 200, wait.text
        assert c.delete(f"/v1/apps/{app}/machines/{mid}").status_code == 200

        # One primary per app, as the sample app elects it: the first started machine (by id)
        # of the primary region; when it stops, the other one takes over at once.
        pair = [
            c.post(f"/v1/apps/{app}/machines", json={"region": "syd", "config": _config()}).json()
            for _ in range(2)
        ]
        for m in pair:
            _wait_checks(c, app, m["id"], "passing")
        leader, follower = sorted(m["id"] for m in pair)
        with httpx.Client(
            base_url=sim_fly.proxy_url, headers={"host": f"{app}.fly.dev"}, trust_env=False
        ) as proxy:

            def role(machine_id: str) -> str:
                answer = proxy.get("/status", headers={"fly-force-instance-id": machine_id})
                assert answer.status_code == 200, answer.text
                return str(answer.json()["role"])

            assert (role(leader), role(follower)) == ("primary", "replica")
            assert c.post(f"/v1/apps/{app}/machines/{leader}/stop").status_code == 200
            wait = c.get(f"/v1/apps/{app}/machines/{leader}/wait", params={"state": "stopped"})
            assert wait.status_code == 200, wait.text
            assert role(follower) == "primary"


def test_a_sim_machine_asked_to_fail_its_health_fails_its_checks(sim_fly: Endpoint) -> None:
    app = unique_app()
    with api(sim_fly) as c:
        c.post("/v1/apps", json={"name": app}).raise_for_status()
        bad = _config("registry.fly.io/sample-app:v2-unhealthy")
        mid = c.post(f"/v1/apps/{app}/machines", json={"region": "dfw", "config": bad}).json()["id"]
        m = _wait_checks(c, app, mid, "critical")
        assert "503" in m["checks"][0]["output"]


def test_local_status_says_the_machines_are_simulated(sim_fly: Endpoint) -> None:
    status = control.status(sim_fly.state_dir)
    assert status.profile == "sim"
    rendered = _render(local_status_view(status))
    assert "simulated machines" in rendered
    assert "no processes" in rendered


def _render(view: Any) -> str:
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(view)
    return console.export_text()
