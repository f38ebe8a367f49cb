"""What an update changes beyond its release: the env, key by key (plan.changes)."""

from __future__ import annotations

from orchestrator.plan.changes import env_changes
from orchestrator.plan.steps import Step, StepKind
from orchestrator.render.plan import describe_step


def test_only_the_env_keys_that_differ_are_named_with_both_values() -> None:
    observed = {"image": "a:v1", "env": {"PRIMARY_REGION": "dfw", "LOG": "info"}, "restart": {}}
    desired = {"image": "a:v1", "env": {"PRIMARY_REGION": "syd", "LOG": "info", "NEW": "1"}}

    assert env_changes(observed, desired) == {
        "changes": ["env NEW unset → 1", "env PRIMARY_REGION dfw → syd"]
    }
    assert env_changes(desired, desired) == {}


def test_an_update_within_one_release_says_what_changed() -> None:
    step = Step(
        id="syd:machine.update:1",
        kind=StepKind.MACHINE_UPDATE,
        region="syd",
        wave=1,
        machine="m1",
        slot=1,
        params={
            "release": "v1-92d1226d",
            "from_release": "v1-92d1226d",
            "reason": "config",
            "changes": ["env PRIMARY_REGION dfw → syd"],
        },
    )

    assert describe_step(step) == "update m1: env PRIMARY_REGION dfw → syd"
