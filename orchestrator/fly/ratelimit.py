"""Keep to Fly's Machines API rate limits on the client side, so a large rollout never sees a 429.

Fly documents (fly-notes.md §4) one request per second per action per machine (or per app, for
app-scoped calls) with a burst of 3, and 5 requests per second with a burst of 10 for "get
machine". `RateLimiter` keeps one token bucket per ``(action, app, scope)`` key and makes each
caller wait for its turn.

Buckets reserve a slot synchronously and only then sleep, so concurrent callers on one key are
spaced in call order without a lock, and a caller on another key never waits behind them. This is
what lets a long-polling ``/wait`` count against its own bucket without blocking a ``stop`` on the
same machine: the wait holds nothing while its request is in flight.

Time comes from an injectable `Clock`, so tests measure the spacing without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "DEFAULT_LIMIT",
    "GET_MACHINE_LIMIT",
    "SYSTEM_CLOCK",
    "Clock",
    "Limit",
    "RateLimiter",
    "SystemClock",
]


class Clock(Protocol):
    """Tell the time and wait; the seam that lets tests replace real time."""

    def monotonic(self) -> float:
        """Return seconds from an arbitrary, never-decreasing origin."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (zero or more)."""
        ...


class SystemClock:
    """Real time: `time.monotonic` and `asyncio.sleep`."""

    __slots__ = ()

    def monotonic(self) -> float:
        """Return `time.monotonic()`."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Wait with `asyncio.sleep`."""
        await asyncio.sleep(seconds)


SYSTEM_CLOCK: Clock = SystemClock()


@dataclass(frozen=True, slots=True)
class Limit:
    """A token bucket's shape.

    Attributes:
        rate: tokens added per second (sustained requests per second).
        burst: the bucket's capacity (requests that may go at once after a quiet spell).
    """

    rate: float
    burst: int


DEFAULT_LIMIT = Limit(rate=1.0, burst=3)
GET_MACHINE_LIMIT = Limit(rate=5.0, burst=10)

# Past this many buckets, full (idle) ones are dropped: a full bucket is indistinguishable from a
# new one, so forgetting it changes nothing, and a long-lived client must not grow without bound.
_PRUNE_ABOVE = 4096


class _Bucket:
    """One key's bucket; ``tokens`` may go negative, which is the queue of reserved slots."""

    __slots__ = ("limit", "tokens", "updated")

    def __init__(self, limit: Limit, now: float) -> None:
        self.limit = limit
        self.tokens = float(limit.burst)
        self.updated = now

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(float(self.limit.burst), self.tokens + elapsed * self.limit.rate)
        self.updated = now

    def reserve(self, now: float) -> float:
        """Take one token and return how long to wait until it is really ours."""
        self.refill(now)
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.limit.rate


class RateLimiter:
    """Space requests per ``(action, app, scope)`` key with token buckets.

    Args:
        clock: where time comes from (`SYSTEM_CLOCK` unless a test injects one).
        enabled: ``False`` makes `acquire` return at once (``FlyClient(rate_limit=False)``).
        default: the bucket shape for every action not in ``overrides``.
        overrides: bucket shapes by action name (``machine.get`` gets Fly's 5/s burst 10).
    """

    __slots__ = ("_buckets", "_clock", "_default", "_overrides", "enabled")

    def __init__(
        self,
        *,
        clock: Clock = SYSTEM_CLOCK,
        enabled: bool = True,
        default: Limit = DEFAULT_LIMIT,
        overrides: dict[str, Limit] | None = None,
    ) -> None:
        self._clock = clock
        self.enabled = enabled
        self._default = default
        self._overrides = (
            dict(overrides) if overrides is not None else {"machine.get": GET_MACHINE_LIMIT}
        )
        self._buckets: dict[tuple[str, str, str], _Bucket] = {}

    @property
    def clock(self) -> Clock:
        """Return the clock this limiter waits on."""
        return self._clock

    def limit_for(self, action: str) -> Limit:
        """Return the bucket shape used for ``action``."""
        return self._overrides.get(action, self._default)

    def reserve(self, action: str, app: str, scope: str = "") -> float:
        """Reserve the next slot for a key and return the seconds to wait for it (no waiting)."""
        if not self.enabled:
            return 0.0
        now = self._clock.monotonic()
        key = (action, app, scope)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _PRUNE_ABOVE:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(self.limit_for(action), now)
        return bucket.reserve(now)

    async def acquire(self, action: str, app: str, scope: str = "") -> float:
        """Wait until a request for this key may go; return how long that took."""
        delay = self.reserve(action, app, scope)
        if delay > 0:
            await self._clock.sleep(delay)
        return delay

    def _prune(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            bucket.refill(now)
            if bucket.tokens >= bucket.limit.burst:
                del self._buckets[key]
