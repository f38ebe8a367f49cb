"""Several hosts, one app: project directories with their own journals against ONE local Fly.

Each directory stands for a host (an operator's laptop, a CI runner): its own ``.orchestrator/``
and no local Fly of its own. They reach the shared local Fly the way the tool reaches Fly.io:
``FLY_API_TOKEN``, ``FLY_FLAPS_BASE_URL`` and ``FLY_APP_URL`` (the edge proxy standing in for
``https://<app>.fly.dev``), so these tests drive the Fly.io code path end to end.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.localfly import control

from .localfleet import APP, LocalFleet, copy_fleet, kill_leftovers, lock_holder, wait_for

pytestmark = pytest.mark.timeout(400)


@dataclass
class Host:
    """One project directory acting as a host; runs ``invoke`` against the shared API."""

    name: str
    fleet: LocalFleet
    env: dict[str, str]

    @property
    def root(self) -> Path:
        return self.fleet.root

    def invoke(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.fleet.invoke(*args, env={**self.env, **(env or {})})

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        return self.fleet.spawn(*args, capture=True, env=self.env)


@dataclass
class World:
    """One local Fly and the hosts that share it."""

    endpoint: control.Endpoint
    hosts: dict[str, Host]
    state_dir: Path

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.endpoint.headers, **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.endpoint.api_url}{path}", headers=headers, **kwargs)

    def machines(self, region: str | None = None) -> list[dict[str, Any]]:
        return next(iter(self.hosts.values())).fleet.machines(region)

    def set_faults(self, rules: list[dict[str, Any]]) -> None:
        resp = self.api("PUT", "/_localfly/faults", json={"seed": 0, "rules": rules})
        assert resp.status_code == 200, resp.text

    def clear_faults(self) -> None:
        self.api("DELETE", "/_localfly/faults")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    state_dir = tmp_path / "fly"
    state_dir.mkdir(mode=0o700)
    endpoint = control.ensure_running(state_dir, profile="fast")
    try:
        # On Fly.io the app exists before the first deploy (`fly apps create`).
        resp = httpx.post(
            f"{endpoint.api_url}/v1/apps",
            json={"name": APP, "org_slug": "personal"},
            headers=endpoint.headers,
        )
        assert resp.status_code == 201, resp.text
        env = {
            "FLY_API_TOKEN": endpoint.token,
            "FLY_FLAPS_BASE_URL": endpoint.api_url,
            "FLY_APP_URL": endpoint.proxy_url,
            "ORCHESTRATOR_LOCK_TTL": "6",
        }
        hosts = {
            name: Host(name, LocalFleet(copy_fleet(tmp_path / name), endpoint), env)
            for name in ("a", "b", "c")
        }
        yield World(endpoint, hosts, state_dir)
    finally:
        control.stop(state_dir)
        kill_leftovers(state_dir)


def _json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.stdout.strip(), proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def _runs(host: Host) -> int:
    """Return how many runs the host's journal recorded."""
    path = host.root / ".orchestrator" / "journal.db"
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path)) as db:
        count: int = db.execute("SELECT count(*) FROM releases").fetchone()[0]
    return count


def _images(world: World, region: str) -> set[str]:
    return {m["config"]["image"] for m in world.machines(region)}


