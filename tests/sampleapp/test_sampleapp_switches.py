"""The switches that make a release fail its health checks, error, or slow down."""

from __future__ import annotations

import time

import pytest

from .harness import Launcher


def test_fail_health_switch_answers_503(launcher: Launcher) -> None:
    app = launcher.start(env={"SAMPLE_APP_FAIL_HEALTH": "1"})

    resp = app.get("/status")

    assert resp.status_code == 503
    body = resp.json()
    assert body["healthy"] is False
    assert "SAMPLE_APP_FAIL_HEALTH" in body["reason"]
    assert (body["role"], body["region"]) == ("primary", "syd")
    # Only the health check fails; the app still serves.
    assert app.get("/").status_code == 200


def test_unhealthy_image_tag_fails_health(launcher: Launcher) -> None:
    app = launcher.start(release="v3-unhealthy")

    resp = app.get("/status")

    assert resp.status_code == 503
    assert resp.json()["release"] == "v3-unhealthy"


@pytest.mark.parametrize(("region", "expected"), [("dfw", 503), ("syd", 200)])
def test_health_can_fail_in_one_region_only(launcher: Launcher, region: str, expected: int) -> None:
    app = launcher.start(region=region, env={"SAMPLE_APP_FAIL_HEALTH_REGIONS": "dfw"})

    assert app.get("/status").status_code == expected


def test_error_rate_limited_to_other_regions_leaves_this_one_alone(launcher: Launcher) -> None:
    app = launcher.start(
        region="syd",
        env={"SAMPLE_APP_ERROR_RATE": "1", "SAMPLE_APP_ERROR_RATE_REGIONS": "dfw,ams"},
    )

    assert [app.get("/").status_code for _ in range(3)] == [200] * 3


def test_latency_switch_slows_requests_and_shows_in_the_histogram(launcher: Launcher) -> None:
    app = launcher.start(env={"SAMPLE_APP_LATENCY_MS": "200"})

    started = time.monotonic()
    assert app.get("/").status_code == 200
    elapsed = time.monotonic() - started

    assert elapsed >= 0.2
    samples = app.scrape()
    path = frozenset({("path", "/")})
    assert samples[("http_request_duration_seconds_sum", path)] >= 0.2
    below = frozenset({("path", "/"), ("le", "0.15")})
    assert samples[("http_request_duration_seconds_bucket", below)] == 0
