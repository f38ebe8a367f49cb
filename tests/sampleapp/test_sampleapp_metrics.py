"""/metrics: what a metrics gate reads (request counts by status, latency histogram, process)."""

from __future__ import annotations

import math

import psutil

from .harness import AppProcess, Launcher

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def requests(samples: Samples, status: str, path: str) -> float:
    """Return ``http_requests_total{status,path}`` (0 when the series does not exist yet)."""
    return samples.get(
        ("http_requests_total", frozenset({("status", status), ("path", path)})), 0.0
    )


def buckets(samples: Samples, path: str) -> list[tuple[float, float]]:
    """Return the (le, cumulative count) pairs of a path's latency histogram, by le."""
    found = []
    for (name, labels), value in samples.items():
        label = dict(labels)
        if name == "http_request_duration_seconds_bucket" and label["path"] == path:
            found.append((float(label["le"]), value))
    return sorted(found)


def test_three_requests_count_three(launcher: Launcher) -> None:
    app = launcher.start()
    for _ in range(3):
        assert app.get("/status").status_code == 200

    samples = app.scrape()

    assert requests(samples, "200", "/status") == 3
    hist = buckets(samples, "/status")
    assert hist[-1] == (math.inf, 3)
    assert [count for _, count in hist] == sorted(count for _, count in hist)
    path = frozenset({("path", "/status")})
    assert samples[("http_request_duration_seconds_count", path)] == 3
    assert 0 < samples[("http_request_duration_seconds_sum", path)] < 3
    # Every request counts, the scrape too (it shows in the next one).
    assert requests(app.scrape(), "200", "/metrics") == 1


def test_process_and_app_metrics(launcher: Launcher) -> None:
    app = launcher.start(region="syd", release="v4")
    app.write("a")
    app.write("b")

    before = psutil.Process(app.proc.pid).memory_info().rss
    samples = app.scrape()
    after = psutil.Process(app.proc.pid).memory_info().rss

    assert samples[("process_cpu_seconds_total", frozenset())] > 0
    # The memory a gate reads is the process's own, as the OS counts it (the scrape itself
    # may move it a little); how much that is belongs to bench/sampleapp.py.
    reported = samples[("process_resident_memory_bytes", frozenset())]
    assert 0.9 * min(before, after) <= reported <= 1.1 * max(before, after)
    assert samples[("process_start_time_seconds", frozenset())] > 1e9
    assert samples[("app_last_seq", frozenset())] == 2
    info = next(dict(labels) for (name, labels) in samples if name == "app_info")
    assert {"region": "syd", "release": "v4", "role": "primary"}.items() <= info.items()
    assert requests(samples, "201", "/records") == 2


def error_share(app: AppProcess, path: str, n: int) -> list[int]:
    """GET a path n times; return the status codes."""
    return [app.get(path).status_code for _ in range(n)]


def test_error_rate_switch_shows_up_as_500s(launcher: Launcher) -> None:
    app = launcher.start(env={"SAMPLE_APP_ERROR_RATE": "0.3"})

    hello = error_share(app, "/", 10)
    reads = error_share(app, "/records", 10)
    health = error_share(app, "/status", 5)

    # Exactly the configured share, so a gate's error rate is predictable.
    assert hello.count(500) + reads.count(500) == 6
    assert health == [200] * 5
    samples = app.scrape()
    assert requests(samples, "500", "/") == hello.count(500)
    assert requests(samples, "200", "/") == hello.count(200)
    assert requests(samples, "500", "/records") == reads.count(500)
    assert requests(samples, "200", "/status") == 5


def test_full_error_rate_fails_reads_but_not_writes(launcher: Launcher) -> None:
    app = launcher.start(env={"SAMPLE_APP_ERROR_RATE": "1"})

    assert error_share(app, "/", 3) == [500] * 3
    assert error_share(app, "/records", 3) == [500] * 3
    assert app.write("still accepted")["seq"] == 1
    assert requests(app.scrape(), "500", "/") == 3
