"""The server as a process: auth, its files, restarts, crashes, and stopping everything."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from orchestrator.localfly import cli, control
from orchestrator.localfly.control import Endpoint

from .helpers import (
    ECHO_IMAGES,
    alive,
    api,
    assert_no_processes,
    echo_config,
    machine_pid,
    machine_pids,
    reap,
    unique_app,
    wait_for,
)


def test_missing_or_wrong_token_is_401(localfly: Endpoint) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": localfly.token}):
        r = httpx.get(f"{localfly.api_url}/v1/apps", headers=headers)
        assert r.status_code == 401
        assert r.json() == {
            "error": "unauthorized: send Authorization: Bearer <token>",
            "status": "unknown",
        }
        assert httpx.get(f"{localfly.api_url}/_localfly/stats", headers=headers).status_code == 401
    ok = httpx.get(
        f"{localfly.api_url}/v1/apps", headers={"Authorization": f"FlyV1 {localfly.token}"}
    )
    assert ok.status_code == 200
    assert localfly.token not in (localfly.state_dir / "requests.log").read_text()
    assert localfly.token not in repr(localfly)


def test_regions_list_flys_gateway_regions(localfly: Endpoint) -> None:
    with api(localfly) as c:
        body = c.get("/v1/platform/regions").json()
    codes = {r["code"] for r in body["regions"] if r["gateway_available"]}
    assert {"syd", "dfw", "ams", "iad", "lhr", "nrt", "sin"} <= codes
    assert body["nearest"] in codes


def test_state_dir_and_token_are_private(localfly: Endpoint) -> None:
    assert stat.S_IMODE(localfly.state_dir.stat().st_mode) == 0o700
    token = localfly.state_dir / "token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert token.read_text().strip() == localfly.token


def _started_machine(endpoint: Endpoint, app: str) -> tuple[str, str, int]:
    with api(endpoint) as c:
        c.post("/v1/apps", json={"name": app}).raise_for_status()
        vol = c.post(f"/v1/apps/{app}/volumes", json={"name": "data", "region": "syd"}).json()
        config = echo_config(mounts=[{"volume": vol["id"], "path": "/app/.data"}])
        m = c.post(f"/v1/apps/{app}/machines", json={"region": "syd", "config": config}).json()
        stopped = c.post(
            f"/v1/apps/{app}/machines",
            json={"region": "syd", "config": echo_config(), "skip_launch": True},
        ).json()
        r = c.get(f"/v1/apps/{app}/machines/{m['id']}/wait", params={"state": "started"})
        assert r.status_code == 200
    pid = machine_pid(endpoint.state_dir, m["id"])
    assert pid is not None
    assert alive(pid)
    return m["id"], stopped["id"], pid


def _wait_exit(pid: int) -> None:
    wait_for(lambda: not alive(pid), timeout=20, what=f"pid {pid} to exit")
    reap(pid)


def test_a_restarted_server_keeps_state_and_restarts_started_machines(
    own_localfly: Endpoint,
) -> None:
    app = unique_app()
    mid, stopped_id, old_pid = _started_machine(own_localfly, app)
    os.kill(own_localfly.pid, signal.SIGTERM)
    _wait_exit(own_localfly.pid)
    assert not alive(old_pid)  # a clean shutdown stops machines too

    again = control.ensure_running(own_localfly.state_dir)
    assert again.pid != own_localfly.pid
    assert again.token == own_localfly.token
    with api(again) as c:
        r = c.get(f"/v1/apps/{app}/machines/{mid}/wait", params={"state": "started", "timeout": 20})
        assert r.status_code == 200
        assert c.get(f"/v1/apps/{app}/machines/{stopped_id}").json()["state"] == "created"
        volumes = c.get(f"/v1/apps/{app}/volumes").json()
        assert [v["attached_machine_id"] for v in volumes] == [mid]
    new_pid = machine_pid(again.state_dir, mid)
    assert new_pid
    assert new_pid != old_pid
    assert alive(new_pid)


def test_after_a_crash_orphans_are_killed_by_pid(own_localfly: Endpoint) -> None:
    app = unique_app()
    mid, _, orphan = _started_machine(own_localfly, app)
    os.kill(own_localfly.pid, signal.SIGKILL)
    _wait_exit(own_localfly.pid)
    assert alive(orphan)  # nobody stopped it

    again = control.ensure_running(own_localfly.state_dir)
    assert not alive(orphan)  # the new server killed it before starting the machine again
    with api(again) as c:
        r = c.get(f"/v1/apps/{app}/machines/{mid}/wait", params={"state": "started", "timeout": 20})
        assert r.status_code == 200
    second = machine_pid(again.state_dir, mid)
    assert second
    assert alive(second)

    os.kill(again.pid, signal.SIGKILL)
    _wait_exit(again.pid)
    summary = control.stop(again.state_dir)
    assert summary.machines_killed == (second,)
    assert not summary.server_stopped
    assert_no_processes(again.state_dir, [second])


def test_serve_in_the_foreground_then_stop_leaves_nothing(tmp_path: Path) -> None:
    state_dir = tmp_path / "fg"
    state_dir.mkdir()
    (state_dir / "images.toml").write_text(ECHO_IMAGES)
    server = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.localfly", "serve", "--state-dir", str(state_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pids = [server.pid]
    try:
        wait_for(lambda: (state_dir / "server.json").exists(), what="server.json")
        endpoint = control.ensure_running(state_dir)
        assert endpoint.pid == server.pid
        _started_machine(endpoint, unique_app())
        pids += machine_pids(state_dir)
        status = control.status(state_dir)
        assert status.running
        assert status.machines == {"created": 1, "started": 1}
        summary = control.stop(state_dir, purge=True)
        assert summary.server_stopped
        assert summary.purged
        assert server.wait(timeout=20) == 0
        assert sorted(p.name for p in state_dir.iterdir()) == ["images.toml"]
        assert_no_processes(state_dir, pids)
    finally:
        if server.poll() is None:  # the test failed before its own stop
            control.stop(state_dir)
            server.kill()
            server.wait()
            assert_no_processes(state_dir, pids + machine_pids(state_dir))


def test_cli_functions_use_the_project_state_dir(tmp_path: Path) -> None:
    (tmp_path / ".localfly").mkdir()
    endpoint = cli.up(tmp_path)
    try:
        assert endpoint.state_dir == tmp_path.resolve() / ".localfly"
        assert cli.up(tmp_path).pid == endpoint.pid  # already running: same server
        assert cli.status(tmp_path).running
    finally:
        summary = cli.down(tmp_path)
    assert summary.server_pid == endpoint.pid
    assert not cli.status(tmp_path).running
    assert_no_processes(endpoint.state_dir, [endpoint.pid])
    with pytest.raises(Exception, match="time factor"):
        cli.up(tmp_path, time_factor=0)
