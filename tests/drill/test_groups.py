"""Drills and process groups: a fleet of several groups is refused before anything runs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from orchestrator.drill.preflight import check_request
from orchestrator.errors import ConfigError
from orchestrator.fleetconfig.model import DeploySpec, GroupSpec, RegionSpec, VMSize


def _spec(groups: tuple[GroupSpec, ...] = ()) -> DeploySpec:
    vm = VMSize("shared", 1, 256, "shared-cpu-1x")
    regions = {
        code: RegionSpec(code, 1, vm, 1, "primary" if code == "syd" else "replica")
        for code in ("syd", "dfw")
    }
    return DeploySpec(
        app="shop", primary_region="syd", image="shop:v1", regions=regions, groups=groups
    )


def test_a_drill_of_a_fleet_with_two_process_groups_is_refused_with_the_reason() -> None:
    check_request(_spec(), "syd", None)
    spec = _spec()
    spec = replace(spec, groups=(GroupSpec(name="worker", regions=spec.regions),))
    with pytest.raises(ConfigError, match="one process group; this one has app, worker") as err:
        check_request(spec, "syd", None)
    assert err.value.where == "fly.toml: processes"
    assert err.value.exit_code == 2
