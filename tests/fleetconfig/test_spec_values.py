"""Durations, max_unavailable and names, as the files and flags spell them."""

from __future__ import annotations

import pytest

from orchestrator.errors import ConfigError
from orchestrator.fleetconfig.values import (
    check_app_name,
    check_image,
    parse_duration,
    resolve_max_unavailable,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("15s", 15.0),
        ("500ms", 0.5),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1h2m3s", 3723.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("300us", 0.0003),
        ("300µs", 0.0003),
        ("2000000ns", 0.002),
        ("0", 0.0),
        ("0s", 0.0),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "x") == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", ["", "15", "s", "-1s", "+1s", "1d", "1 s", " 1s", "1s ", "1S", "1.5.2s", 15, 1.5, True]
)
def test_bad_durations_name_where_and_what(value: object) -> None:
    with pytest.raises(ConfigError) as err:
        parse_duration(value, "regions/waves.toml: defaults.bake_time")
    assert str(err.value).startswith(
        'regions/waves.toml: defaults.bake_time: expected a duration such as "15s", "500ms"'
    )


@pytest.mark.parametrize(
    ("value", "count", "machines"),
    [
        (1, 5, 1),
        (3, 2, 3),
        (2.0, 4, 2),
        (0.33, 2, 1),
        (0.33, 10, 4),
        (0.5, 5, 3),
        (0.5, 4, 2),
        (0.99, 1, 1),
        (0.25, 0, 1),
    ],
)
def test_max_unavailable_counts_and_fractions(value: float, count: int, machines: int) -> None:
    assert resolve_max_unavailable(value, count, "x") == machines


@pytest.mark.parametrize("value", [0, -1, 1.5, "1", True, float("nan"), float("inf")])
def test_bad_max_unavailable(value: object) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_max_unavailable(value, 3, "regions/syd.toml: max_unavailable")
    assert str(err.value).startswith(
        "regions/syd.toml: max_unavailable: expected a whole number of machines (1 or more) "
        "or a fraction of count between 0 and 1"
    )


@pytest.mark.parametrize("name", ["sample-fleet", "a", "app1", "1app", "a" * 63])
def test_good_app_names(name: str) -> None:
    assert check_app_name(name, "fly.toml: app") == name


@pytest.mark.parametrize(
    "name", ["", "-app", "app-", "App", "my_app", "a.b", "a/b", "$(id)", "a b", "a" * 64]
)
def test_bad_app_names(name: str) -> None:
    with pytest.raises(ConfigError, match="not a valid Fly app name"):
        check_app_name(name, "fly.toml: app")


@pytest.mark.parametrize(
    "image",
    [
        "registry.fly.io/sample-app:v1",
        "sample-app",
        "localhost:5000/team/app:2026.1-rc_1",
        "ghcr.io/org/app@sha256:" + "a" * 64,
    ],
)
def test_good_images(image: str) -> None:
    assert check_image(image, "--image") == image


@pytest.mark.parametrize(
    "image", ["", "Sample-App", "app:v1 && rm -rf /", "app:v1;id", "../app", "app:", "a b"]
)
def test_bad_images(image: str) -> None:
    with pytest.raises(ConfigError, match="is not an image reference"):
        check_image(image, "--image")
