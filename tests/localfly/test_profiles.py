"""Latency profiles: pure rules, and a realistic server end to end."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from orchestrator.localfly import control
from orchestrator.localfly.control import Endpoint
from orchestrator.localfly.profiles import get_profile
from orchestrator.localfly.util import parse_duration

from .helpers import (
    ECHO_IMAGES,
    api,
    assert_no_processes,
    machine_pids,
    unique_app,
    wait_for,
)


def test_fast_adds_nothing_and_shrinks_check_intervals() -> None:
    fast = get_profile("fast")
    rng = random.Random(1)
    assert fast.api_latency("syd", rng) == 0.0
    assert fast.duration("update", rng) == 0.0
    assert fast.check_interval(15.0) == 1.0
    assert fast.check_interval(1.0) == 0.2  # the profile's floor
    assert fast.check_grace(5.0) == 0.5


def test_realistic_is_shaped_like_fly_and_scales_with_the_time_factor() -> None:
    rng = random.Random(1)
    real = get_profile("realistic")
    assert all(1.0 <= real.duration("create", rng) <= 3.0 for _ in range(20))
    assert all(2.0 <= real.duration("update", rng) <= 5.0 for _ in range(20))
    assert all(0.5 <= real.duration("start", rng) <= 1.5 for _ in range(20))
    # Farther regions answer slower (from the nearest region, iad).
    assert real.api_latency("syd", random.Random(2)) > real.api_latency("dfw", random.Random(2))
    tenth = get_profile("realistic", 0.1)
    assert all(0.1 <= tenth.duration("create", rng) <= 0.3 for _ in range(20))
    assert tenth.check_interval(15.0) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="time factor"):
        get_profile("realistic", 0)
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("slow")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15s", 15.0), ("500ms", 0.5), ("1m30s", 90.0), ("1.5h", 5400.0), ("0", 0.0), (3, 3.0)],
)
def test_go_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "fast", "1x", "-1s", "s"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_a_realistic_server_takes_time_to_launch(tmp_path: pytest.TempPathFactory) -> None:
    state_dir = tmp_path / "real"  # type: ignore[operator]
    state_dir.mkdir()
    (state_dir / "images.toml").write_text(ECHO_IMAGES)
    endpoint: Endpoint = control.ensure_running(state_dir, profile="realistic", time_factor=0.2)
    try:
        app = unique_app()
        with api(endpoint) as c:
            c.post("/v1/apps", json={"name": app}).raise_for_status()
            body = {"region": "syd", "config": {"image": "sleeper"}}
            created = c.post(f"/v1/apps/{app}/machines", json=body).json()
            assert created["state"] == "created"  # the launch takes 0.2-0.6 s
            wait = c.get(
                f"/v1/apps/{app}/machines/{created['id']}/wait", params={"state": "started"}
            )
            assert wait.status_code == 200
            assert wait.elapsed.total_seconds() >= 0.1
            assert c.get("/_localfly/info").json()["profile"] == "realistic"
        lines = (state_dir / "requests.log").read_text().splitlines()
        creates = [json.loads(x) for x in lines if '"Machines_create"' in x]
        assert creates[0]["duration_ms"] > 3  # syd is ~180 ms away from iad, times 0.2
    finally:
        pids = [endpoint.pid, *machine_pids(state_dir)]
        control.stop(state_dir)
        assert_no_processes(state_dir, pids)


def test_a_cross_region_fork_hydrates_for_the_profile_s_time(
    tmp_path: pytest.TempPathFactory,
) -> None:
    """As on Fly: a fork, across regions or not, is ``hydrating`` before it is ``created``."""
    state_dir = tmp_path / "forks"  # type: ignore[operator]
    state_dir.mkdir()
    endpoint: Endpoint = control.ensure_running(state_dir, profile="realistic", time_factor=0.1)
    try:
        app = unique_app()
        with api(endpoint) as c:
            c.post("/v1/apps", json={"name": app}).raise_for_status()
            vols = f"/v1/apps/{app}/volumes"
            source = c.post(vols, json={"name": "data", "region": "syd", "size_gb": 3}).json()
            assert source["state"] == "created"
            seen: dict[str, list[str]] = {}
            for region in ("ams", "syd"):
                made = wait_for(
                    lambda r=region: _created(c, vols, source["id"], r),
                    timeout=30,
                    what="a fork past the rate limit",
                )
                assert made["state"] == "hydrating"
                states = [made["state"]]

                def settled(vid: str = made["id"], states: list[str] = states) -> bool:
                    state = c.get(f"{vols}/{vid}").json()["state"]
                    states.append(state)
                    return state == "created"

                wait_for(settled, timeout=30, what="the fork to hydrate")
                seen[region] = states
            assert seen["ams"][0] == seen["syd"][0] == "hydrating"
            assert seen["ams"][-1] == seen["syd"][-1] == "created"
    finally:
        pids = [endpoint.pid, *machine_pids(state_dir)]
        control.stop(state_dir)
        assert_no_processes(state_dir, pids)


def _created(c: Any, vols: str, source: str, region: str) -> dict[str, Any] | None:
    resp = c.post(vols, json={"source_volume_id": source, "region": region})
    if resp.status_code == 429:
        return None
    resp.raise_for_status()
    body: dict[str, Any] = resp.json()
    return body
