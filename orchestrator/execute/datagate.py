"""Run ``gate.data``: hold a wave while a replica region lags the primary beyond the RPO budget.

The lag of a replica region is its worst machine's: how many records it lacks (the primary's
``last_seq`` minus its own, both from the app's ``/status`` through the proxy) and how long the
oldest of those has waited (its ``at``, read from the primary's ``/records``). A region over
``rpo_records`` or ``rpo_seconds`` holds the wave, with one warning naming the region and the
lag; the gate polls until every region is within the budget, and fails after
``ExecuteOptions.lag_timeout_s``. A machine that does not answer is named in the result and
left to the health gates: its lag cannot be told.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from orchestrator.errors import DeployError
from orchestrator.execute.context import StepContext
from orchestrator.execute.volumes import primary_status
from orchestrator.plan.config import META_SLOT
from orchestrator.plan.steps import Step

__all__ = ["RegionLag", "data_gate"]


@dataclass(frozen=True, slots=True)
class RegionLag:
    """How far a replica region is behind the primary (its worst machine)."""

    region: str
    records: int
    seconds: float
    machine: str | None = None
    silent: tuple[str, ...] = ()

    def describe(self) -> str:
        """Say the lag in a few words."""
        return f"{self.region} lags the primary by {self.records} record(s), {self.seconds:.1f}s"


async def data_gate(ctx: StepContext, step: Step) -> str:
    """Hold until every replica region is within the RPO budget; fail at the deadline."""
    p = step.params
    primary_region = str(p.get("primary_region") or "")
    replicas = [str(r) for r in p.get("replicas") or ()]
    budget_records = int(p.get("rpo_records") or 0)
    budget_s = float(p.get("rpo_s") or 0.0)
    if not ctx.probe.reachable:
        return "not checked: the app has no public address (FLY_APP_URL=none)"
    budget = f"RPO budget {budget_records} record(s), {budget_s:g}s"
    timeout = ctx.options.lag_timeout_s
    deadline = time.monotonic() + timeout
    warned = False
    while True:
        lags = await _lags(ctx, primary_region, replicas)
        over = [x for x in lags if x.records > budget_records or x.seconds > budget_s]
        if not over:
            silent = [m for x in lags for m in x.silent]
            told = ", ".join(f"{x.region} {x.records} behind" for x in lags) or "no replica"
            extra = f"; no answer from {', '.join(silent)}" if silent else ""
            return f"replicas within the {budget}: {told}{extra}"
        text = "; ".join(x.describe() for x in over)
        if not warned:
            ctx.note(
                f"wave {step.wave} holds: {text} ({budget}); waiting up to {timeout:g}s",
                level="warning",
                step_id=step.id,
                region=over[0].region,
            )
            warned = True
        if time.monotonic() > deadline:
            raise DeployError(
                f"{text}, over the {budget} (regions/waves.toml [drill]) for {timeout:g}s: "
                f"wave {step.wave} did not start"
            )
        await asyncio.sleep(min(ctx.options.poll_s, 0.5))


async def _lags(ctx: StepContext, primary_region: str, replicas: Sequence[str]) -> list[RegionLag]:
    primary = await primary_status(ctx, primary_region)
    head = primary.body.get("last_seq")
    if not isinstance(head, int) or isinstance(head, bool):
        raise DeployError(f"the primary's /status in {primary_region} has no last_seq")
    writer = primary.machine_id
    out = []
    for region in replicas:
        worst: tuple[int, str] | None = None
        silent: list[str] = []
        machines = await ctx.client.list_machines(ctx.app, region=region)
        for m in sorted(machines, key=lambda m: m.id):
            if not m.metadata.get(META_SLOT) or m.state != "started":
                continue
            answer = await ctx.probe.status(machine_id=m.id)
            seq = answer.body.get("last_seq")
            if not isinstance(seq, int) or isinstance(seq, bool):
                silent.append(m.id)
                continue
            if worst is None or seq < worst[0]:
                worst = (seq, m.id)
        if worst is None:
            out.append(RegionLag(region, 0, 0.0, silent=tuple(silent)))
            continue
        behind = max(0, head - worst[0])
        seconds = await _oldest_missing_age(ctx, writer, worst[0]) if behind else 0.0
        out.append(RegionLag(region, behind, seconds, worst[1], tuple(silent)))
    return out


async def _oldest_missing_age(ctx: StepContext, writer: str | None, after: int) -> float:
    """Return how long ago the primary took the first record after ``after`` (0 if unknown)."""
    answer = await ctx.probe.request("GET", f"/records?after={after}&limit=1", machine_id=writer)
    records = answer.body.get("records") if answer.ok else None
    if not isinstance(records, list) or not records or not isinstance(records[0], dict):
        return 0.0
    at = records[0].get("at")
    try:
        when = datetime.fromisoformat(str(at).replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return max(0.0, (datetime.now(UTC) - when).total_seconds())
