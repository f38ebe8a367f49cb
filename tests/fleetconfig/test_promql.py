"""PromQL gates in regions/waves.toml: what a wave's queries become, and every mistake at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ConfigProblems
from orchestrator.fleetconfig import load_spec
from orchestrator.fleetconfig.promql import PrometheusSource, read_prometheus
from orchestrator.plan import build_plan
from orchestrator.plan.fleet import Fleet

LATENCY = (
    'sum(rate(http_request_duration_seconds_sum{region="$region"}[$window])) / '
    'sum(rate(http_request_duration_seconds_count{region="$region"}[$window]))'
)


def _add(fleet: Path, text: str) -> None:
    waves = fleet / "regions" / "waves.toml"
    waves.write_text(waves.read_text() + text)


def test_wave_queries_reach_the_metrics_gate_and_defaults_apply_to_every_other_wave(
    fleet: Path,
) -> None:
    _add(
        fleet,
        f"""
[prometheus]
  url = "fly"
  org = "acme"

[[defaults.query]]
  name = "latency"
  query = '{LATENCY}'
  threshold = 0.5
  window = "2s"
  baseline = 2
""",
    )
    spec = load_spec(fleet)
    assert [len(w.queries) for w in spec.waves] == [1, 1]
    [q] = spec.waves[0].queries
    assert (q.comparison, q.threshold, q.window_s, q.baseline) == ("<=", 0.5, 2.0, 2.0)
    assert read_prometheus(fleet) == PrometheusSource(url="fly", org="acme")
    assert PrometheusSource(url="fly", org="acme").base_url() == (
        "https://api.fly.io/prometheus/acme/"
    )
    plan = build_plan(spec, Fleet(app=spec.app))
    [params] = plan.step("syd:gate.metrics").params["queries"]
    assert params["query"] == LATENCY
    assert params["baseline"] == 2.0


def test_without_queries_the_plan_is_as_before(fleet: Path) -> None:
    spec = load_spec(fleet)
    plan = build_plan(spec, Fleet(app=spec.app))
    assert "queries" not in plan.step("syd:gate.metrics").params
    assert read_prometheus(fleet) is None


def test_every_mistake_in_the_gate_config_is_reported_at_once_naming_the_key(
    fleet: Path,
) -> None:
    _add(
        fleet,
        """
[prometheus]
  url = "ftp://example.com"

[[defaults.query]]
  query = "up"
  comparison = "=="
  threshold = "high"
  window = "1h"
  baseline = 0.5
  colour = "red"
""",
    )
    with pytest.raises(ConfigProblems) as caught:
        load_spec(fleet)
    lines = str(caught.value).splitlines()
    w = "regions/waves.toml: "
    expected = [
        f"{w}defaults.query[1].colour",
        f"{w}defaults.query[1].name",
        f"{w}defaults.query[1].comparison",
        f"{w}defaults.query[1].threshold",
        f"{w}defaults.query[1].window",
        f"{w}defaults.query[1].baseline",
        f"{w}prometheus.url",
    ]
    for where in expected:
        assert sum(line.startswith(where + ":") for line in lines) == 1, (where, lines)
    assert len(lines) == len(expected)


def test_queries_without_a_prometheus_and_a_window_past_a_waves_bake_are_refused(
    fleet: Path,
) -> None:
    waves = fleet / "regions" / "waves.toml"
    text = waves.read_text().replace(
        '  on_failure = "rollback_wave"', '  on_failure = "rollback_wave"\n  bake_time = "1s"'
    )
    waves.write_text(
        text
        + """
[[defaults.query]]
  name = "errors"
  query = "sum(up)"
  threshold = 1
  window = "2s"
"""
    )
    with pytest.raises(ConfigProblems) as caught:
        load_spec(fleet)
    lines = str(caught.value).splitlines()
    assert any(line.startswith("regions/waves.toml: wave[2].bake_time:") for line in lines)
    assert any(line.startswith("regions/waves.toml: prometheus:") for line in lines)
    assert len(lines) == 2
