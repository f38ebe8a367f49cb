"""Compute the fastest a plan could possibly run on the local Fly: its makespan bound.

Every step is given exactly the time the local Fly's latency profile configures for the work
it must do, and the orchestrator adds nothing (no lease, no extra read, no polling delay, no
CPU). With ``tf`` the time factor, ``L(r)`` the profile's mean API round trip for region ``r``
(``(api_base + api_per_1000km * km(nearest, r) / 1000) * tf``; the ±20 % jitter averages out),
``mean(span)`` the middle of a transition's range, and ``G`` / ``I`` the check's grace period
and interval as the profile scales them:

========================  =====================================================================
step                      duration
========================  =====================================================================
``machine.update``        ``L(r) + mean(update) * tf + max(G, W)``  (one update call; the new
                          process is spawned after the update delay; its check first runs
                          after the grace period and passes then: zero extra intervals; and it
                          has stayed up for the smoke window ``W``, flyctl's 10 s, scaled)
``machine.create``        ``L(r) + mean(create) * tf + max(G, W)``
``machine.destroy``       ``L(r) + mean(stop) * tf + L(r)``  (stop, then destroy)
``volume.ensure``         ``L(r)``  (one create call; reuse: 0)
``volume.replicate``      ``0``
``gate.health``           ``L(-)``  (one list call: a gate must look at least once)
``gate.metrics``          ``bake_s``
========================  =====================================================================

Resource limits are turned into edges: within a region, the updates and destroys that follow
the spearhead are dealt round-robin into ``max_unavailable`` lanes, each lane a chain, so at
most that many run at once (with equal durations this is exactly what a greedy scheduler
does). Wave barriers and every other order come from the plan's own graph. The bound is the
longest path through that graph (``networkx.dag_longest_path``), or, when a wave's
``max_concurrency`` holds fewer steps in flight than its regions' lanes would (a large fleet:
64 at most, against ~95 lanes in each of 28 regions), the makespan of a greedy run with the
same mean durations that also keeps to each wave's ``max_concurrency``, whichever is longer.

:func:`expected_makespan` also simulates the same graph with durations *drawn* from the
profile's ranges (a greedy scheduler holding each region to ``max_unavailable``), averaged over
many draws: the makespan a perfect orchestrator would see on average, since the slowest of
several parallel updates is slower than the mean.
"""

from __future__ import annotations

import heapq
import random
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import networkx as nx

from orchestrator.execute.gates import SMOKE_WINDOW_S
from orchestrator.fly.checks import all_checks
from orchestrator.localfly.profiles import Profile, Span
from orchestrator.localfly.regions import NEAREST, REGIONS, distance_km
from orchestrator.localfly.util import parse_duration
from orchestrator.plan.model import Plan
from orchestrator.plan.steps import Step, StepKind

__all__ = ["Bound", "expected_makespan", "makespan_bound", "step_duration"]

_DISRUPTIVE = frozenset({StepKind.MACHINE_UPDATE, StepKind.MACHINE_DESTROY})
_GATES = frozenset({StepKind.GATE_HEALTH, StepKind.GATE_METRICS})


@dataclass(frozen=True, slots=True)
class Bound:
    """A plan's makespan bound and where it comes from.

    Attributes:
        seconds: the longest path, in seconds.
        path: the step ids on that path, in order.
        per_kind: the bound's duration per step kind (mean durations), for the docs.
    """

    seconds: float
    path: tuple[str, ...]
    per_kind: Mapping[str, float]


def _mean(span: Span) -> float:
    return (span.lo + max(span.hi, span.lo)) / 2.0


def latency(profile: Profile, region: str | None) -> float:
    """Return the mean API round trip the profile adds for a call on ``region``."""
    if profile.api_base_s <= 0 and profile.api_per_1000km_s <= 0:
        return 0.0
    km = distance_km(NEAREST, region) if region and region in REGIONS else 0.0
    return (profile.api_base_s + profile.api_per_1000km_s * km / 1000.0) * profile.time_factor


def _grace(profile: Profile, step: Step) -> float:
    """Return how long after it started a machine can first be judged healthy.

    The later of its checks' grace period (the longest; service checks delay a machine's health
    as much as top-level ones) and flyctl's smoke window, which the product keeps too (it must
    stay up that long), both as the profile scales check timings.
    """
    config = step.params.get("config") or {}
    checks = all_checks(config)
    graces = [
        profile.check_grace(parse_duration(c.get("grace_period", "0s"))) for c in checks.values()
    ]
    return max([*graces, profile.check_grace(SMOKE_WINDOW_S)])


def step_duration(
    profile: Profile,
    step: Step,
    *,
    draw: Callable[[Span], float] | None = None,
    jitter: Callable[[], float] | None = None,
) -> float:
    """Return how long ``step`` takes on the local Fly with nothing added (see the module doc).

    ``draw`` picks a duration from a span (default: its mean); ``jitter`` multiplies each API
    latency (default: 1).
    """
    tf = profile.time_factor
    pick = draw or _mean

    def lat(region: str | None) -> float:
        return latency(profile, region) * (jitter() if jitter else 1.0)

    kind = step.kind
    if kind is StepKind.MACHINE_UPDATE:
        return lat(step.region) + pick(profile.update) * tf + _grace(profile, step)
    if kind is StepKind.MACHINE_CREATE:
        return lat(step.region) + pick(profile.create) * tf + _grace(profile, step)
    if kind is StepKind.MACHINE_DESTROY:
        return 2 * lat(step.region) + pick(profile.stop) * tf
    if kind is StepKind.VOLUME_ENSURE:
        return 0.0 if step.params.get("reuse") else lat(step.region)
    if kind is StepKind.GATE_HEALTH:
        return lat(None)
    if kind is StepKind.GATE_METRICS:
        return float(step.params.get("bake_s") or 0.0)
    return 0.0


