"""Latency profiles: how long the local Fly takes to answer and to move machines along.

``fast`` adds nothing: calls answer at once, machines start as soon as their process is
spawned, and check intervals shrink (a tenth, between 0.2 s and 1 s) so tests are quick.
``realistic`` adds a per-region API round trip (20 ms plus 10 ms per 1000 km from the
``nearest`` region, ±20 %), and create/start/update/stop durations shaped like Fly's
(create 1-3 s, start 0.5-1.5 s, update 2-5 s, stop 0.2-0.8 s). Every added delay, check
interval and rate-limit window is multiplied by the time factor, so a benchmark can run
the same shape ten times faster with ``--time-factor 0.1``.

``sim`` times everything as ``realistic`` does but runs no process: a machine is state only,
its checks pass when their grace period is over, and the proxy answers ``/status`` and
``/metrics`` for it (``localfly/sim.py``). It is for benchmarks and scale tests, where
thousands of machines would not fit in processes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from orchestrator.localfly.regions import NEAREST, REGIONS, distance_km

__all__ = ["PROFILES", "Profile", "Span", "Transition", "get_profile"]

Transition = Literal["create", "start", "update", "stop"]


@dataclass(frozen=True, slots=True)
class Span:
    """A range of seconds a transition takes, drawn uniformly.

    Attributes:
        lo: the shortest.
        hi: the longest.
    """

    lo: float = 0.0
    hi: float = 0.0

    def draw(self, rng: random.Random) -> float:
        """Return a duration in the range."""
        return self.lo if self.hi <= self.lo else rng.uniform(self.lo, self.hi)


@dataclass(frozen=True, slots=True)
class Profile:
    """How slow the local Fly pretends to be.

    Attributes:
        name: ``fast`` or ``realistic``.
        time_factor: multiplies every added delay, check interval and rate-limit window.
        api_base_s: added to every API call (before the time factor).
        api_per_1000km_s: added per 1000 km between ``nearest`` and the call's region.
        create: delay from a create to the process being spawned.
        start: delay from a start to the process being spawned.
        update: delay from an update to the new process being spawned.
        stop: delay added after the process exits on a stop.
        check_scale: multiplies configured check intervals and grace periods.
        check_min_interval: floor of an effective check interval, seconds.
        check_max_interval: ceiling of an effective check interval, seconds (None: none).
        check_max_timeout: ceiling of a check timeout, seconds (None: none).
        kill_timeout_max: ceiling of the SIGTERM-to-SIGKILL grace on stop, seconds.
        simulated: machines are state only, with no OS process (the ``sim`` profile).
    """

    name: str
    time_factor: float = 1.0
    api_base_s: float = 0.0
    api_per_1000km_s: float = 0.0
    create: Span = Span()
    start: Span = Span()
    update: Span = Span()
    stop: Span = Span()
    check_scale: float = 1.0
    check_min_interval: float = 0.2
    check_max_interval: float | None = None
    check_max_timeout: float | None = None
    kill_timeout_max: float = 300.0
    simulated: bool = False

    def api_latency(self, region: str | None, rng: random.Random) -> float:
        """Return the seconds to hold an API call whose target is in ``region``."""
        if self.api_base_s <= 0 and self.api_per_1000km_s <= 0:
            return 0.0
        km = distance_km(NEAREST, region) if region in REGIONS and region else 0.0
        base = self.api_base_s + self.api_per_1000km_s * km / 1000.0
        return base * rng.uniform(0.8, 1.2) * self.time_factor

    def duration(self, kind: Transition, rng: random.Random) -> float:
        """Return how long a transition takes, in seconds, time factor applied."""
        span = {"create": self.create, "start": self.start, "update": self.update}.get(
            kind, self.stop
        )
        return span.draw(rng) * self.time_factor

    def check_interval(self, configured: float) -> float:
        """Return the effective interval for a check configured at ``configured`` seconds."""
        value = configured * self.check_scale
        if self.check_max_interval is not None:
            value = min(value, self.check_max_interval)
        return max(value, self.check_min_interval)

    def check_grace(self, configured: float) -> float:
        """Return the effective grace period before a check first runs."""
        return configured * self.check_scale

    def check_timeout(self, configured: float) -> float:
        """Return the effective timeout of one check run."""
        if self.check_max_timeout is not None:
            return min(configured, self.check_max_timeout)
        return configured

    def kill_timeout(self, configured: float) -> float:
        """Return how long a stop waits between SIGTERM and SIGKILL."""
        return min(configured, self.kill_timeout_max)


PROFILES = ("fast", "realistic", "sim")


def get_profile(name: str, time_factor: float = 1.0) -> Profile:
    """Return the named profile scaled by ``time_factor``; ValueError for bad input."""
    if not time_factor > 0:
        raise ValueError(f"time factor must be > 0, got {time_factor!r}")
    if name == "fast":
        return Profile(
            name="fast",
            time_factor=time_factor,
            check_scale=0.1,
            check_min_interval=0.2,
            check_max_interval=1.0,
            check_max_timeout=2.0,
            kill_timeout_max=2.0,
        )
    if name in ("realistic", "sim"):
        return Profile(
            name=name,
            time_factor=time_factor,
            api_base_s=0.020,
            api_per_1000km_s=0.010,
            create=Span(1.0, 3.0),
            start=Span(0.5, 1.5),
            update=Span(2.0, 5.0),
            stop=Span(0.2, 0.8),
            check_scale=time_factor,
            check_min_interval=0.2,
            simulated=name == "sim",
        )
    raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
