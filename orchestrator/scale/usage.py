"""Measure what tells you to scale: CPU, memory, latency, errors and volume usage per machine.

The app's ``GET /metrics`` (Prometheus text) is read twice through the edge proxy, pinned to
each started machine with ``fly-force-instance-id``, ``window_s`` apart:

- **CPU**: the growth of ``process_cpu_seconds_total`` over the window, as a share of the
  machine's CPUs (100% = every CPU busy);
- **memory**: ``process_resident_memory_bytes`` as a share of the machine's ``memory_mb``;
- **p95 latency** and **error rate**: from ``http_request_duration_seconds`` and
  ``http_requests_total`` since the process started, leaving out ``/metrics`` itself (and the
  health checks' ``/status``, which would drown real traffic on an idle app);
- **volume usage**: the volume's ``bytes_used`` as the volumes list reports it (the local Fly
  reports it too; docs/local-fly.md says how it differs).

Thresholds (:data:`CPU_LIMIT_PCT`, :data:`MEMORY_LIMIT_PCT`, :data:`VOLUME_LIMIT_PCT`) are the
operators' guide's; latency and errors are held against the region's wave thresholds from
``regions/waves.toml``. A machine whose app has no ``/metrics`` is reported without numbers.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.connect import Connection
from orchestrator.fly.models import Machine, Volume
from orchestrator.fly.proxy import ProxyClient

__all__ = [
    "CPU_LIMIT_PCT",
    "MEMORY_LIMIT_PCT",
    "VOLUME_LIMIT_PCT",
    "MachineUsage",
    "MetricsSample",
    "RegionUsage",
    "measure_usage",
    "parse_metrics",
    "summarize_region",
]

CPU_LIMIT_PCT = 80.0
"""Sustained CPU above this: more CPUs (``--cpu``/``--vm``) or more machines (``--count``)."""
MEMORY_LIMIT_PCT = 85.0
"""Memory above this: more memory (``--memory``); leave room for spikes."""
VOLUME_LIMIT_PCT = 80.0
"""Volume fuller than this: grow it (``--volume-size``) before it fills."""

_IGNORED_PATHS = frozenset({"/metrics", "/status"})
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, slots=True)
class MetricsSample:
    """What one read of ``/metrics`` says.

    Attributes:
        at: monotonic time of the read.
        cpu_seconds: ``process_cpu_seconds_total``, or ``None``.
        rss_bytes: ``process_resident_memory_bytes``, or ``None``.
        requests: requests answered (``/metrics`` and ``/status`` left out).
        errors: of those, answered with a 5xx.
        buckets: cumulative latency buckets ``(upper bound s, count)``, ascending, same paths.
    """

    at: float
    cpu_seconds: float | None
    rss_bytes: float | None
    requests: int
    errors: int
    buckets: tuple[tuple[float, int], ...]


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) or value == math.inf else None


def parse_metrics(text: str, *, at: float = 0.0) -> MetricsSample:
    """Read the numbers :class:`MetricsSample` holds out of Prometheus text (pure)."""
    cpu: float | None = None
    rss: float | None = None
    requests = errors = 0
    buckets: dict[float, int] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if match is None:
            continue
        name, labels_text, value_text = match.group(1), match.group(3) or "", match.group(4)
        value = _float(value_text)
        if value is None:
            continue
        labels = dict(_LABEL.findall(labels_text))
        if labels.get("path") in _IGNORED_PATHS:
            continue
        if name == "process_cpu_seconds_total":
            cpu = value
        elif name == "process_resident_memory_bytes":
            rss = value
        elif name == "http_requests_total":
            requests += int(value)
            if labels.get("status", "").startswith("5"):
                errors += int(value)
        elif name == "http_request_duration_seconds_bucket":
            bound = math.inf if labels.get("le") == "+Inf" else _float(labels.get("le", ""))
            if bound is not None:
                buckets[bound] = buckets.get(bound, 0) + int(value)
    return MetricsSample(
        at=at,
        cpu_seconds=cpu,
        rss_bytes=rss,
        requests=requests,
        errors=errors,
        buckets=tuple(sorted(buckets.items())),
    )


def _p95_ms(buckets: Sequence[tuple[float, int]]) -> float | None:
    """Return the upper bound (ms) of the bucket holding the 95th percentile, or ``None``."""
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    for bound, count in buckets:
        if count >= 0.95 * total:
            return None if math.isinf(bound) else bound * 1000.0
    return None


@dataclass(frozen=True, slots=True)
class MachineUsage:
    """One machine's usage.

    Attributes:
        machine_id: the machine.
        region: its region.
        cpus: its CPUs.
        memory_mb: its memory.
        cpu_pct: CPU use over the window (100 = all its CPUs busy), or ``None``.
        memory_pct: resident memory as a share of ``memory_mb``, or ``None``.
        requests: requests answered since it started (``/metrics``, ``/status`` left out).
        errors: of those, 5xx.
        p95_ms: p95 latency of those (a histogram bucket's upper bound), or ``None``.
        volume_id: its volume, or ``None``.
        volume_used_bytes: bytes used on it, or ``None`` when unknown.
        volume_size_gb: its size.
        error: why there are no numbers (no ``/metrics``, not started...), or ``None``.
    """

    machine_id: str
    region: str
    cpus: int
    memory_mb: int
    cpu_pct: float | None = None
    memory_pct: float | None = None
    requests: int = 0
    errors: int = 0
    p95_ms: float | None = None
    volume_id: str | None = None
    volume_used_bytes: int | None = None
    volume_size_gb: int | None = None
    error: str | None = None

    @property
    def volume_pct(self) -> float | None:
        """Return the volume's use as a share of its size, or ``None``."""
        if self.volume_used_bytes is None or not self.volume_size_gb:
            return None
        return 100.0 * self.volume_used_bytes / (self.volume_size_gb * 1024**3)

    def to_json(self) -> dict[str, Any]:
        """Return the machine's usage as JSON."""
        return {
            "id": self.machine_id,
            "cpus": self.cpus,
            "memory_mb": self.memory_mb,
            "cpu_pct": _round(self.cpu_pct),
            "memory_pct": _round(self.memory_pct),
            "requests": self.requests,
            "errors": self.errors,
            "p95_ms": _round(self.p95_ms),
            "volume": None
            if self.volume_id is None
            else {
                "id": self.volume_id,
                "size_gb": self.volume_size_gb,
                "used_bytes": self.volume_used_bytes,
                "used_pct": _round(self.volume_pct),
            },
            "error": self.error,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


@dataclass(frozen=True, slots=True)
class RegionUsage:
    """A region's usage, the numbers an operator scales on.

    Attributes:
        region: the region.
        machines: each machine's usage.
        cpu_pct: the busiest machine's CPU, or ``None``.
        memory_pct: the fullest machine's memory, or ``None``.
        volume_pct: the fullest volume, or ``None``.
        p95_ms: the slowest machine's p95, or ``None``.
        error_rate: 5xx share of the region's requests, or ``None`` without requests.
        max_p95_ms: the region's wave threshold for p95, if known.
        max_error_rate: the region's wave threshold for the error rate, if known.
        warnings: what crosses a threshold, one line each, with what to do.
    """

    region: str
    machines: tuple[MachineUsage, ...]
    cpu_pct: float | None
    memory_pct: float | None
    volume_pct: float | None
    p95_ms: float | None
    error_rate: float | None
    max_p95_ms: float | None
    max_error_rate: float | None
    warnings: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """Return the region's usage as JSON."""
        return {
            "cpu_pct": _round(self.cpu_pct),
            "memory_pct": _round(self.memory_pct),
            "volume_pct": _round(self.volume_pct),
            "p95_ms": _round(self.p95_ms),
            "error_rate": None if self.error_rate is None else round(self.error_rate, 4),
            "limits": {
                "cpu_pct": CPU_LIMIT_PCT,
                "memory_pct": MEMORY_LIMIT_PCT,
                "volume_pct": VOLUME_LIMIT_PCT,
                "p95_ms": self.max_p95_ms,
                "error_rate": self.max_error_rate,
            },
            "warnings": list(self.warnings),
            "machines": [m.to_json() for m in self.machines],
        }


def _max(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def summarize_region(
    region: str,
    machines: Sequence[MachineUsage],
    *,
    max_p95_ms: float | None = None,
    max_error_rate: float | None = None,
) -> RegionUsage:
    """Roll machines' usage up into the region's, and say what crosses a threshold (pure)."""
    requests = sum(m.requests for m in machines)
    errors = sum(m.errors for m in machines)
    cpu = _max(m.cpu_pct for m in machines)
    memory = _max(m.memory_pct for m in machines)
    volume = _max(m.volume_pct for m in machines)
    p95 = _max(m.p95_ms for m in machines)
    rate = errors / requests if requests else None
    warnings: list[str] = []
    if cpu is not None and cpu > CPU_LIMIT_PCT:
        warnings.append(
            f"CPU {cpu:.0f}% > {CPU_LIMIT_PCT:.0f}%: more CPUs (--cpu, --vm) or machines (--count)"
        )
    if memory is not None and memory > MEMORY_LIMIT_PCT:
        warnings.append(f"memory {memory:.0f}% > {MEMORY_LIMIT_PCT:.0f}%: more memory (--memory)")
    if volume is not None and volume > VOLUME_LIMIT_PCT:
        warnings.append(
            f"volume {volume:.0f}% full > {VOLUME_LIMIT_PCT:.0f}%: grow it (--volume-size)"
        )
    if p95 is not None and max_p95_ms is not None and p95 > max_p95_ms:
        warnings.append(f"p95 {p95:.0f} ms > {max_p95_ms:g} ms: more machines (--count)")
    if rate is not None and max_error_rate is not None and rate > max_error_rate:
        warnings.append(
            f"error rate {rate:.1%} > {max_error_rate:.1%}: read `invoke logs --region "
            f"{region}` before scaling"
        )
    return RegionUsage(
        region=region,
        machines=tuple(machines),
        cpu_pct=cpu,
        memory_pct=memory,
        volume_pct=volume,
        p95_ms=p95,
        error_rate=rate,
        max_p95_ms=max_p95_ms,
        max_error_rate=max_error_rate,
        warnings=tuple(warnings),
    )


async def _read(proxy: ProxyClient, machine_id: str) -> MetricsSample | str:
    answer = await proxy.metrics(machine_id)
    if answer.status_code is None:
        return f"/metrics: {(answer.error or '').split(':')[0]}"  # the exception's name
    if answer.status_code != 200:
        return f"/metrics: HTTP {answer.status_code}"
    return parse_metrics(answer.text, at=time.monotonic())


async def measure_usage(
    conn: Connection,
    machines: Sequence[Machine],
    volumes: Sequence[Volume],
    *,
    window_s: float = 1.0,
    thresholds: Mapping[str, tuple[float, float]] | None = None,
) -> dict[str, RegionUsage]:
    """Sample every started machine's ``/metrics`` twice, ``window_s`` apart; return by region.

    Args:
        conn: the connection (its proxy reaches the app).
        machines: the machines to measure (others than ``started`` get no numbers).
        volumes: the app's volumes, for their usage.
        window_s: seconds between the two samples the CPU share is taken over.
        thresholds: region → (max p95 ms, max error rate) from the region's wave.
    """
    by_volume = {v.id: v for v in volumes}
    started = [m for m in machines if m.state == "started"]
    first = await asyncio.gather(*(_read(conn.probe, m.id) for m in started))
    await asyncio.sleep(window_s)
    second = await asyncio.gather(*(_read(conn.probe, m.id) for m in started))
    samples = {m.id: (a, b) for m, a, b in zip(started, first, second, strict=True)}
    rows: dict[str, list[MachineUsage]] = {}
    for machine in machines:
        guest = machine.config.guest
        volume_id = next((mt.volume for mt in machine.config.mounts if mt.volume), None)
        volume = by_volume.get(volume_id) if volume_id else None
        base: dict[str, Any] = {
            "machine_id": machine.id,
            "region": machine.region,
            "cpus": guest.cpus,
            "memory_mb": guest.memory_mb,
            "volume_id": volume_id,
            "volume_used_bytes": volume.bytes_used if volume is not None else None,
            "volume_size_gb": volume.size_gb if volume is not None else None,
        }
        pair = samples.get(machine.id)
        if pair is None:
            usage = MachineUsage(**base, error=f"not measured: {machine.state}")
        else:
            first_read, second_read = pair
            if isinstance(first_read, str):
                usage = MachineUsage(**base, error=first_read)
            elif isinstance(second_read, str):
                usage = MachineUsage(**base, error=second_read)
            else:
                usage = _usage(base, first_read, second_read)
        rows.setdefault(machine.region, []).append(usage)
    limits = thresholds or {}
    out = {}
    for region in sorted(rows):
        p95_limit, rate_limit = limits.get(region, (None, None))
        out[region] = summarize_region(
            region, rows[region], max_p95_ms=p95_limit, max_error_rate=rate_limit
        )
    return out


def _usage(base: Mapping[str, Any], a: MetricsSample, b: MetricsSample) -> MachineUsage:
    cpu_pct = None
    elapsed = b.at - a.at
    if a.cpu_seconds is not None and b.cpu_seconds is not None and elapsed > 0:
        used = max(0.0, b.cpu_seconds - a.cpu_seconds)
        cpu_pct = 100.0 * used / elapsed / max(1, int(base["cpus"]))
    memory_pct = None
    if b.rss_bytes is not None and base["memory_mb"]:
        memory_pct = 100.0 * b.rss_bytes / (int(base["memory_mb"]) * 1024 * 1024)
    return MachineUsage(
        **base,
        cpu_pct=cpu_pct,
        memory_pct=memory_pct,
        requests=b.requests,
        errors=b.errors,
        p95_ms=_p95_ms(b.buckets),
    )
