"""The PromQL checks' verdicts, and how a query API's answer is read (pure: no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.execute.promgate import PromEndpoint, judge_query, resolve_endpoint
from orchestrator.fleetconfig.promql import PrometheusSource, PromQuery
from orchestrator.fly.prometheus import read_value as _value
from orchestrator.settings import resolve_settings


def _q(comparison: str = "<=", threshold: float = 0.5, baseline: float | None = 2.0) -> PromQuery:
    return PromQuery("latency", "q", comparison, threshold, 3.0, baseline)


def test_a_value_within_both_bounds_passes_with_its_ratio() -> None:
    result = judge_query(_q(), 0.03, 0.02)
    assert result.problem is None
    assert result.ratio == pytest.approx(1.5)


def test_three_times_the_old_value_fails_the_baseline_under_the_absolute_bound() -> None:
    result = judge_query(_q(), 0.06, 0.02)
    assert result.problem is not None
    assert "3.00x the old release" in result.problem
    assert result.to_json()["passed"] is False


def test_for_a_higher_is_better_check_the_ratio_is_turned_round() -> None:
    # A success share falling from 0.99 to 0.3 is 3.3 times worse.
    result = judge_query(_q(">=", 0.1), 0.3, 0.99)
    assert result.problem is not None
    assert result.ratio == pytest.approx(3.3)


def test_the_absolute_bound_and_no_data_fail_and_a_missing_baseline_is_only_said() -> None:
    assert "is not <= 0.5" in str(judge_query(_q(), 0.7, 0.6).problem)
    assert "no data" in str(judge_query(_q(), None, 0.1).problem)
    quiet = judge_query(_q(), 0.1, None)
    assert quiet.problem is None
    assert quiet.note is not None


def test_answers_are_read_as_one_value() -> None:
    vector = {"status": "success", "data": {"resultType": "vector", "result": []}}
    assert _value(vector) is None
    vector["data"]["result"] = [{"metric": {}, "value": [1.0, "0.25"]}]  # type: ignore[index]
    assert _value(vector) == 0.25
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "NaN"]}}
    assert _value(scalar) is None
    two = {"status": "success", "data": {"resultType": "vector", "result": [{}, {}]}}
    with pytest.raises(ValueError, match="aggregate"):
        _value(two)
    with pytest.raises(ValueError, match="bad"):
        _value({"status": "error", "error": "bad query"})


def test_the_token_never_shows_in_an_endpoints_repr() -> None:
    endpoint = PromEndpoint("https://api.fly.io/prometheus/acme/", {"Authorization": "Bearer s3"})
    assert "s3" not in repr(endpoint)


def test_the_token_goes_to_flys_prometheus_only(tmp_path: Path) -> None:
    (tmp_path / "fly.toml").write_text('app = "sample-fleet"\n')
    settings = resolve_settings(tmp_path, {"FLY_API_TOKEN": "s3cret"})
    fly = resolve_endpoint(settings, PrometheusSource(url="fly", org="acme"))
    assert fly.base_url == "https://api.fly.io/prometheus/acme/"
    assert fly.headers == {"Authorization": "Bearer s3cret"}
    own = resolve_endpoint(settings, PrometheusSource(url="https://prom.example.com"))
    assert own.base_url == "https://prom.example.com/"
    assert own.headers == {}
    with pytest.raises(ConfigError) as caught:
        resolve_endpoint(settings, PrometheusSource(url="local"))
    assert caught.value.where == "regions/waves.toml: prometheus.url"
