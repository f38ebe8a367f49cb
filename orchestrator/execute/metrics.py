"""Judge a bake window from the app's ``/metrics``: error rate and p95 latency from counter deltas.

Pure functions, no I/O: the metrics gate (`orchestrator.execute.gates.metrics_gate`) scrapes each
machine of the region several times over the bake window and hands the texts here.

- `parse_scrape` reads one Prometheus text exposition (with ``prometheus_client``'s parser) into a
  `Scrape`: requests and 5xx answers (``http_requests_total``, summed over paths), the latency
  histogram (``http_request_duration_seconds``, summed over paths) and the process start time.
- `Window.add` accumulates the increase between two scrapes of one machine. Counters restart at
  zero when the process restarts (``process_start_time_seconds`` changed, or a counter went
  down); then the later scrape's absolute values are the increase, as Prometheus' ``increase()``
  treats a counter reset.
- `judge` turns a window into `MetricsFigures`: error rate = Δ5xx / Δrequests; p95 = the
  smallest bucket bound ``le`` whose Δ count reaches 95 % of Δ``_count`` (docs/sample-app.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["MetricsFigures", "Scrape", "Window", "judge", "p95_seconds", "parse_scrape"]

REQUESTS = "http_requests_total"
DURATION = "http_request_duration_seconds"
START_TIME = "process_start_time_seconds"


@dataclass(frozen=True, slots=True)
class Scrape:
    """One machine's request counters at one moment.

    Attributes:
        machine_id: the machine scraped.
        start_time: ``process_start_time_seconds`` (``None`` when the app does not export it).
        requests: ``http_requests_total`` summed over status and path.
        errors: the part of ``requests`` with a 5xx status.
        count: ``http_request_duration_seconds_count`` summed over paths.
        buckets: ``le`` bound (seconds; ``inf`` for ``+Inf``) → cumulative count, summed over
            paths.
    """

    machine_id: str
    start_time: float | None
    requests: float
    errors: float
    count: float
    buckets: Mapping[float, float]


def parse_scrape(machine_id: str, text: str) -> Scrape:
    """Read one ``/metrics`` answer.

    Raises:
        ValueError: the text is not Prometheus exposition format, or has no
            ``http_requests_total``.
    """
    requests = errors = count = 0.0
    start: float | None = None
    buckets: dict[float, float] = {}
    seen_requests = False
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, float(sample.value)
            if name == REQUESTS:
                seen_requests = True
                requests += value
                if str(labels.get("status", "")).startswith("5"):
                    errors += value
            elif name == f"{DURATION}_bucket":
                le = float(labels.get("le", "+Inf"))
                buckets[le] = buckets.get(le, 0.0) + value
            elif name == f"{DURATION}_count":
                count += value
            elif name == START_TIME:
                start = value
    if not seen_requests:
        raise ValueError(f"no {REQUESTS} in the answer")
    return Scrape(machine_id, start, requests, errors, count, dict(sorted(buckets.items())))


def _restarted(before: Scrape, after: Scrape) -> bool:
    moved = (
        before.start_time is not None
        and after.start_time is not None
        and abs(before.start_time - after.start_time) > 1e-3
    )
    return moved or after.requests < before.requests or after.count < before.count


@dataclass(slots=True)
class Window:
    """Increases of the request counters over a bake window, summed over machines.

    Attributes:
        requests: requests answered.
        errors: 5xx answers among them.
        count: latency observations.
        buckets: ``le`` → observations at or under it.
        restarts: counter resets seen (a machine restarted during the window).
        pairs: scrape pairs added.
    """

    requests: float = 0.0
    errors: float = 0.0
    count: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)
    restarts: int = 0
    pairs: int = 0

    def add(self, before: Scrape, after: Scrape) -> None:
        """Add the increase from ``before`` to ``after`` (two scrapes of one machine)."""
        self.pairs += 1
        if _restarted(before, after):
            # Counters began again at zero: everything the later scrape shows is new.
            self.restarts += 1
            base = Scrape(after.machine_id, after.start_time, 0.0, 0.0, 0.0, {})
        else:
            base = before
        self.requests += after.requests - base.requests
        self.errors += after.errors - base.errors
        self.count += after.count - base.count
        for le, value in after.buckets.items():
            delta = value - base.buckets.get(le, 0.0)
            self.buckets[le] = self.buckets.get(le, 0.0) + delta


def p95_seconds(buckets: Mapping[float, float], count: float) -> float | None:
    """Return the smallest bound whose cumulative count reaches 95 % of ``count``.

    ``None`` when nothing was observed; ``inf`` when only the ``+Inf`` bucket gets there.
    """
    if count <= 0:
        return None
    need = 0.95 * count
    for le in sorted(buckets):
        if buckets[le] >= need - 1e-9:
            return le
    return math.inf


@dataclass(frozen=True, slots=True)
class MetricsFigures:
    """What a metrics gate measured over its bake window, and its verdict.

    Attributes:
        region: the region.
        machines: the machines scraped.
        bake_s: the window, seconds.
        requests: requests the app answered in the window (every path, as counted by the app).
        errors: 5xx answers among them.
        error_rate: ``errors / requests`` (0 with no request).
        p95_ms: p95 latency in ms (``None``: nothing observed; ``inf``: above every bucket).
        max_error_rate: the wave's threshold.
        max_p95_ms: the wave's threshold.
        restarts: machines seen restarting during the window.
        traffic_sent: requests the gate itself sent through the proxy.
        traffic_failed: of those, the ones with no answer or a 5xx through the proxy.
        problems: why the gate fails, one phrase each (empty: it passes).
    """

    region: str
    machines: tuple[str, ...]
    bake_s: float
    requests: int
    errors: int
    error_rate: float
    p95_ms: float | None
    max_error_rate: float
    max_p95_ms: float
    restarts: int = 0
    traffic_sent: int = 0
    traffic_failed: int = 0
    problems: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """Tell whether every figure is within its threshold."""
        return not self.problems

    def describe(self) -> str:
        """Return one line: the figures, the thresholds and the verdict."""
        p95 = _ms(self.p95_ms)
        text = (
            f"{self.region}: {self.requests} requests on {len(self.machines)} machine(s) in "
            f"{self.bake_s:g}s: error rate {self.error_rate:.3f} (max {self.max_error_rate:g}), "
            f"p95 {p95} (max {self.max_p95_ms:g} ms)"
        )
        if self.restarts:
            text += f", {self.restarts} restart(s)"
        if self.problems:
            return f"{text}; failed: {'; '.join(self.problems)}"
        return f"{text}; passed"

    def to_json(self) -> dict[str, Any]:
        """Return the figures as JSON-ready values (``p95_ms`` ``inf`` becomes ``null``)."""
        p95 = self.p95_ms
        return {
            "region": self.region,
            "machines": list(self.machines),
            "bake_s": self.bake_s,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 6),
            "p95_ms": None if p95 is None or math.isinf(p95) else round(p95, 3),
            "p95_above_buckets": p95 is not None and math.isinf(p95),
            "max_error_rate": self.max_error_rate,
            "max_p95_ms": self.max_p95_ms,
            "restarts": self.restarts,
            "traffic_sent": self.traffic_sent,
            "traffic_failed": self.traffic_failed,
            "passed": self.passed,
            "problems": list(self.problems),
        }


def _ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "above the largest bucket"
    return f"{value:g} ms"


def judge(
    window: Window,
    *,
    region: str,
    machines: tuple[str, ...],
    bake_s: float,
    max_error_rate: float,
    max_p95_ms: float,
    traffic_sent: int = 0,
    traffic_failed: int = 0,
) -> MetricsFigures:
    """Compare a window with the wave's thresholds."""
    requests = max(0, round(window.requests))
    errors = max(0, round(window.errors))
    rate = errors / requests if requests else 0.0
    p95 = p95_seconds(window.buckets, window.count)
    p95_ms = None if p95 is None else p95 * 1000.0
    problems: list[str] = []
    if requests == 0:
        problems.append("the app counted no request during the bake")
    if rate > max_error_rate:
        problems.append(f"error rate {rate:.3f} > {max_error_rate:g}")
    if p95_ms is not None and p95_ms > max_p95_ms:
        problems.append(f"p95 {_ms(p95_ms)} > {max_p95_ms:g} ms")
    return MetricsFigures(
        region=region,
        machines=machines,
        bake_s=bake_s,
        requests=requests,
        errors=errors,
        error_rate=rate,
        p95_ms=p95_ms,
        max_error_rate=max_error_rate,
        max_p95_ms=max_p95_ms,
        restarts=window.restarts,
        traffic_sent=traffic_sent,
        traffic_failed=traffic_failed,
        problems=tuple(problems),
    )
