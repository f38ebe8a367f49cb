"""Count requests and write them out in the Prometheus text format (version 0.0.4).

Written by hand rather than with prometheus_client: importing that library costs about 80 ms and
a few MB per process, and benchmarks run hundreds of these. The format is small and stable.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "BUCKETS",
    "CONTENT_TYPE",
    "Metrics",
    "cpu_seconds",
    "path_label",
    "resident_memory_bytes",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Upper bounds in seconds, dense between 1 ms and 1 s so a gate can read a p95 in milliseconds.
BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    10.0,
)

# Paths get their own series; anything else is "other" so a scanner cannot blow up the label set.
_KNOWN_PATHS = frozenset({"/", "/status", "/metrics", "/records"})


def path_label(raw_path: str) -> str:
    """Return the ``path`` label for a request target (no query string, unknown → ``other``)."""
    path = raw_path.split("?", 1)[0].split("#", 1)[0]
    return path if path in _KNOWN_PATHS else "other"


def cpu_seconds() -> float:
    """Return the CPU time (user + system) this process has used."""
    times = os.times()
    return times.user + times.system


def resident_memory_bytes() -> int:
    """Return this process's resident set size in bytes."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        # Not Linux: the peak RSS is the best the stdlib offers there.
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


@dataclass(slots=True)
class _Histogram:
    """Cumulative-ready bucket counts for one label set."""

    counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    total: int = 0
    sum: float = 0.0


class Metrics:
    """Hold request counters and latency histograms; thread-safe."""

    def __init__(self) -> None:
        """Start with no series; a series appears with its first request."""
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], int] = {}
        self._durations: dict[str, _Histogram] = {}

    def observe(self, path: str, status: int, seconds: float) -> None:
        """Count one answered request under its path label and status code."""
        key = (str(status), path)
        with self._lock:
            self._requests[key] = self._requests.get(key, 0) + 1
            hist = self._durations.get(path)
            if hist is None:
                hist = self._durations[path] = _Histogram()
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    hist.counts[i] += 1
                    break
            hist.total += 1
            hist.sum += seconds

    def request_count(self, path: str, status: int) -> int:
        """Return how many requests to a path were answered with a status."""
        with self._lock:
            return self._requests.get((str(status), path), 0)

    def render(
        self,
        *,
        gauges: Mapping[str, tuple[str, float | None]],
        info: Mapping[str, str],
        start_time: float,
    ) -> str:
        """Return the exposition text.

        ``gauges`` maps a metric name to (help text, value); a None value leaves the metric
        out. ``info`` becomes the labels of ``app_info``.
        """
        with self._lock:
            requests = sorted(self._requests.items(), key=lambda kv: (kv[0][1], kv[0][0]))
            durations = sorted(
                (path, list(h.counts), h.total, h.sum) for path, h in self._durations.items()
            )
        lines: list[str] = []
        _family(
            lines, "http_requests_total", "counter", "HTTP requests answered, by status and path."
        )
        for (status, path), count in requests:
            lines.append(f'http_requests_total{{status="{status}",path="{_esc(path)}"}} {count}')
        name = "http_request_duration_seconds"
        _family(lines, name, "histogram", "Time from reading a request to its last byte sent.")
        for path, counts, total, total_seconds in durations:
            label = f'path="{_esc(path)}"'
            running = 0
            for bound, count in zip(BUCKETS, counts, strict=True):
                running += count
                lines.append(f'{name}_bucket{{{label},le="{bound!r}"}} {running}')
            lines.append(f'{name}_bucket{{{label},le="+Inf"}} {total}')
            lines.append(f"{name}_sum{{{label}}} {total_seconds!r}")
            lines.append(f"{name}_count{{{label}}} {total}")
        _family(lines, "process_cpu_seconds_total", "counter", "User and system CPU time, seconds.")
        lines.append(f"process_cpu_seconds_total {cpu_seconds()!r}")
        _family(lines, "process_resident_memory_bytes", "gauge", "Resident memory size, bytes.")
        lines.append(f"process_resident_memory_bytes {resident_memory_bytes()}")
        _family(
            lines, "process_start_time_seconds", "gauge", "Start time, seconds since the epoch."
        )
        lines.append(f"process_start_time_seconds {start_time!r}")
        for metric, (help_text, value) in gauges.items():
            if value is None:
                continue
            _family(lines, metric, "gauge", help_text)
            lines.append(f"{metric} {_num(value)}")
        _family(lines, "app_info", "gauge", "Always 1; the labels say what this machine runs.")
        labels = ",".join(f'{key}="{_esc(value)}"' for key, value in info.items())
        lines.append(f"app_info{{{labels}}} 1")
        return "\n".join(lines) + "\n"


def _family(lines: list[str], name: str, kind: str, help_text: str) -> None:
    """Append the HELP and TYPE lines of a metric family."""
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")


def _num(value: float) -> str:
    """Format a sample value: integers without a fraction, floats exactly."""
    return str(value) if isinstance(value, int) else repr(float(value))


def _esc(value: str) -> str:
    """Escape a label value (backslash, double quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
