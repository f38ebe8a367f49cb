"""Decide whether machines and regions are healthy: per-machine check waits and region gates.

- `wait_healthy` follows one machine after a create or update until every check Fly reports
  for it passes (flyctl's ``WaitForHealthchecksToPass``), and fails fast when a check is still
  failing well after its grace period, instead of waiting out the whole timeout (flyctl #2653).
- `health_gate` is the ``gate.health`` step: every machine of the region on the release and the
  version this run put it at, started, checks passing, and the app answering ``/status`` 200
  through the proxy from that region.
- `metrics_gate` is the ``gate.metrics`` step: over the wave's bake window it sends a little
  traffic to the region through the proxy (``fly-prefer-region``), scrapes ``/metrics`` of each
  of the region's machines (``fly-force-instance-id``) at the start, every quarter of the window
  and at the end, and judges the error rate and p95 latency of the counter increases against
  the wave's thresholds (`orchestrator.execute.metrics`). The figures go to the journal (the
  step's ``result``) and to the view (`StepProgress` while it bakes, then the gate's verdict).

Failures raise `GateFailed` with one line naming the machine, the check and its output, or the
figures that broke a threshold.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator.errors import DeployError, FlyAPIError, FlyTransportError, GateFailed
from orchestrator.execute.context import StepContext
from orchestrator.execute.events import StepProgress
from orchestrator.execute.logtail import output
from orchestrator.execute.metrics import MetricsFigures, Scrape, Window, judge, parse_scrape
from orchestrator.fly.models import Machine
from orchestrator.fly.proxy import ProxyAnswer, ProxyClient
from orchestrator.plan.config import META_RELEASE, META_SLOT
from orchestrator.plan.steps import Step

__all__ = [
    "SMOKE_WINDOW_S",
    "check_budget_s",
    "health_gate",
    "metrics_gate",
    "parse_duration",
    "smoke_failure",
    "smoke_window_s",
    "wait_healthy",
]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
# Machine states from which a machine will not come up without someone acting.
_DEAD_STATES = frozenset({"failed", "destroyed", "destroying", "replaced", "launch_failed"})
# flyctl's smoke checks (--smoke-checks, on by default): a machine must stay up this long after
# it started without restarting more than once. Scaled like the checks by the backend.
SMOKE_WINDOW_S = 10.0
SMOKE_TAIL_LINES = 5


def smoke_window_s(scale: float) -> float:
    """Return the smoke window on a backend that runs checks at ``scale`` (1 on Fly.io)."""
    return SMOKE_WINDOW_S * scale


def _newest_exit(machine: Machine) -> Mapping[str, Any] | None:
    """Return the request of the newest ``exit`` of the machine's current version.

    Events come newest first; an ``update`` or ``launch`` before any exit means the exits seen
    after it belong to an earlier version (a crash loop that an update replaced).
    """
    for event in machine.events:
        if event.type in ("update", "launch"):
            return None
        if event.type == "exit":
            request = event.raw.get("request")
            return request if isinstance(request, Mapping) else {}
    return None


def _uptime_s(machine: Machine) -> float | None:
    """Return the seconds since the machine's latest start event (None when it has none).

    Fly stamps events in milliseconds since the epoch; flyctl measures uptime the same way.
    """
    for event in machine.events:
        if event.type == "start" and event.status == "started" and event.timestamp:
            return max(0.0, time.time() - event.timestamp / 1000.0)
        if event.type in ("update", "launch"):
            return None
    return None


def smoke_failure(machine: Machine) -> str | None:
    """Say why the machine fails the smoke checks: it crash-loops, or exited and stays down.

    As flyctl judges it: the newest exit was not asked for, had a non-zero code, and the
    machine is restarting for more than the first time (or will not restart at all).
    """
    request = _newest_exit(machine)
    if request is None:
        return None
    exit_event = request.get("exit_event")
    if not isinstance(exit_event, Mapping) or exit_event.get("requested_stop"):
        return None
    code = exit_event.get("exit_code")
    restarts = request.get("restart_count")
    if exit_event.get("restarting"):
        if isinstance(restarts, int) and restarts > 1 and code != 0:
            return f"it keeps crashing: exit code {code}, restarted {restarts} times"
        return None
    if machine.state in ("stopped", "failed"):
        return f"it exited (code {code}) and was not restarted"
    return None


def parse_duration(value: Any, default: float) -> float:
    """Read a Go duration (``"15s"``, ``"500ms"``, ``"1m30s"``) or a number of seconds."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str) or not value.strip():
        return default
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return default
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def check_budget_s(checks: Mapping[str, Mapping[str, Any]]) -> float:
    """Return how long after start a failing check means a broken release.

    Each check gets its grace period, five intervals and a timeout: a check that has failed
    five probes in a row after the grace period is not going to pass by waiting. Five, not
    three, and a 10 s floor, because on a loaded host a healthy process can miss a probe or
    two; failing a good release (and rolling it back) costs more than a few seconds.
    """
    budget = 0.0
    for check in checks.values():
        grace = parse_duration(check.get("grace_period"), 1.0)
        interval = parse_duration(check.get("interval"), 15.0)
        timeout = parse_duration(check.get("timeout"), 2.0)
        budget = max(budget, grace + 5 * interval + timeout)
    return max(budget, 10.0)


