"""Reading /metrics and deciding what crosses a threshold (pure)."""

from __future__ import annotations

from orchestrator.scale.usage import MachineUsage, parse_metrics, summarize_region

METRICS = """\
# HELP http_requests_total HTTP requests answered, by status and path.
# TYPE http_requests_total counter
http_requests_total{status="200",path="/records"} 90
http_requests_total{status="500",path="/records"} 10
http_requests_total{status="200",path="/status"} 400
http_requests_total{status="200",path="/metrics"} 7
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{path="/records",le="0.001"} 50
http_request_duration_seconds_bucket{path="/records",le="0.01"} 90
http_request_duration_seconds_bucket{path="/records",le="0.1"} 96
http_request_duration_seconds_bucket{path="/records",le="+Inf"} 100
http_request_duration_seconds_bucket{path="/status",le="0.001"} 400
http_request_duration_seconds_bucket{path="/status",le="0.01"} 400
http_request_duration_seconds_bucket{path="/status",le="0.1"} 400
http_request_duration_seconds_bucket{path="/status",le="+Inf"} 400
process_cpu_seconds_total 12.5
process_resident_memory_bytes 134217728
"""


def test_metrics_leave_out_health_checks_and_scrapes() -> None:
    sample = parse_metrics(METRICS, at=3.0)
    assert sample.requests == 100
    assert sample.errors == 10
    assert sample.cpu_seconds == 12.5
    assert sample.rss_bytes == 134217728
    assert sample.buckets[-1] == (float("inf"), 100)


def test_thresholds_turn_into_advice() -> None:
    busy = MachineUsage(
        machine_id="m1",
        region="syd",
        cpus=1,
        memory_mb=256,
        cpu_pct=93.0,
        memory_pct=90.0,
        requests=100,
        errors=10,
        p95_ms=750.0,
        volume_id="vol_1",
        volume_used_bytes=900 * 1024**2,
        volume_size_gb=1,
    )
    calm = MachineUsage(machine_id="m2", region="syd", cpus=1, memory_mb=256, cpu_pct=5.0)
    usage = summarize_region("syd", [busy, calm], max_p95_ms=500, max_error_rate=0.05)
    assert usage.cpu_pct == 93.0
    assert usage.error_rate == 0.1
    assert [w.split(" ")[0] for w in usage.warnings] == ["CPU", "memory", "volume", "p95", "error"]
    assert "--memory" in usage.warnings[1]
    quiet = summarize_region("syd", [calm], max_p95_ms=500, max_error_rate=0.05)
    assert quiet.warnings == ()
    assert quiet.error_rate is None