def _lanes(plan: Plan, budget: Mapping[str, int]) -> list[tuple[str, str]]:
    """Return edges that hold each region's non-spearhead disruptive steps to its budget."""
    edges: list[tuple[str, str]] = []
    for wave in plan.waves:
        for region in wave:
            steps = [
                s
                for s in plan.region_steps(region)
                if s.kind in _DISRUPTIVE and not s.params.get("spearhead")
            ]
            width = max(1, int(budget.get(region, 1)))
            for i in range(width, len(steps)):
                edges.append((steps[i - width].id, steps[i].id))
    return edges


def makespan_bound(plan: Plan, profile: Profile, budget: Mapping[str, int]) -> Bound:
    """Return the longest path of ``plan`` with mean durations and ``budget`` lanes per region."""
    g = nx.DiGraph()
    source = "<start>"
    g.add_node(source)
    per_kind: dict[str, float] = {}
    durations: dict[str, float] = {}
    for step in plan.steps():
        d = step_duration(profile, step)
        durations[step.id] = d
        per_kind.setdefault(step.kind.value, round(d, 4))
        g.add_edge(source, step.id, weight=d)
    for u, v in list(plan.graph.edges()) + _lanes(plan, budget):
        g.add_edge(u, v, weight=durations[v])
    path = nx.dag_longest_path(g, weight="weight")
    seconds = sum(durations[s] for s in path if s != source)
    # With equal durations a greedy run is what the best schedule does; it is the bound
    # when the waves' concurrency, which the graph cannot show, is what holds steps back.
    seconds = max(seconds, _simulate(plan, durations, budget))
    return Bound(seconds=seconds, path=tuple(s for s in path if s != source), per_kind=per_kind)


def _wave_caps(plan: Plan) -> dict[int, int]:
    return {i + 1: max(1, int(w.max_concurrency)) for i, w in enumerate(plan.wave_specs)}


def _simulate(plan: Plan, durations: Mapping[str, float], budget: Mapping[str, int]) -> float:
    """Return the makespan of a greedy run: a step starts as soon as it may.

    At most ``max_unavailable`` disruptive steps of a region, and at most the wave's
    ``max_concurrency`` machine and volume steps of a wave (gates take no slot), run at once,
    as the executor's semaphores allow.
    """
    graph = plan.graph
    order = {s.id: i for i, s in enumerate(plan.steps())}
    waiting = {sid: graph.in_degree(sid) for sid in graph.nodes}
    caps = _wave_caps(plan)
    running_wave: dict[int, int] = {}
    running_in: dict[str, int] = {}
    # One heap of ready steps per wave, so a full wave costs nothing to skip.
    ready: dict[int, list[tuple[int, str]]] = {}

    gates: list[str] = []

    def push(sid: str) -> None:
        step = graph.nodes[sid]["step"]
        if step.kind in _GATES:
            gates.append(sid)  # no slot to wait for
        else:
            heapq.heappush(ready.setdefault(step.wave, []), (order[sid], sid))

    for sid, n in waiting.items():
        if n == 0:
            push(sid)
    events: list[tuple[float, str]] = []
    now = 0.0
    end = 0.0

    def start_ready() -> None:
        for sid in gates:
            heapq.heappush(events, (now + durations[sid], sid))
        gates.clear()
        for wave, heap in ready.items():
            held: list[tuple[int, str]] = []
            cap_w = caps.get(wave, 8)
            while heap and running_wave.get(wave, 0) < cap_w:
                rank, sid = heapq.heappop(heap)
                step: Step = graph.nodes[sid]["step"]
                if step.kind in _DISRUPTIVE:
                    cap = max(1, int(budget.get(step.region, 1)))
                    if running_in.get(step.region, 0) >= cap:
                        held.append((rank, sid))
                        continue
                    running_in[step.region] = running_in.get(step.region, 0) + 1
                running_wave[wave] = running_wave.get(wave, 0) + 1
                heapq.heappush(events, (now + durations[sid], sid))
            for item in held:
                heapq.heappush(heap, item)

    start_ready()
    while events:
        now, sid = heapq.heappop(events)
        end = max(end, now)
        step = graph.nodes[sid]["step"]
        if step.kind not in _GATES:
            running_wave[step.wave] -= 1
        if step.kind in _DISRUPTIVE:
            running_in[step.region] -= 1
        for nxt in graph.successors(sid):
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                push(nxt)
        start_ready()
    return end


def expected_makespan(
    plan: Plan,
    profile: Profile,
    budget: Mapping[str, int],
    *,
    samples: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Simulate ``plan`` with durations drawn from the profile; return mean and spread."""
    rng = random.Random(seed)
    steps = plan.steps()
    results = []
    for _ in range(max(1, samples)):
        durations = {
            s.id: step_duration(
                profile,
                s,
                draw=lambda span: span.draw(rng),
                jitter=lambda: rng.uniform(0.8, 1.2),
            )
            for s in steps
        }
        results.append(_simulate(plan, durations, budget))
    results.sort()
    return {
        "mean_s": round(statistics.fmean(results), 3),
        "p05_s": round(results[int(0.05 * (len(results) - 1))], 3),
        "p95_s": round(results[int(0.95 * (len(results) - 1))], 3),
        "samples": len(results),
    }
