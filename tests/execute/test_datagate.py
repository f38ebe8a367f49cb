"""The data-health gate end to end: a lagging replica region holds the deploy, named, then fails.

One local Fly (fast profile) with the sample fleet deployed; one dfw machine is made to pull
from the primary once an hour (a config change through the Machines API, as an operator's
`fly machine update` would), records are written, and a deploy must not start its first wave.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rollout.helpers import start_rollout_fleet

from execute.localfleet import APP, LocalFleet, wait_for

V2 = "registry.fly.io/sample-app:v2"


def _set(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def _images(fleet: LocalFleet) -> dict[str, str]:
    return {m["id"]: m["config"]["image"] for m in fleet.machines()}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    """syd and dfw with a machine each at v1, a budget of 1 record / 60 s, and a 3 s hold."""
    local = start_rollout_fleet(tmp_path_factory.mktemp("datagate") / "fleet")
    try:
        # One machine in the primary region and one replica: the least that can lag.
        regions = local.root / "regions"
        _set(regions / "syd.toml", "\ncount = 2\n", "\ncount = 1\n")
        _set(regions / "dfw.toml", "\ncount = 2\n", "\ncount = 1\n")
        _set(regions / "ams.toml", "\ncount = 1\n", "\ncount = 0\n")
        _set(regions / "waves.toml", "rpo_records = 20\n", "rpo_records = 1\n")
        _set(regions / "waves.toml", "rpo_seconds = 5\n", "rpo_seconds = 60\n")
        runtime = local.root.parent / "datagate-invoke.yaml"
        runtime.write_text("orchestrator:\n  lag_timeout: 3\n  poll: 0.2\n")
        first = local.invoke("deploy")
        assert first.returncode == 0, first.stdout + first.stderr
        yield local
    finally:
        local.stop()


def test_a_replica_lagging_beyond_the_rpo_budget_holds_the_wave_then_fails_it(
    fleet: LocalFleet,
) -> None:
    slow = fleet.machines("dfw")[0]
    config = dict(slow["config"])
    config["env"] = {**config.get("env", {}), "SAMPLE_APP_REPLICATE_INTERVAL": "3600"}
    resp = fleet.api("POST", f"/v1/apps/{APP}/machines/{slow['id']}", json={"config": config})
    assert resp.status_code == 200, resp.text

    def answers() -> bool:
        got = fleet.app_request("GET", "/status", machine_id=slow["id"])
        return got.status_code == 200 and got.json().get("replication") is not None

    wait_for(answers, timeout=30, what="the slow dfw machine to start pulling")
    for i in range(3):
        fleet.write_record(f"unreplicated-{i}")
    before = _images(fleet)

    runtime = fleet.root.parent / "datagate-invoke.yaml"
    held = fleet.invoke("-f", str(runtime), "deploy", "--image", V2)
    assert held.returncode == 1, held.stdout + held.stderr
    said = held.stdout + held.stderr
    assert "wave 1 holds: dfw lags the primary by" in said
    assert "dfw lags the primary by 3 record(s)" in said
    assert "RPO budget 1 record(s), 60s" in said
    assert "wave 1 did not start" in said
    # Nothing changed: no machine of any region moved to v2.
    assert _images(fleet) == before
