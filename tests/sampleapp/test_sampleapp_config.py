"""The environment contract: what each variable and switch means (no process needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.sampleapp.config import load_config, release_from_image, resolve_data_dir


@pytest.mark.parametrize(
    ("image", "release"),
    [
        ("registry.fly.io/sample-app:v2", "v2"),
        ("registry.fly.io/sample-app:v3-unhealthy", "v3-unhealthy"),
        ("sample-app:2024.05.01", "2024.05.01"),
        ("localhost:5000/sample-app:v7", "v7"),
        ("localhost:5000/sample-app", "latest"),
        ("registry.fly.io/sample-app:v2@sha256:abc", "v2"),
        ("registry.fly.io/sample-app@sha256:abc", "sha256:abc"),
        ("", "unknown"),
    ],
)
def test_release_is_the_image_tag(image: str, release: str) -> None:
    assert release_from_image(image) == release


def test_data_dir_is_resolved_under_the_local_fly_root(tmp_path: Path) -> None:
    root = str(tmp_path)
    assert resolve_data_dir("/app/.data", root) == tmp_path / "app" / ".data"
    assert resolve_data_dir("", root) == tmp_path / "app" / ".data"
    assert resolve_data_dir("/app/.data", None) == Path("/app/.data")
    assert resolve_data_dir("rel/data", root) == Path("rel/data")


def test_only_the_primary_region_is_a_candidate() -> None:
    assert load_config({"FLY_REGION": "syd", "PRIMARY_REGION": "syd"}).candidate
    assert not load_config({"FLY_REGION": "dfw", "PRIMARY_REGION": "syd"}).candidate
    # A single-region app with no PRIMARY_REGION is its own primary.
    assert load_config({"FLY_REGION": "ams"}).candidate


@pytest.mark.parametrize(
    ("env", "region", "fails"),
    [
        ({}, "syd", False),
        ({"SAMPLE_APP_FAIL_HEALTH": "1"}, "syd", True),
        ({"SAMPLE_APP_FAIL_HEALTH": "0"}, "syd", False),
        ({"FLY_IMAGE_REF": "registry.fly.io/sample-app:v3-unhealthy"}, "syd", True),
        ({"SAMPLE_APP_FAIL_HEALTH_REGIONS": "dfw,ams"}, "dfw", True),
        ({"SAMPLE_APP_FAIL_HEALTH_REGIONS": "dfw,ams"}, "syd", False),
        ({"SAMPLE_APP_FAIL_HEALTH": "1", "SAMPLE_APP_FAIL_HEALTH_REGIONS": "dfw"}, "syd", False),
        (
            {
                "FLY_IMAGE_REF": "registry.fly.io/sample-app:v3-unhealthy",
                "SAMPLE_APP_FAIL_HEALTH_REGIONS": "dfw",
            },
            "syd",
            False,
        ),
    ],
)
def test_health_switches(env: dict[str, str], region: str, fails: bool) -> None:
    config = load_config({"FLY_REGION": region, **env})
    assert (config.health_failure is not None) is fails


def test_error_rate_and_latency_can_be_limited_to_regions() -> None:
    env = {
        "SAMPLE_APP_ERROR_RATE": "0.3",
        "SAMPLE_APP_ERROR_RATE_REGIONS": "dfw",
        "SAMPLE_APP_LATENCY_MS": "250",
        "SAMPLE_APP_LATENCY_REGIONS": "dfw",
    }
    dfw = load_config({"FLY_REGION": "dfw", **env})
    syd = load_config({"FLY_REGION": "syd", **env})
    assert (dfw.error_rate, dfw.latency_s) == (0.3, 0.25)
    assert (syd.error_rate, syd.latency_s) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("SAMPLE_APP_ERROR_RATE", "1.5"),
        ("SAMPLE_APP_ERROR_RATE", "lots"),
        ("SAMPLE_APP_LATENCY_MS", "-1"),
        ("SAMPLE_APP_FAIL_HEALTH", "maybe"),
        ("SAMPLE_APP_REPLICATE_INTERVAL", "0"),
        ("LOCALFLY_PROXY_URL", "127.0.0.1:8080"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_config({name: value})