def describe_checks(machine: Machine) -> str:
    """Return one line naming the machine's failing checks and their output."""
    label = f"machine {machine.id}" + (f" ({machine.name})" if machine.name else "")
    if not machine.checks:
        return f"{label}: no check results yet"
    bad = [c for c in machine.checks if not c.passing]
    if not bad:
        return f"{label}: checks passing"
    parts = []
    for check in bad:
        output = " ".join(check.output.split())
        if len(output) > 160:
            output = output[:157] + "..."
        parts.append(f"check {check.name!r} is {check.status}" + (f": {output}" if output else ""))
    return f"{label}: " + "; ".join(parts)


def _check_timing(
    checks: Mapping[str, Mapping[str, Any]] | None, scale: float
) -> tuple[float, float] | None:
    """Return when the checks first run and how often, as the backend runs them.

    ``(grace, interval)``: the longest grace period and the shortest interval of ``checks``,
    both scaled by the backend's ``scale``; ``None`` when there is no check.
    """
    if not checks:
        return None
    grace = max(parse_duration(c.get("grace_period"), 0.0) for c in checks.values())
    interval = min(parse_duration(c.get("interval"), 15.0) for c in checks.values())
    return grace * scale, max(interval * scale, 0.01)


async def wait_healthy(
    ctx: StepContext,
    machine_id: str,
    *,
    version: str | None,
    since: float | None = None,
    checks: Mapping[str, Mapping[str, Any]] | None = None,
) -> Machine:
    """Wait until the machine is started at ``version``, every check passes, and it passed
    the smoke checks.

    Smoke checks (flyctl's ``--smoke-checks``): the machine must stay up for the smoke window
    (`smoke_window_s`) after it started; restarting more than once, or exiting and staying down,
    fails it at once, with the tail of its output. So a machine without checks is healthy only
    once that window has passed, not as soon as it is started.

    Args:
        since: when the machine was seen started (``time.monotonic()``; ``/wait`` returned),
            if it was. No check can have a result before its grace period has passed since
            then, nor the machine pass before the smoke window has, so the first look is at
            the later of the two, and the next ones when the checks run again (one interval
            later each), not every ``poll_s`` from the start.
        checks: the checks of the config the machine was given (to time those looks).

    Raises:
        GateFailed: the machine died, moved to another version, or its checks kept failing
            past their budget (or ``health_timeout_s``); the message names the check.
    """
    opts = ctx.options
    start = time.monotonic() if since is None else since
    hard_deadline = start + opts.health_timeout_s
    started_at: float | None = since
    timing = _check_timing(checks, ctx.client.check_scale) if since is not None else None
    first_run = start + timing[0] if timing is not None else start
    next_at = first_run + _lag(timing[1]) if timing is not None else start
    if timing is not None:
        # Nothing can pass before the smoke window is over (flyctl's 10 s, scaled; 2.5 s
        # against a 0.5 s grace at the benchmarks' time factor): look then, once, rather
        # than at the grace period and again and again until the window ends (3.5 reads
        # per machine instead of 1).
        next_at = max(next_at, start + smoke_window_s(ctx.client.check_scale) + _lag(timing[1]))
    # Results older than this (wall clock, as Fly stamps them) predate the first run.
    ran_after = time.time() - (time.monotonic() - start) + (timing[0] / 2 if timing else 0.0)
    while True:
        if (delay := next_at - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        machine = await ctx.client.get_machine(ctx.app, machine_id)
        now = time.monotonic()
        label = f"machine {machine.id}" + (f" ({machine.name})" if machine.name else "")
        if version is None or not machine.version or machine.version == version:
            crashed = smoke_failure(machine)
            if crashed is not None:
                said = output(machine.id, SMOKE_TAIL_LINES)
                raise GateFailed(f"{label}: smoke checks failed: {crashed}; {said}")
        if machine.state in _DEAD_STATES:
            raise GateFailed(f"{label} is {machine.state}: {describe_checks(machine)}")
        if version is not None and machine.version and machine.version != version:
            raise GateFailed(f"{label} is at version {machine.version}, not the expected {version}")
        if machine.state == "started":
            if started_at is None:
                started_at = now
            # Service checks count as much as top-level ones: Fly routes on them.
            if not machine.config.all_checks or machine.checks_passing:
                # As flyctl: up for the whole window since its latest start (a restart begins
                # the window again), not merely started once.
                window = smoke_window_s(ctx.client.check_scale)
                up = _uptime_s(machine)
                up = now - started_at if up is None else min(up, now - started_at)
                if up >= window:
                    return machine
                # Look again once the window is over: a crash before then shows in the
                # machine's events (its exits and restarts) at that look just the same.
                next_at = now + (window - up) + 0.01
                continue
            if now - started_at > check_budget_s(machine.config.all_checks):
                raise GateFailed(describe_checks(machine))
        if now > hard_deadline:
            state = "" if machine.state == "started" else f" (state {machine.state})"
            raise GateFailed(f"{describe_checks(machine)}{state} after {opts.health_timeout_s:g}s")
        if timing is not None and machine.state == "started":
            interval = timing[1]
            if now < first_run + interval and _first_run_pending(machine, checks, ran_after):
                # Looked a moment too early: the first result is due any time now.
                next_at = now + min(opts.poll_s, interval) / 4
            else:
                # The checks run again one interval after their last run: look just after
                # that (or later, when ``poll_s`` asks for fewer looks), not in between.
                runs = math.ceil((now + max(0.0, opts.poll_s - interval) - first_run) / interval)
                next_at = first_run + max(runs, 1) * interval + _lag(interval)
        else:
            next_at = now + opts.poll_s


def _first_run_pending(
    machine: Machine, checks: Mapping[str, Mapping[str, Any]] | None, ran_after: float
) -> bool:
    """Tell whether a check of ``machine`` has no result from after its grace period yet."""
    seen = {c.name: c for c in machine.checks}
    for name in checks or {}:
        result = seen.get(name)
        if result is None:
            return True
        if result.passing:
            continue
        at = _epoch(result.updated_at)
        if at is None or at < ran_after:
            return True
    return False


def _epoch(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        at = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).timestamp()


def _lag(interval: float) -> float:
    """Return how long after a check is due to look at its result (the probe takes a moment)."""
    return min(0.1, max(0.01, 0.02 * interval))


async def health_gate(ctx: StepContext, step: Step) -> str:
    """Run ``gate.health`` for ``step.region`` and return what passed, one line.

    Raises:
        GateFailed: a machine is missing, on another release or version, not started or
            failing a check, or the app does not answer ``/status`` from the region.
    """
    region = step.region
    slots = _slots(step.params.get("slots"))
    # A restore plan names the release per region (machines go back to what they ran).
    release = step.params.get("release", ctx.release)
    deadline = time.monotonic() + ctx.options.gate_timeout_s
    while True:
        unreachable = False
        try:
            problem = await _region_problem(ctx, region, slots, release)
        except (FlyAPIError, FlyTransportError) as exc:
            problem = f"cannot list machines: {exc}"
            unreachable = True
        if problem is None and not ctx.probe.reachable:
            count = len(slots) if slots else "all"
            return (
                f"{region}: {count} machine(s) on {release or 'their release'}, checks passing "
                "(no public address: Fly's checks alone)"
            )
        if problem is None:
            answer = await ctx.probe.status(region=region)
            answered_in = answer.region
            if answer.ok and (answered_in is None or answered_in == region):
                count = len(slots) if slots else "all"
                return (
                    f"{region}: {count} machine(s) on {release or 'their release'}, checks "
                    f"passing; /status 200 from {answer.machine_id or 'the proxy'}"
                )
            if answer.ok:
                problem = f"/status through the proxy answered from {answered_in}, not {region}"
            else:
                problem = f"/status through the proxy (fly-prefer-region {region}): " + (
                    answer.describe()
                )
        if time.monotonic() > deadline:
            if unreachable:
                # Fly did not answer: that says nothing about the release (no rollback).
                raise DeployError(f"{region}: health gate could not finish: {problem}")
            raise GateFailed(f"{region}: health gate failed: {problem}")
        await asyncio.sleep(ctx.options.poll_s)


async def _region_problem(
    ctx: StepContext, region: str, slots: Sequence[int], release: Any
) -> str | None:
    machines = await ctx.client.list_machines(ctx.app, region=region)
    by_slot: dict[int, Machine] = {}
    for m in sorted(machines, key=lambda m: m.id):
        slot = m.metadata.get(META_SLOT, "")
        if slot.isdigit() and m.state not in ("destroyed", "destroying"):
            by_slot.setdefault(int(slot), m)
    wanted = list(slots) or sorted(by_slot)
    if not wanted:
        return f"no machines in {region}"
    for wanted_slot in wanted:
        machine = by_slot.get(wanted_slot)
        if machine is None:
            return f"slot {wanted_slot} has no machine"
        label = f"machine {machine.id}" + (f" ({machine.name})" if machine.name else "")
        running = machine.metadata.get(META_RELEASE)
        if release is not None and running != release:
            return f"{label} is on release {running or 'unknown'}, not {release}"
        expected = ctx.state.versions.get(machine.id)
        if expected is not None and machine.version != expected:
            return f"{label} is at version {machine.version}, not the expected {expected}"
        if machine.state != "started":
            return f"{label} is {machine.state}, not started"
        if machine.config.all_checks and not machine.checks_passing:
            return describe_checks(machine)
    return None


def _slots(value: Any) -> list[int]:
    if not isinstance(value, list | tuple):
        return []
    return sorted(int(v) for v in value if isinstance(v, int) and not isinstance(v, bool))


_SCRAPE_TRIES = 3
# Requests the traffic generator may have in flight at once.
_TRAFFIC_CONCURRENCY = 8


@dataclass(slots=True)
class _Tally:
    """The gate's own requests through the proxy."""

    sent: int = 0
    failed: int = 0

    def add(self, answer: ProxyAnswer) -> None:
        self.sent += 1
        if answer.status_code is None or answer.status_code >= 500:
            self.failed += 1


async def _traffic(probe: ProxyClient, region: str, rps: float, stop: asyncio.Event) -> _Tally:
    """Send ``GET /`` to ``region`` through the proxy at about ``rps`` until ``stop`` is set."""
    tally = _Tally()
    if rps <= 0:
        await stop.wait()
        return tally
    limit = asyncio.Semaphore(_TRAFFIC_CONCURRENCY)
    pending: set[asyncio.Task[None]] = set()

    async def one() -> None:
        async with limit:
            tally.add(await probe.request("GET", "/", region=region))

    period = 1.0 / rps
    next_at = time.monotonic()
    try:
        while not stop.is_set():
            if len(pending) < 2 * _TRAFFIC_CONCURRENCY:
                task = asyncio.create_task(one())
                pending.add(task)
                task.add_done_callback(pending.discard)
            next_at += period
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
        # Let the last requests land, so the final scrape counts them.
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    finally:
        for task in pending:
            task.cancel()
    return tally


async def _scrape(ctx: StepContext, machine_id: str, *, tries: int = _SCRAPE_TRIES) -> Scrape | str:
    """Return one machine's counters, or why they could not be read."""
    problem = "not asked"
    for attempt in range(tries):
        answer = await ctx.probe.metrics(machine_id)
        if answer.status_code == 200:
            try:
                return parse_scrape(machine_id, answer.text)
            except ValueError as exc:
                problem = f"unreadable /metrics: {exc}"
        else:
            problem = f"/metrics: {answer.describe()}"
        if attempt + 1 < tries:
            await asyncio.sleep(0.2)
    return problem


async def _measured_machines(ctx: StepContext, region: str) -> list[Machine]:
    machines = await ctx.client.list_machines(ctx.app, region=region)
    ours = [m for m in machines if m.metadata.get(META_SLOT, "").isdigit() and m.state == "started"]
    # The bake measures the traffic Fly's proxy sends, which reaches only machines with a
    # service: a process group without one (a worker) serves no requests and no /metrics.
    serving = [m for m in ours if m.config.services]
    return sorted(serving or ours, key=lambda m: m.id)


async def metrics_gate(ctx: StepContext, step: Step) -> str:
    """Run ``gate.metrics`` for ``step.region`` over its bake window; return the figures.

    Raises:
        GateFailed: the error rate or the p95 latency broke the wave's threshold, the app
            counted no request, or a machine's ``/metrics`` could not be read at the start or
            the end of the window. The message carries the figures.
    """
    region = step.region
    if step.params.get("queries"):
        from orchestrator.execute.promgate import promql_gate

        rps = ctx.options.bake_rps if ctx.probe.reachable else 0.0
        return await promql_gate(
            ctx, step, lambda stop: _traffic(ctx.probe, region, rps, stop)
        )
    if not ctx.probe.reachable:
        # Its figures come through the app's address, and it has none.
        return f"{region}: not measured: the app has no public address (FLY_APP_URL=none)"
    bake_s = float(step.params.get("bake_s") or 0.0)
    max_error_rate = float(step.params.get("max_error_rate", 0.05))
    max_p95_ms = float(step.params.get("max_p95_ms", 1000.0))
    machines = await _measured_machines(ctx, region)
    if not machines:
        raise GateFailed(f"{region}: metrics gate: no started machine to measure")
    ids = tuple(m.id for m in machines)
    last: dict[str, Scrape] = {}
    for machine_id in ids:
        first = await _scrape(ctx, machine_id)
        if isinstance(first, str):
            raise GateFailed(f"{region}: metrics gate: machine {machine_id}: {first}")
        last[machine_id] = first
    window = Window()

    async def scrape_all(*, final: bool) -> None:
        for machine_id in ids:
            now = await _scrape(ctx, machine_id, tries=_SCRAPE_TRIES if final else 1)
            if isinstance(now, str):
                if final:
                    raise GateFailed(f"{region}: metrics gate: machine {machine_id}: {now}")
                continue  # the next scrape covers this stretch
            window.add(last[machine_id], now)
            last[machine_id] = now

    stop = asyncio.Event()
    traffic = asyncio.create_task(_traffic(ctx.probe, region, ctx.options.bake_rps, stop))
    began = time.monotonic()
    deadline = began + bake_s
    every = max(0.5, bake_s / 4)
    try:
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(every, left))
            await scrape_all(final=False)
            so_far = _figures(window, step, ids, bake_s, max_error_rate, max_p95_ms)
            ctx.bus.emit(
                StepProgress(
                    step,
                    f"baking {time.monotonic() - began:.1f}/{bake_s:g}s: {so_far.requests} "
                    f"requests, error rate {so_far.error_rate:.3f}",
                )
            )
    finally:
        stop.set()
        tally = await traffic
    await scrape_all(final=True)
    figures = _figures(
        window, step, ids, bake_s, max_error_rate, max_p95_ms, tally.sent, tally.failed
    )
    ctx.state.gate_figures[step.id] = figures.to_json()
    ctx.journal.step_result(ctx.run, step.id, {"metrics": figures.to_json()})
    if not figures.passed:
        raise GateFailed(f"metrics gate failed: {figures.describe()}")
    return figures.describe()


def _figures(
    window: Window,
    step: Step,
    ids: tuple[str, ...],
    bake_s: float,
    max_error_rate: float,
    max_p95_ms: float,
    sent: int = 0,
    failed: int = 0,
) -> MetricsFigures:
    return judge(
        window,
        region=step.region,
        machines=ids,
        bake_s=bake_s,
        max_error_rate=max_error_rate,
        max_p95_ms=max_p95_ms,
        traffic_sent=sent,
        traffic_failed=failed,
    )
