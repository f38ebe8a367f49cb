"""A fleet written the way flyctl users write it, deployed end to end on the local Fly.

The fly.toml has a ``[[services]]`` with a TCP service check, ``kill_signal``, no
``primary_region`` (the region file's ``role`` names it), and the app already has a machine
that ``fly deploy`` made. ``invoke plan`` adopts that machine instead of adding a duplicate, and
``invoke deploy`` gives it this tool's config, gated on the service check, over HTTP against a
real local Fly. Every process is stopped by PID at the end, even on failure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from execute.localfleet import APP, LocalFleet

FLY_TOML = """\
app = "sample-fleet"
kill_signal = "SIGTERM"
kill_timeout = 10
console_command = "/bin/sh"

[build]
  image = "registry.fly.io/sample-app:v1"
  dockerfile = "Dockerfile"

[env]
  LOG_LEVEL = "info"

[[services]]
  protocol = "tcp"
  internal_port = "8080"
  [[services.ports]]
    port = 443
    handlers = ["tls", "http"]
  [[services.tcp_checks]]
    interval = 1000
    timeout = "1s"
    grace_period = "1s"
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    root = tmp_path_factory.mktemp("flyctl") / "fleet"
    (root / "regions").mkdir(parents=True)
    (root / "fly.toml").write_text(FLY_TOML)
    (root / "regions" / "syd.toml").write_text('role = "primary"\ncount = 2\n')
    local = LocalFleet.start(root)
    try:
        yield local
    finally:
        local.stop()


def _flyctl_machine(fleet: LocalFleet) -> str:
    """Create a machine as ``fly deploy`` would: flyctl's metadata, none of this tool's."""
    fleet.api("POST", "/v1/apps", json={"name": APP, "org_slug": "personal"})
    config = {
        "image": "registry.fly.io/sample-app:v0",
        "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256},
        "env": {"PRIMARY_REGION": "syd"},
        "metadata": {
            "fly_platform_version": "v2",
            "fly_process_group": "app",
            "fly_release_id": "01JFLYCTLRELEASE",
        },
    }
    resp = fleet.api("POST", f"/v1/apps/{APP}/machines", json={"region": "syd", "config": config})
    resp.raise_for_status()
    machine_id: str = resp.json()["id"]
    return machine_id


def test_a_machine_fly_deploy_made_is_adopted_and_gated_on_its_service_check(
    fleet: LocalFleet,
) -> None:
    theirs = _flyctl_machine(fleet)

    proc = fleet.invoke("plan", "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plan = json.loads(proc.stdout)
    syd = [s for s in plan["steps"] if s["region"] == "syd"]
    updates = [s for s in syd if s["kind"] == "machine.update"]
    creates = [s for s in syd if s["kind"] == "machine.create"]
    assert [(s["machine"], s["params"]["reason"]) for s in updates] == [(theirs, "adopt")]
    assert len(creates) == 1  # count = 2: one adopted, one new, no duplicate
    notes = plan["notes"]
    assert any(n.startswith("fly.toml: console_command: not acted on") for n in notes), notes
    assert any(n.startswith("fly.toml: build.dockerfile: not acted on") for n in notes), notes

    proc = fleet.invoke("deploy", "--region", "syd")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    machines = fleet.machines("syd")
    assert len(machines) == 2
    assert theirs in {m["id"] for m in machines}
    for m in machines:
        config = m["config"]
        assert config["metadata"]["fly_process_group"] == "app"
        assert config["metadata"]["orch_slot"] in {"1", "2"}
        assert config["stop_config"] == {"signal": "SIGTERM", "timeout": "10s"}
        assert config["services"][0]["checks"] == [
            {"type": "tcp", "interval": "1s", "timeout": "1s", "grace_period": "1s"}
        ]
        # The gate waited for the service check, which Fly lists under its own name.
        assert [(c["name"], c["status"]) for c in m["checks"]] == [
            ("servicecheck-00-tcp-8080", "passing")
        ]
    adopted = next(m for m in machines if m["id"] == theirs)
    assert adopted["config"]["metadata"]["orch_slot"] == "1"
    assert adopted["config"]["image"] == "registry.fly.io/sample-app:v1"

    # Status names each machine's process group, as fly status groups them.
    proc = fleet.invoke("status", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(proc.stdout)["regions"]["syd"]["machines"]
    assert [(r["process_group"], r["healthy"]) for r in rows] == [("app", True), ("app", True)]

    # A second plan has nothing left to do: the adopted machine is now managed.
    proc = fleet.invoke("plan", "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["mutating_steps"] == 0
