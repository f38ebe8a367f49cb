"""Judging a fleet's primary from what its machines say (pure: no fleet needed)."""

from __future__ import annotations

from orchestrator.execute.primaries import assess
from orchestrator.execute.status import FleetStatus, MachineStatus


def _machine(
    mid: str,
    region: str,
    *,
    role: str = "replica",
    follows: str | None = "syd",
    state: str = "started",
    app_status: int | None = 200,
) -> MachineStatus:
    return MachineStatus(
        id=mid,
        name=f"app-{region}-{mid}",
        region=region,
        slot=1,
        state=state,
        version="v1",
        release="v1-abc",
        image="registry.fly.io/sample-app:v1",
        checks_passing=True,
        checks=(),
        has_checks=False,
        role=role,
        app_status=app_status,
        app_error=None if app_status == 200 else "no answer",
        cpu_kind="shared",
        cpus=1,
        memory_mb=256,
        volume_id=None,
        volume_size_gb=None,
        configured_primary=follows,
    )


def test_one_primary_in_the_primary_region_is_writable_and_not_split() -> None:
    view = assess([_machine("a", "syd", role="primary"), _machine("b", "dfw")], expected="syd")
    assert not view.split
    assert view.writable_problem() is None


def test_two_primaries_are_a_split_naming_both() -> None:
    view = assess(
        [_machine("a", "syd", role="primary"), _machine("b", "dfw", role="primary", follows="dfw")],
        expected="syd",
    )
    assert view.split
    text = view.split_description()
    assert "2 machines claim the primary: a (syd), b (dfw)" in text
    assert "PRIMARY_REGION=dfw on b (dfw)" in text
    assert "PRIMARY_REGION=syd on a (syd)" in text


def test_machines_following_different_regions_are_a_split_even_with_one_primary() -> None:
    view = assess(
        [_machine("a", "syd", role="primary"), _machine("b", "dfw", follows="dfw")],
        expected="syd",
    )
    assert view.split
    assert "disagree on the primary region" in view.split_description()


def test_no_primary_or_one_elsewhere_or_down_is_not_writable() -> None:
    none = assess([_machine("a", "syd"), _machine("b", "dfw")], expected="syd")
    assert "no region takes writes" in (none.writable_problem() or "")
    moved = assess([_machine("b", "dfw", role="primary")], expected="syd")
    assert "not in the spec's primary_region syd" in (moved.writable_problem() or "")
    down = assess([_machine("a", "syd", role="primary", app_status=503)], expected="syd")
    assert "is not serving" in (down.writable_problem() or "")


def test_a_stopped_machine_that_last_said_primary_does_not_count() -> None:
    view = assess(
        [
            _machine("a", "syd", role="primary", state="stopped"),
            _machine("b", "syd", role="primary"),
        ],
        expected="syd",
    )
    assert not view.split


def test_status_is_not_healthy_when_split() -> None:
    machines = (
        _machine("a", "syd", role="primary"),
        _machine("b", "dfw", role="primary", follows="dfw"),
    )
    status = FleetStatus(
        "app", "local", {"dfw": machines[1:], "syd": machines[:1]}, expected_primary="syd"
    )
    assert all(m.healthy for m in machines)
    assert not status.healthy
    assert status.split_brain is not None
    assert status.to_json()["split_brain"] == status.split_brain
