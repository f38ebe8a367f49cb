"""The shape of `invoke scale`'s flags, checked before any file or API is read."""

from __future__ import annotations

import pytest

from orchestrator.errors import ConfigError
from orchestrator.scale.request import parse_scale_flags


def test_no_flags_shows_and_flags_become_numbers() -> None:
    assert not parse_scale_flags().changes
    request = parse_scale_flags(
        region=["syd", "dfw", "syd"], count="3", cpu="2", memory="1024", volume_size="2"
    )
    assert request.regions == ("syd", "dfw")
    assert (request.count, request.cpus, request.memory_mb, request.volume_size_gb) == (
        3,
        2,
        1024,
        2,
    )
    assert request.given == ("--count", "--cpu", "--memory", "--volume-size")
    # A negative count parses here; Fly's range is checked with the fleet (spec.edit).
    assert parse_scale_flags(region="syd", count="-1").count == -1


@pytest.mark.parametrize(
    ("flags", "where", "text"),
    [
        ({"region": ["syd"], "count": "three"}, "--count", "expected a whole number"),
        ({"region": ["syd"], "memory": "1gb"}, "--memory", "expected a whole number"),
        ({"count": "2"}, "--region", "the fleet has ams, dfw, syd"),
        ({"vm": "shared-cpu-2x"}, "--region", "--vm changes a region"),
        ({"region": ["syd"], "dry_run": True}, "--dry-run", "--count, --vm, --cpu"),
        ({"region": ["syd"], "destroy_volumes": True}, "--destroy-volumes", "nothing to change"),
        ({"region": [""], "count": "1"}, "--region", "empty"),
    ],
)
def test_bad_shapes_name_the_flag(flags: dict[str, object], where: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_scale_flags(**flags, fleet_regions=("syd", "dfw", "ams"))  # type: ignore[arg-type]
    assert info.value.where == where
    assert text in str(info.value)
    assert "\n" not in str(info.value)
