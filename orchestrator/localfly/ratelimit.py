"""Server-side rate limits as Fly documents them, answered with 429 and Retry-After.

Fly limits each action per machine (or per app, for calls that name no machine) to
1 request/s with a burst of 3, Get Machine to 5 requests/s with a burst of 10, and app
deletions to 100 a minute. Only those are limited here: reads other than Get Machine,
``/wait`` and app creation are not. The window
scales with the time factor, so a benchmark at ``--time-factor 0.1`` may call ten times
as often and still see the same shape.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

__all__ = ["ACTION", "APP_DELETE", "GET_MACHINE", "Limit", "RateLimiter"]


@dataclass(frozen=True, slots=True)
class Limit:
    """A token bucket's shape.

    Attributes:
        rate: tokens added per second (before the time factor).
        burst: tokens a bucket holds at most.
    """

    rate: float
    burst: int


ACTION = Limit(rate=1.0, burst=3)
GET_MACHINE = Limit(rate=5.0, burst=10)
APP_DELETE = Limit(rate=100 / 60, burst=100)
# Fly documents no per-call limit for these: a wait is a long poll, an app create is org-wide.
_UNLIMITED = frozenset({"Machines_wait", "Apps_create"})


class RateLimiter:
    """Token buckets keyed by (scope id, operation)."""

    def __init__(self, time_factor: float = 1.0) -> None:
        self.time_factor = time_factor
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    @staticmethod
    def limit_for(operation: str, method: str) -> Limit | None:
        """Return the limit of an operation, or None when it is not limited."""
        if operation == "Machines_show":
            return GET_MACHINE
        if operation == "Apps_delete":
            return APP_DELETE
        if method in ("GET", "HEAD") or operation in _UNLIMITED:
            return None
        return ACTION

    def take(self, scope: str, operation: str, limit: Limit) -> float | None:
        """Take a token; return None, or the seconds until one is available."""
        rate = limit.rate / self.time_factor
        now = time.monotonic()
        tokens, last = self._buckets.get((scope, operation), (float(limit.burst), now))
        tokens = min(float(limit.burst), tokens + (now - last) * rate)
        if tokens >= 1.0:
            self._buckets[(scope, operation)] = (tokens - 1.0, now)
            return None
        self._buckets[(scope, operation)] = (tokens, now)
        return (1.0 - tokens) / rate

    @staticmethod
    def retry_after_header(seconds: float) -> str:
        """Return a Retry-After value (whole seconds, at least 1)."""
        return str(max(1, math.ceil(seconds)))
