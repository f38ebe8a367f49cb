"""Smoke checks, as flyctl's ``--smoke-checks``, end to end with the real ``invoke``.

After a machine starts, it must stay up for the smoke window (flyctl's 10 s, scaled by the
local Fly's profile: 1 s in ``fast``): a release that crash-loops fails its step with the tail of
the machine's output and the wave's ``on_failure`` rolls it back; a machine without checks is
healthy only once the window has passed, not as soon as it is ``started``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from orchestrator.execute.gates import SMOKE_WINDOW_S

from .localfleet import LocalFleet, copy_fleet

pytestmark = pytest.mark.timeout(300)

# The local Fly's fast profile runs checks (and so the smoke window) at a tenth of the time.
FAST_SCALE = 0.1


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    root = copy_fleet(tmp_path_factory.mktemp("smoke") / "fleet")
    fleet = LocalFleet.start(root)
    try:
        done = fleet.invoke("deploy", "--region", "syd")
        assert done.returncode == 0, done.stderr
        yield fleet
    finally:
        fleet.stop()


def _result(stdout: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(stdout)
    return body


def _seconds(step: dict[str, Any]) -> float:
    start = datetime.fromisoformat(step["started_at"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(step["finished_at"].replace("Z", "+00:00"))
    return (end - start).total_seconds()


def test_a_crash_looping_release_is_caught_and_rolled_back(fleet: LocalFleet) -> None:
    before = {m["id"]: m["config"]["image"] for m in fleet.machines("syd")}
    done = fleet.invoke(
        "deploy", "--region", "syd", "--image", "registry.fly.io/sample-app:v2-crashloop", "--json"
    )
    assert done.returncode == 1, done.stderr
    result = _result(done.stdout)
    assert result["outcome"] == "rolled_back"
    assert "smoke checks failed: it keeps crashing" in result["error"]
    # The tail of the machine's own output is in the message.
    assert "crashing on purpose" in result["error"]
    assert result["rollback"]["outcome"] == "succeeded"
    assert {m["id"]: m["config"]["image"] for m in fleet.machines("syd")} == before
    status = fleet.invoke("status", "--region", "syd")
    assert status.returncode == 0, status.stdout


def test_without_checks_a_machine_is_healthy_only_after_the_smoke_window(
    fleet: LocalFleet,
) -> None:
    fly_toml = fleet.root / "fly.toml"
    original = fly_toml.read_text()
    no_checks, n = re.subn(r"\n  \[\[http_service\.checks\]\]\n(    .*\n)+", "\n", original)
    assert n == 1
    fly_toml.write_text(no_checks)
    try:
        done = fleet.invoke(
            "deploy", "--region", "syd", "--image", "registry.fly.io/sample-app:v3", "--json"
        )
        assert done.returncode == 0, done.stderr
        updates = [s for s in _result(done.stdout)["steps"] if s["kind"] == "machine.update"]
        assert len(updates) == 2
        window = SMOKE_WINDOW_S * FAST_SCALE
        for step in updates:
            assert _seconds(step) >= window, step

        # And a crash loop without checks is caught by the smoke checks alone.
        crashed = fleet.invoke(
            "deploy", "--region", "syd", "--image", "registry.fly.io/sample-app:v4-crashloop"
        )
        assert crashed.returncode == 1, crashed.stdout
        assert "smoke checks failed" in crashed.stderr
        assert {m["config"]["image"] for m in fleet.machines("syd")} == {
            "registry.fly.io/sample-app:v3"
        }
    finally:
        fly_toml.write_text(original)
