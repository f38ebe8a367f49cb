"""How long a plan should take: its makespan with typical durations and the run's limits.

Pure: durations come in as `Durations` (Fly's typical operation times, or the local Fly's
profile), the limits from the plan (each wave's ``max_concurrency``) and the spec (each region's
``max_unavailable``). The estimate is a greedy run of the plan's graph, as the executor
schedules it: a step starts once its predecessors are done and a slot is free; at most
``max_unavailable`` updates and destroys of a region and ``max_concurrency`` machine and volume
steps of a wave (gates take none) run at once. Every step takes its mean duration:

- create / update: one API round trip, the launch or update itself, then the later of the
  checks' grace period (the first check that can pass) and the smoke window (the machine must
  stay up that long, as flyctl's smoke checks ask);
- destroy: two round trips (stop, destroy) and the stop;
- volume create: one round trip (a reused volume: nothing); health gate: one round trip;
- metrics gate: its bake time.

What it leaves out, and the executor adds: Fly's rate limits, a failing first check, the
orchestrator's own time. ``bench/rollout.py`` measures a rollout against the same figure.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass

from orchestrator.errors import ConfigError
from orchestrator.fleetconfig.values import parse_duration
from orchestrator.plan.model import Plan
from orchestrator.plan.steps import Step, StepKind

__all__ = [
    "FLY_TYPICAL",
    "Durations",
    "Estimate",
    "WaveEstimate",
    "duration_text",
    "estimate",
    "step_seconds",
]

_DISRUPTIVE = frozenset({StepKind.MACHINE_UPDATE, StepKind.MACHINE_DESTROY})
_GATES = frozenset({StepKind.GATE_HEALTH, StepKind.GATE_METRICS})
_DEFAULT_CONCURRENCY = 8


@dataclass(frozen=True, slots=True)
class Durations:
    """Mean seconds of the operations a plan's steps wait on.

    Attributes:
        api_s: one Machines API round trip.
        create_s: a created machine until its process runs.
        update_s: an updated machine until its new process runs.
        stop_s: a stop until the machine is stopped.
        check_scale: multiplies the configured check grace periods and the smoke window (the
            local Fly's time factor; 1 on Fly.io).
        smoke_s: flyctl's smoke window: a machine counts as healthy only once it has stayed up
            this long (the executor's ``SMOKE_WINDOW_S``).
        source: where the figures come from, for the operator.
    """

    api_s: float
    create_s: float
    update_s: float
    stop_s: float
    check_scale: float = 1.0
    smoke_s: float = 10.0
    source: str = "Fly.io typical"


# Fly's typical operation times, as the local Fly's realistic profile reproduces them: a create
# 1-3 s, an update 2-5 s, a stop 0.2-0.8 s, an API round trip of some 20-200 ms by distance.
FLY_TYPICAL = Durations(api_s=0.1, create_s=2.0, update_s=3.5, stop_s=0.5)


@dataclass(frozen=True, slots=True)
class WaveEstimate:
    """When one wave should start and end, in seconds from the start of the rollout."""

    wave: int
    start_s: float
    end_s: float

    @property
    def seconds(self) -> float:
        """Return how long the wave should take."""
        return self.end_s - self.start_s


@dataclass(frozen=True, slots=True)
class Estimate:
    """How long a plan should take.

    Attributes:
        seconds: the whole rollout.
        waves: per wave, in order.
        source: where the durations come from.
    """

    seconds: float
    waves: tuple[WaveEstimate, ...]
    source: str


def _grace(step: Step, d: Durations) -> float:
    """Return how long after it started a machine can first count as healthy."""
    checks = (step.params.get("config") or {}).get("checks") or {}
    graces = [_seconds(c.get("grace_period")) for c in checks.values() if isinstance(c, Mapping)]
    return max([*graces, d.smoke_s]) * d.check_scale


def _seconds(value: object) -> float:
    """Read a Go duration such as ``"2s"`` (0 when absent or unreadable: nothing to wait)."""
    try:
        return parse_duration(value, "grace_period") if value is not None else 0.0
    except ConfigError:
        return 0.0


def step_seconds(step: Step, d: Durations) -> float:
    """Return the mean seconds ``step`` should take (see the module docstring)."""
    kind = step.kind
    if kind is StepKind.MACHINE_UPDATE:
        return d.api_s + d.update_s + _grace(step, d)
    if kind is StepKind.MACHINE_CREATE:
        return d.api_s + d.create_s + _grace(step, d)
    if kind is StepKind.MACHINE_DESTROY:
        return 2 * d.api_s + d.stop_s
    if kind is StepKind.VOLUME_ENSURE:
        return 0.0 if step.params.get("reuse") else d.api_s
    if kind is StepKind.GATE_DATA:
        return d.api_s
    if kind is StepKind.VOLUME_SNAPSHOT:
        return 2 * d.api_s  # the request, then a list that finds it created
    if kind is StepKind.GATE_HEALTH:
        return d.api_s
    if kind is StepKind.GATE_METRICS:
        return float(step.params.get("bake_s") or 0.0)
    return 0.0


def estimate(plan: Plan, durations: Durations, max_unavailable: Mapping[str, int]) -> Estimate:
    """Return how long ``plan`` should take with ``durations`` and the run's limits."""
    steps = plan.steps()
    graph = plan.graph
    order = {s.id: i for i, s in enumerate(steps)}
    by_id = {s.id: s for s in steps}
    waiting = {s.id: graph.in_degree(s.id) for s in steps}
    caps = {i + 1: max(1, w.max_concurrency) for i, w in enumerate(plan.wave_specs)}
    in_wave: dict[int, int] = {}
    in_region: dict[str, int] = {}
    ready: dict[int, list[tuple[int, str]]] = {}
    gates: list[str] = []
    events: list[tuple[float, int, str]] = []
    spans: dict[int, list[float]] = {}
    now = 0.0

    def push(sid: str) -> None:
        step = by_id[sid]
        if step.kind in _GATES:
            gates.append(sid)
        else:
            heapq.heappush(ready.setdefault(step.wave, []), (order[sid], sid))

    def begin(sid: str) -> None:
        step = by_id[sid]
        span = spans.setdefault(step.wave, [now, now])
        span[0] = min(span[0], now)
        heapq.heappush(events, (now + step_seconds(step, durations), order[sid], sid))

    def start_ready() -> None:
        for sid in gates:
            begin(sid)
        gates.clear()
        for wave, heap in ready.items():
            held = []
            cap = caps.get(wave, _DEFAULT_CONCURRENCY)
            while heap and in_wave.get(wave, 0) < cap:
                rank, sid = heapq.heappop(heap)
                step = by_id[sid]
                if step.kind in _DISRUPTIVE:
                    limit = max(1, int(max_unavailable.get(step.region, 1)))
                    if in_region.get(step.region, 0) >= limit:
                        held.append((rank, sid))
                        continue
                    in_region[step.region] = in_region.get(step.region, 0) + 1
                in_wave[wave] = in_wave.get(wave, 0) + 1
                begin(sid)
            for item in held:
                heapq.heappush(heap, item)

    for s in steps:
        if waiting[s.id] == 0:
            push(s.id)
    start_ready()
    while events:
        now, _, sid = heapq.heappop(events)
        step = by_id[sid]
        spans.setdefault(step.wave, [now, now])[1] = now
        if step.kind not in _GATES:
            in_wave[step.wave] -= 1
        if step.kind in _DISRUPTIVE:
            in_region[step.region] -= 1
        for nxt in graph.successors(sid):
            if nxt in waiting:
                waiting[nxt] -= 1
                if waiting[nxt] == 0:
                    push(nxt)
        start_ready()
    waves = tuple(
        WaveEstimate(wave, round(a, 3), round(b, 3)) for wave, (a, b) in sorted(spans.items())
    )
    total = max((w.end_s for w in waves), default=0.0)
    return Estimate(seconds=round(total, 3), waves=waves, source=durations.source)


def duration_text(seconds: float) -> str:
    """Say a duration the way an operator reads it: ``45s``, ``3m 05s``, ``1h 02m``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"
