"""Judging a bake window from /metrics texts: error rate, p95, restarts (pure, no network)."""

from __future__ import annotations

import math

import pytest

from orchestrator.execute.metrics import Window, judge, p95_seconds, parse_scrape

BOUNDS = ("0.001", "0.0025", "0.005", "0.01", "0.5", "+Inf")


def exposition(
    *, ok: int, errors: int, buckets: dict[str, int], start: float = 100.0, path: str = "/"
) -> str:
    """Return a sample-app style ``/metrics`` text (one path, cumulative buckets)."""
    total = ok + errors
    lines = [
        "# HELP http_requests_total HTTP requests answered, by status and path.",
        "# TYPE http_requests_total counter",
        f'http_requests_total{{status="200",path="{path}"}} {ok}',
    ]
    if errors:
        lines.append(f'http_requests_total{{status="500",path="{path}"}} {errors}')
    lines += [
        "# HELP http_request_duration_seconds Time to answer.",
        "# TYPE http_request_duration_seconds histogram",
    ]
    for le in BOUNDS:
        count = total if le == "+Inf" else buckets.get(le, 0)
        lines.append(f'http_request_duration_seconds_bucket{{path="{path}",le="{le}"}} {count}')
    lines += [
        f'http_request_duration_seconds_sum{{path="{path}"}} 0.5',
        f'http_request_duration_seconds_count{{path="{path}"}} {total}',
        "# HELP process_start_time_seconds Start time.",
        "# TYPE process_start_time_seconds gauge",
        f"process_start_time_seconds {start}",
    ]
    return "\n".join(lines) + "\n"


def test_error_rate_and_p95_come_from_the_increase_between_scrapes() -> None:
    before = parse_scrape("m1", exposition(ok=50, errors=0, buckets={"0.001": 50}))
    # 100 more requests: 10 of them 500s; 96 answered within 2.5 ms, 4 within 500 ms.
    after = parse_scrape(
        "m1",
        exposition(
            ok=140,
            errors=10,
            buckets={"0.001": 120, "0.0025": 146, "0.005": 146, "0.01": 146, "0.5": 150},
        ),
    )
    window = Window()
    window.add(before, after)

    figures = judge(
        window, region="syd", machines=("m1",), bake_s=3, max_error_rate=0.05, max_p95_ms=2.0
    )

    assert (figures.requests, figures.errors) == (100, 10)
    assert figures.error_rate == pytest.approx(0.1)
    assert figures.p95_ms == pytest.approx(2.5)
    assert not figures.passed
    assert figures.problems == ("error rate 0.100 > 0.05", "p95 2.5 ms > 2 ms")
    assert "failed" in figures.describe()


def test_a_machine_restarted_in_the_window_counts_from_zero() -> None:
    before = parse_scrape("m1", exposition(ok=500, errors=0, buckets={"0.001": 500}))
    after = parse_scrape("m1", exposition(ok=20, errors=0, buckets={"0.001": 20}, start=200.0))
    window = Window()
    window.add(before, after)

    assert (window.requests, window.restarts) == (20, 1)


def test_machines_and_paths_are_summed() -> None:
    window = Window()
    for mid in ("a", "b"):
        before = parse_scrape(mid, exposition(ok=0, errors=0, buckets={}, path="/status"))
        after = parse_scrape(
            mid, exposition(ok=10, errors=0, buckets={"0.001": 10}, path="/status")
        )
        window.add(before, after)

    figures = judge(
        window, region="dfw", machines=("a", "b"), bake_s=1, max_error_rate=0.05, max_p95_ms=500
    )

    assert figures.requests == 20
    assert figures.passed
    assert figures.to_json()["p95_ms"] == pytest.approx(1.0)


def test_no_request_at_all_fails_the_gate() -> None:
    figures = judge(
        Window(), region="ams", machines=("a",), bake_s=1, max_error_rate=0.05, max_p95_ms=500
    )

    assert figures.p95_ms is None
    assert figures.problems == ("the app counted no request during the bake",)


def test_p95_beyond_every_bucket_is_infinite() -> None:
    assert p95_seconds({0.001: 1.0, math.inf: 100.0}, 100.0) == math.inf
    assert p95_seconds({}, 0.0) is None


def test_a_text_without_request_counters_is_refused() -> None:
    with pytest.raises(ValueError, match="http_requests_total"):
        parse_scrape("m1", "# TYPE up gauge\nup 1\n")