def test_two_hosts_deploy_at_once_the_second_is_refused_changing_nothing(world: World) -> None:
    a, b = world.hosts["a"], world.hosts["b"]
    first = a.invoke("deploy", "--region", "syd", "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    machines_before = {m["id"]: m["version"] for m in world.machines()}
    # A's first machine update waits 3 s at Fly, so B surely comes while A holds the lock.
    world.set_faults([{"operation": "Machines_wait", "delay_ms": 3000, "times": 1}])
    try:
        deploying = a.spawn(
            "deploy", "--region", "syd", "--image", "registry.fly.io/sample-app:v2", "--json"
        )
        try:
            wait_for(
                lambda: (
                    (h := lock_holder(a.root, world.endpoint)) is not None
                    and h.pid == deploying.pid
                ),
                timeout=60,
                what="A to take the lock",
            )
            refused = b.invoke(
                "deploy", "--region", "syd", "--image", "registry.fly.io/sample-app:v3", "--json"
            )
            holder_after = lock_holder(a.root, world.endpoint)
            out, err = deploying.communicate(timeout=240)
        finally:
            if deploying.poll() is None:
                deploying.kill()
                deploying.wait()
    finally:
        world.clear_faults()
    # B was refused before A finished, naming A, and exit 1 with one error line.
    assert refused.returncode == 1, refused.stdout + refused.stderr
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, refused.stderr
    assert "is locked: deploy of v2-" in lines[0]
    assert f"by pid {deploying.pid} on " in lines[0]
    assert holder_after is not None
    assert holder_after.pid == deploying.pid
    # A finished its release; nothing of B's is anywhere.
    assert deploying.returncode == 0, out + err
    assert json.loads(out)["outcome"] == "succeeded"
    assert _images(world, "syd") == {"registry.fly.io/sample-app:v2"}
    assert set(machines_before) == {m["id"] for m in world.machines()}
    assert _runs(b) == 0
    assert lock_holder(a.root, world.endpoint) is None


def test_unlock_from_another_host_names_the_holder_and_force_says_what_it_broke(
    world: World,
) -> None:
    a, b = world.hosts["a"], world.hosts["b"]
    free = b.invoke("unlock", "--json")
    assert free.returncode == 0, free.stderr
    assert _json(free)["held"] is False
    world.set_faults([{"operation": "Machines_wait", "delay_ms": 20000, "times": 1}])
    try:
        deploying = a.spawn("deploy", "--region", "syd", "--json")
        try:
            wait_for(
                lambda: (
                    (h := lock_holder(a.root, world.endpoint)) is not None
                    and h.pid == deploying.pid
                ),
                timeout=60,
                what="A to take the lock",
            )
            shown = b.invoke("unlock")
            assert shown.returncode == 0, shown.stderr
            assert "is held" in shown.stdout
            assert "deploy of v1-" in shown.stdout
            assert f"pid {deploying.pid}" in shown.stdout
            broke = b.invoke("unlock", "--force")
            assert broke.returncode == 0, broke.stderr
            assert "broke the deploy lock" in broke.stdout
            assert f"pid {deploying.pid}" in broke.stdout
            assert "--resume" in broke.stdout
            # A's heartbeat finds the lock gone: it stops, naming why, journaled as interrupted.
            out, err = deploying.communicate(timeout=60)
        finally:
            if deploying.poll() is None:
                deploying.kill()
                deploying.wait()
    finally:
        world.clear_faults()
    assert deploying.returncode == 1, out + err
    assert "lost the deploy lock" in err
    assert lock_holder(a.root, world.endpoint) is None
    resumed = a.invoke("deploy", "--resume", "--json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert len(world.machines("syd")) == 2


def _configs(world: World, region: str) -> dict[str, dict[str, Any]]:
    """Return machine id → its config, but for two bookkeeping keys of the metadata.

    A rollback names its predecessor anew, and keeps the launch id the machine has now (a
    deploy's update does not carry the create's launch id, whichever host rolls back).
    """
    out = {}
    for m in world.machines(region):
        config = json.loads(json.dumps(m["config"]))
        config.get("metadata", {}).pop("orch_prev_release", None)
        config.get("metadata", {}).pop("orch_launch_id", None)
        out[m["id"]] = config
    return out


def test_rollback_from_fresh_directories_restores_the_configs_exactly(world: World) -> None:
    a, b, c = world.hosts["a"], world.hosts["b"], world.hosts["c"]
    v1 = a.invoke("deploy", "--region", "syd", "--json")
    assert v1.returncode == 0, v1.stdout + v1.stderr
    at_v1 = _configs(world, "syd")
    v2 = a.invoke("deploy", "--region", "syd", "--image", "registry.fly.io/sample-app:v2", "--json")
    assert v2.returncode == 0, v2.stdout + v2.stderr
    at_v2 = _configs(world, "syd")
    assert at_v2 != at_v1
    # C never deployed: no journal, nothing but the API.
    assert not (c.root / ".orchestrator").exists()
    back = c.invoke("rollback", "--region", "syd", "--json")
    assert back.returncode == 0, back.stdout + back.stderr
    assert _json(back)["release"] == _json(v1)["release"]
    assert _configs(world, "syd") == at_v1
    # B, also fresh, names a release by its tag.
    assert not (b.root / ".orchestrator").exists()
    forward = b.invoke("rollback", "--region", "syd", "--to", "v2", "--json")
    assert forward.returncode == 0, forward.stdout + forward.stderr
    assert _configs(world, "syd") == at_v2
    # And the previous release of what B put back is the one C had put back.
    again = c.invoke("rollback", "--region", "syd", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert _configs(world, "syd") == at_v1


def test_a_deploy_killed_on_a_is_finished_by_b_without_duplicates(world: World) -> None:
    a, b, c = world.hosts["a"], world.hosts["b"], world.hosts["c"]
    killed = a.invoke(
        "deploy",
        "--region",
        "syd",
        "--json",
        env={"ORCH_TEST_KILL_AT": "step_finished:syd:machine.create:1"},
    )
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert len(world.machines("syd")) == 1
    # B has no journal: the run's intent is on Fly.
    resumed = b.invoke("deploy", "--resume", "--json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _json(resumed)["outcome"] == "succeeded"
    machines = world.machines("syd")
    assert sorted(m["config"]["metadata"]["orch_slot"] for m in machines) == ["1", "2"]
    volumes = world.hosts["a"].fleet.volumes("syd")
    assert len(volumes) == 2
    assert {m["config"]["mounts"][0]["volume"] for m in machines} == {v["id"] for v in volumes}
    # A resume from A now finds the run finished elsewhere: nothing to do twice.
    again = a.invoke("deploy", "--resume")
    assert again.returncode == 2, again.stdout + again.stderr
    assert "nothing to resume" in again.stderr
    # Every directory lists the same releases: the killed run and the one that finished it.
    listed = [_json(h.invoke("releases", "--json")) for h in (a, b, c)]
    assert listed[0] == listed[1] == listed[2]
    outcomes = [(r["release"].split("-")[0], r["outcome"]) for r in listed[0]["releases"]]
    assert outcomes == [("v1", "succeeded"), ("v1", "interrupted")]


def test_the_fly_io_path_scales_and_drills_from_another_directory(world: World) -> None:
    a, b = world.hosts["a"], world.hosts["b"]
    first = a.invoke("deploy", "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    scaled = b.invoke("scale", "--region", "dfw", "--count", "3", "--json")
    assert scaled.returncode == 0, scaled.stdout + scaled.stderr
    assert len(world.machines("dfw")) == 3
    # The drill takes dfw down the way it does on Fly.io (cordon and stop), reaches the app
    # through FLY_APP_URL, and brings it back.
    drill = b.invoke("drill", "--region", "dfw", "--json")
    assert drill.returncode == 0, drill.stdout[-3000:] + drill.stderr[-3000:]
    report = _json(drill)
    assert report["verdict"] == "passed", report
    assert report["backend"] == "fly"
    assert "cordoned 3 and stopped 3 machine(s) in dfw" in json.dumps(report)
    assert all(m["state"] == "started" for m in world.machines("dfw"))
    assert lock_holder(a.root, world.endpoint) is None


def _intent(world: World) -> dict[str, Any] | None:
    """Return the run intent recorded on the lock machine, as any host reads it."""
    resp = world.api(
        "GET", f"/v1/apps/{APP}/machines", params={"metadata.orch_role": "deploy-lock"}
    )
    found = [m for m in resp.json() if m["state"] != "destroyed"]
    if not found:
        return None
    text = found[0]["config"]["metadata"].get("orch_run")
    return json.loads(text) if text else None


def _wait_paused(world: World, deploying: subprocess.Popen[str]) -> None:
    def paused() -> bool:
        assert deploying.poll() is None, deploying.communicate()
        intent = _intent(world)
        return intent is not None and intent.get("phase") == "paused"

    wait_for(paused, timeout=120, what="the deploy to pause after syd")


def test_a_paused_wave_is_promoted_or_aborted_from_another_directory(world: World) -> None:
    a, b = world.hosts["a"], world.hosts["b"]
    first = a.invoke("deploy", "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    v2 = "registry.fly.io/sample-app:v2"
    bad = b.invoke("deploy", "--pause-after", "xyz")
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert bad.stderr.startswith("error: --pause-after: unknown region 'xyz'")
    # Nothing to promote while nothing runs.
    idle = b.invoke("promote")
    assert idle.returncode == 2, idle.stdout + idle.stderr
    assert "no deploy of 'sample-fleet' is running" in idle.stderr

    deploying = a.spawn("deploy", "--image", v2, "--pause-after", "syd", "--json")
    try:
        _wait_paused(world, deploying)
        assert _images(world, "syd") == {v2}
        assert _images(world, "dfw") == {"registry.fly.io/sample-app:v1"}
        promoted = b.invoke("promote")
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        assert "goes on after wave 1" in promoted.stdout
        out, err = deploying.communicate(timeout=240)
    finally:
        if deploying.poll() is None:
            deploying.kill()
            deploying.wait()
    assert deploying.returncode == 0, out + err
    assert {r: _images(world, r) for r in ("syd", "dfw", "ams")} == {
        r: {v2} for r in ("syd", "dfw", "ams")
    }

    # This time the pause is in regions/waves.toml, as a team would keep it.
    waves = a.root / "regions" / "waves.toml"
    text = waves.read_text()
    assert '[[wave]]\n  regions = ["syd"]\n' in text
    waves.write_text(
        text.replace(
            '[[wave]]\n  regions = ["syd"]\n', '[[wave]]\n  regions = ["syd"]\n  pause = true\n'
        )
    )
    v3 = "registry.fly.io/sample-app:v3"
    deploying = a.spawn("deploy", "--image", v3, "--json")
    try:
        _wait_paused(world, deploying)
        aborted = b.invoke("abort", "--reason", "canary looks wrong")
        assert aborted.returncode == 0, aborted.stdout + aborted.stderr
        out, err = deploying.communicate(timeout=240)
    finally:
        if deploying.poll() is None:
            deploying.kill()
            deploying.wait()
    # A stopped before wave 2's first step, naming who aborted and why.
    assert deploying.returncode == 1, out + err
    result = json.loads(out)
    assert "aborted by" in result["error"]
    assert "canary looks wrong" in result["error"]
    assert _images(world, "dfw") == {v2}
    assert _images(world, "ams") == {v2}
    assert lock_holder(a.root, world.endpoint) is None


def test_an_app_with_no_public_address_is_gated_on_flys_checks_alone(world: World) -> None:
    a = world.hosts["a"]
    private = {"FLY_APP_URL": "none"}
    plan = a.invoke("plan", "--region", "syd", "--format", "json", env=private)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    notes = json.loads(plan.stdout)["notes"]
    assert any("no public address" in n and "Fly's checks alone" in n for n in notes), notes
    deployed = a.invoke("deploy", "--region", "syd", "--json", env=private)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    steps = {s["id"]: s for s in _json(deployed)["steps"]}
    assert "(no public address: Fly's checks alone)" in steps["syd:gate.health"]["detail"]
    assert "not measured" in steps["syd:gate.metrics"]["detail"]
    assert len(world.machines("syd")) == 2
    # A drill needs the app's address: refused as bad input, nothing changed.
    drill = a.invoke("drill", "--region", "syd", env=private)
    assert drill.returncode == 2, drill.stdout + drill.stderr
    assert drill.stderr.startswith("error: FLY_APP_URL: ")
