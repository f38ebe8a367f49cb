"""A fleet with two process groups, an app and a worker, end to end on the local Fly.

fly.toml defines ``[processes]`` ``app`` (the sample app's HTTP server, with the volume and
the service check) and ``worker`` (its consumer of records, gated on a top-level check); the
region file gives the worker its own count with ``[groups.worker]``. Each command goes through
the real ``invoke`` command line and HTTP against a real local Fly; every process is stopped
by PID at the end, even on failure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from execute.localfleet import LocalFleet, wait_for

FLY_TOML = """\
app = "sample-fleet"
primary_region = "syd"

[build]
  image = "registry.fly.io/sample-app:v1"

[processes]
  app = "serve"
  worker = "worker"

[[mounts]]
  source = "data"
  destination = "/app/.data"
  processes = ["app"]

[http_service]
  internal_port = 8080
  processes = ["app"]
  [[http_service.checks]]
    path = "/status"
    interval = "1s"
    timeout = "1s"
    grace_period = "1s"

[checks.consuming]
  type = "http"
  port = 8080
  path = "/status"
  interval = "2s"
  timeout = "1s"
  grace_period = "1s"
  processes = ["worker"]
"""

SYD = """\
role = "primary"
count = 1
max_unavailable = 1

[groups.worker]
count = 1
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    root = tmp_path_factory.mktemp("groups") / "fleet"
    (root / "regions").mkdir(parents=True)
    (root / "fly.toml").write_text(FLY_TOML)
    (root / "regions" / "syd.toml").write_text(SYD)
    # A bake: the metrics gate measures the app group, which serves the traffic.
    (root / "regions" / "waves.toml").write_text('[[wave]]\nregions = ["syd"]\nbake_time = "1s"\n')
    local = LocalFleet.start(root)
    try:
        yield local
    finally:
        local.stop()


def _by_group(fleet: LocalFleet) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for m in fleet.machines("syd"):
        out.setdefault(m["config"]["metadata"]["fly_process_group"], []).append(m)
    return out


def _status_groups(fleet: LocalFleet) -> list[tuple[str, str, bool]]:
    proc = fleet.invoke("status", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(proc.stdout)["regions"]["syd"]["machines"]
    return sorted((r["process_group"], r["release"].split("-")[0], r["healthy"]) for r in rows)


def test_two_groups_deploy_scale_one_group_roll_back_and_show_status_per_group(
    fleet: LocalFleet,
) -> None:
    proc = fleet.invoke("deploy", "--region", "syd")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    groups = _by_group(fleet)
    assert sorted(groups) == ["app", "worker"]
    (app,) = groups["app"]
    (worker,) = groups["worker"]
    # Each group runs its own command (init.cmd) with its own checks; only the app mounts.
    assert app["config"]["init"]["cmd"] == ["serve"]
    assert worker["config"]["init"]["cmd"] == ["worker"]
    assert app["config"]["mounts"]
    assert not worker["config"].get("mounts")
    assert [c["name"] for c in worker["checks"]] == ["consuming"]
    assert all(c["status"] == "passing" for m in (app, worker) for c in m["checks"])
    assert _status_groups(fleet) == [("app", "v1", True), ("worker", "v1", True)]

    # The worker really consumes what the app group keeps.
    seq = fleet.write_record("kept")
    log = fleet.state_dir / "machines" / worker["id"] / "log"
    wait_for(
        lambda: f'consumed record {seq}: "kept"' in log.read_text(),
        timeout=20,
        what="the worker consuming the record",
    )

    # Scaling one group writes its [groups.worker] table and adds a machine to it alone.
    proc = fleet.invoke("scale", "--region", "syd", "--group", "worker", "--count", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[groups.worker]\ncount = 2\n" in (fleet.root / "regions" / "syd.toml").read_text()
    groups = _by_group(fleet)
    assert [m["id"] for m in groups["app"]] == [app["id"]]
    assert len(groups["worker"]) == 2
    assert _status_groups(fleet) == [
        ("app", "v1", True),
        ("worker", "v1", True),
        ("worker", "v1", True),
    ]
    # The show form lists each group, as fly scale show does.
    proc = fleet.invoke("scale", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shown = json.loads(proc.stdout)["groups"]
    assert {name: g["syd"]["observed"]["count"] for name, g in shown.items()} == {
        "app": 1,
        "worker": 2,
    }
    assert all(not g["syd"]["drift"] for g in shown.values())
    proc = fleet.invoke("scale", "--group", "worker", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(json.loads(proc.stdout)["groups"]) == ["worker"]
    proc = fleet.invoke("scale", "--group", "wroker")
    assert proc.returncode == 2
    assert "--group: 'wroker' is not a process group" in proc.stderr

    # A new release rolls through both groups; a rollback brings both back.
    proc = fleet.invoke("deploy", "--region", "syd", "--image", "registry.fly.io/sample-app:v2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _status_groups(fleet) == [
        ("app", "v2", True),
        ("worker", "v2", True),
        ("worker", "v2", True),
    ]
    proc = fleet.invoke("rollback", "--region", "syd")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _status_groups(fleet) == [
        ("app", "v1", True),
        ("worker", "v1", True),
        ("worker", "v1", True),
    ]
    groups = _by_group(fleet)
    assert all(m["config"]["init"]["cmd"] == ["worker"] for m in groups["worker"])
    assert groups["app"][0]["config"]["init"]["cmd"] == ["serve"]

    # A release whose checks fail is stopped at its gate and undone: every group stays on v1.
    proc = fleet.invoke(
        "deploy", "--region", "syd", "--image", "registry.fly.io/sample-app:v3-unhealthy"
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert _status_groups(fleet) == [
        ("app", "v1", True),
        ("worker", "v1", True),
        ("worker", "v1", True),
    ]
    # The status table names each machine by its group.
    proc = fleet.invoke("status")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "app 1" in proc.stdout
    assert "worker 1" in proc.stdout
    assert "worker 2" in proc.stdout

    # Logs of one group: the worker's lines, none of the app's.
    proc = fleet.invoke("logs", "--group", "worker")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    machines = {line.split(" | ", 1)[0].split()[1] for line in proc.stdout.splitlines()}
    assert machines == {m["id"] for m in groups["worker"]}
    assert "sample-app worker v1" in proc.stdout
