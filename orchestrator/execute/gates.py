"""Decide whether machines and regions are healthy: per-machine check waits and region gates.

- `wait_healthy` follows one machine after a create or update until every check Fly reports
  for it passes (flyctl's ``WaitForHealthchecksToPass``), and fails fast when a check is still
  failing well after its grace period, instead of waiting out the whole timeout (flyctl #2653).
- `health_gate` is the ``gate.health`` step: every machine of the region on the release and the
  version this run put it at, started, checks passing, and the app answering ``/status`` 200
  through the proxy from that region.
- `metrics_gate` is the ``gate.metrics`` step. It is a hook for now: the bake-window evaluation of
  ``/metrics`` comes with the staged rollout; today it records that it did not evaluate.

Failures raise `GateFailed` with one line naming the machine, the check and its output.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.errors import FlyAPIError, FlyTransportError, GateFailed
from orchestrator.execute.context import StepContext
from orchestrator.fly.models import Machine
from orchestrator.plan.config import META_RELEASE, META_SLOT
from orchestrator.plan.steps import Step

__all__ = ["check_budget_s", "health_gate", "metrics_gate", "parse_duration", "wait_healthy"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
# Machine states from which a machine will not come up without someone acting.
_DEAD_STATES = frozenset({"failed", "destroyed", "destroying", "replaced", "launch_failed"})


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

    Each check gets its grace period, three intervals and a timeout: a check that has failed
    three probes in a row after the grace period is not going to pass by waiting.
    """
    budget = 0.0
    for check in checks.values():
        grace = parse_duration(check.get("grace_period"), 1.0)
        interval = parse_duration(check.get("interval"), 15.0)
        timeout = parse_duration(check.get("timeout"), 2.0)
        budget = max(budget, grace + 3 * interval + timeout)
    return max(budget, 5.0)


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


async def wait_healthy(ctx: StepContext, machine_id: str, *, version: str | None) -> Machine:
    """Wait until the machine is started at ``version`` and every check passes.

    A machine whose config has no checks is healthy once started.

    Raises:
        GateFailed: the machine died, moved to another version, or its checks kept failing
            past their budget (or ``health_timeout_s``); the message names the check.
    """
    opts = ctx.options
    start = time.monotonic()
    hard_deadline = start + opts.health_timeout_s
    started_at: float | None = None
    while True:
        machine = await ctx.client.get_machine(ctx.app, machine_id)
        now = time.monotonic()
        label = f"machine {machine.id}" + (f" ({machine.name})" if machine.name else "")
        if machine.state in _DEAD_STATES:
            raise GateFailed(f"{label} is {machine.state}: {describe_checks(machine)}")
        if version is not None and machine.version and machine.version != version:
            raise GateFailed(f"{label} is at version {machine.version}, not the expected {version}")
        if machine.state == "started":
            if started_at is None:
                started_at = now
            if not machine.config.checks or machine.checks_passing:
                return machine
            if now - started_at > check_budget_s(machine.config.checks):
                raise GateFailed(describe_checks(machine))
        if now > hard_deadline:
            state = "" if machine.state == "started" else f" (state {machine.state})"
            raise GateFailed(f"{describe_checks(machine)}{state} after {opts.health_timeout_s:g}s")
        await asyncio.sleep(opts.poll_s)


async def health_gate(ctx: StepContext, step: Step) -> str:
    """Run ``gate.health`` for ``step.region`` and return what passed, one line.

    Raises:
        GateFailed: a machine is missing, on another release or version, not started or
            failing a check, or the app does not answer ``/status`` from the region.
    """
    region = step.region
    slots = _slots(step.params.get("slots"))
    deadline = time.monotonic() + ctx.options.gate_timeout_s
    while True:
        try:
            problem = await _region_problem(ctx, region, slots)
        except (FlyAPIError, FlyTransportError) as exc:
            problem = f"cannot list machines: {exc}"
        if problem is None:
            answer = await ctx.probe.status(region=region)
            answered_in = answer.region
            if answer.ok and (answered_in is None or answered_in == region):
                count = len(slots) if slots else "all"
                return (
                    f"{region}: {count} machine(s) on {ctx.release}, checks passing; "
                    f"/status 200 from {answer.machine_id or 'the proxy'}"
                )
            if answer.ok:
                problem = f"/status through the proxy answered from {answered_in}, not {region}"
            else:
                problem = f"/status through the proxy (fly-prefer-region {region}): " + (
                    answer.describe()
                )
        if time.monotonic() > deadline:
            raise GateFailed(f"{region}: health gate failed: {problem}")
        await asyncio.sleep(ctx.options.poll_s)


async def _region_problem(ctx: StepContext, region: str, slots: Sequence[int]) -> str | None:
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
        release = machine.metadata.get(META_RELEASE)
        if release != ctx.release:
            return f"{label} is on release {release or 'unknown'}, not {ctx.release}"
        expected = ctx.state.versions.get(machine.id)
        if expected is not None and machine.version != expected:
            return f"{label} is at version {machine.version}, not the expected {expected}"
        if machine.state != "started":
            return f"{label} is {machine.state}, not started"
        if machine.config.checks and not machine.checks_passing:
            return describe_checks(machine)
    return None


def _slots(value: Any) -> list[int]:
    if not isinstance(value, list | tuple):
        return []
    return sorted(int(v) for v in value if isinstance(v, int) and not isinstance(v, bool))


async def metrics_gate(ctx: StepContext, step: Step) -> str:
    """Run ``gate.metrics`` for ``step.region``: a hook, not evaluated yet.

    The bake-window check of error rate and p95 latency from ``/metrics`` comes with the staged
    global rollout; until then the gate passes and says it did not look.
    """
    bake = step.params.get("bake_s", 0)
    ctx.note(
        f"{step.region}: metrics gate not evaluated yet (bake {bake}s, "
        f"max error rate {step.params.get('max_error_rate')}, "
        f"max p95 {step.params.get('max_p95_ms')} ms)",
        step_id=step.id,
        region=step.region,
    )
    return f"{step.region}: metrics gate not evaluated (not built yet)"
