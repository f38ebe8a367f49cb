"""Fly region codes, with a suggestion for the near misses people type."""

from __future__ import annotations

import pytest

from orchestrator.errors import ConfigError
from orchestrator.fleetconfig import REGIONS, nearest_region, validate_region
from orchestrator.fleetconfig.regions import RETIRED


def test_documented_regions_and_gateways() -> None:
    assert list(REGIONS) == sorted(REGIONS)
    assert len(REGIONS) == 35  # Fly's 18, and the 17 it retired
    assert len(RETIRED) == 17
    assert RETIRED.issubset(REGIONS)
    assert {c for c, r in REGIONS.items() if not r.gateway} == {"gru", "jnb"}
    assert validate_region("syd", "x").name == "Sydney, Australia"


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        ("syn", "(did you mean syd?)"),
        ("SYD", "(did you mean syd?)"),
        ("sydney", "(did you mean syd, Sydney, Australia?)"),
        ("Dallas", "(did you mean dfw, Dallas, Texas (US)?)"),
        ("amz", "(did you mean ams?)"),
    ],
)
def test_unknown_codes_suggest_a_near_one(code: str, hint: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate_region(code, "--region")
    text = str(err.value)
    assert text.startswith(f"--region: unknown Fly region {code!r} {hint}: known regions are ams,")
    assert text.endswith("syd, yyz")


def test_non_string_code() -> None:
    with pytest.raises(ConfigError, match="expected a region code such as 'syd', got int"):
        validate_region(7, "regions/waves.toml: wave[1].regions")


def test_nearest_region() -> None:
    assert nearest_region("syd", ["ams", "dfw"]) == "dfw"
    assert nearest_region("ams", ["nrt", "iad", "lhr"]) == "lhr"
    assert nearest_region("syd", ["syd"]) is None
