"""Run a wave's metrics gate as PromQL checks against a Prometheus-compatible API.

When the wave has queries (``[[defaults.query]]`` / ``[[wave.query]]`` in
``regions/waves.toml``, `orchestrator.fleetconfig.promql`), ``gate.metrics`` sends its bake
traffic as usual and then, instead of reading each machine's ``/metrics``, asks Prometheus:

- **absolute**: each query, with ``$app``, ``$region`` and ``$window`` filled in, evaluated at
  the end of the bake, must satisfy ``comparison threshold``;
- **baseline** (as Kayenta compares a canary with its baseline): with ``baseline = r``, the
  same query evaluated at the moment the region's first machine began to change (so its window
  covers the old release only) gives the old release's value; the new one may be worse by a
  factor of ``r`` at most (higher for ``<``/``<=`` checks, lower for ``>``/``>=``). A release
  three times slower than the old one fails a ``baseline = 2`` latency check even when it is
  well under the absolute threshold.

A query that returns no value (no data, or ``NaN``) fails its absolute check; a missing
baseline value is said and not judged. A Prometheus that cannot be reached fails the gate, as
an unreadable ``/metrics`` does: the release could not be verified. The endpoint is set for the
run in `PROMETHEUS` (`resolve_endpoint`); the API token goes only to Fly's own Prometheus.
"""

from __future__ import annotations

import asyncio
import math
import operator
import string
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import ConfigError, DeployError, GateFailed
from orchestrator.execute.context import StepContext
from orchestrator.execute.events import StepProgress
from orchestrator.fleetconfig.promql import PrometheusSource, PromQuery
from orchestrator.fly.prometheus import PromEndpoint, PrometheusAPI, PromQueryError
from orchestrator.plan.steps import Step
from orchestrator.settings import Settings

__all__ = ["PROMETHEUS", "PromEndpoint", "QueryResult", "judge_query", "promql_gate"]

# How long a check without data yet is asked again before "no data" fails it.
NO_DATA_WAIT_S = 30.0
_COMPARE: Mapping[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


# The run's Prometheus (set by the deploy around the executor; None: no PromQL gates).
PROMETHEUS: ContextVar[PromEndpoint | None] = ContextVar("PROMETHEUS", default=None)


def resolve_endpoint(settings: Settings, source: PrometheusSource) -> PromEndpoint:
    """Return where ``source`` answers; ``"local"`` starts the local Fly's Prometheus if needed.

    Raises:
        ConfigError: ``"local"`` on Fly.io, or ``"fly"`` without an API token.
    """
    where = "regions/waves.toml: prometheus.url"
    if source.url == "local":
        if settings.backend != "local":
            raise ConfigError(
                '"local" is the local Fly\'s Prometheus; on Fly.io use "fly" or a URL',
                where=where,
            )
        from orchestrator.localfly import prometheus

        return PromEndpoint(prometheus.start(settings.local_state_dir).url + "/")
    base = source.base_url() or ""
    if source.url != "fly":
        return PromEndpoint(base)
    secret = settings.token.reveal() if settings.token is not None else ""
    if not secret:
        raise ConfigError("Fly's Prometheus needs the API token: set FLY_API_TOKEN", where=where)
    auth = secret if secret.startswith("FlyV1 ") else f"Bearer {secret}"
    return PromEndpoint(base, {"Authorization": auth})


@dataclass(frozen=True, slots=True)
class QueryResult:
    """One PromQL check: what it measured and what was wrong.

    Attributes:
        query: the check.
        value: the new release's value (``None``: no data).
        baseline_value: the old release's value (``None``: not asked, or no data).
        ratio: how many times worse the new value is than the old one (``None``: not judged).
        problem: why the check fails (``None``: it passes).
        note: something said without failing (no baseline data).
    """

    query: PromQuery
    value: float | None
    baseline_value: float | None = None
    ratio: float | None = None
    problem: str | None = None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the figures as JSON-ready values."""
        return {
            **self.query.to_params(),
            "value": self.value,
            "baseline_value": self.baseline_value,
            "ratio": None if self.ratio is None else round(self.ratio, 3),
            "passed": self.problem is None,
            "problem": self.problem,
            "note": self.note,
        }

    def describe(self) -> str:
        """Return one phrase: the value against its bounds."""
        q = self.query
        value = "no data" if self.value is None else f"{self.value:.4g}"
        text = f"{q.name} {value} ({q.comparison} {q.threshold:g}"
        if self.ratio is not None and q.baseline is not None:
            text += f"; {self.ratio:.2f}x the old release, at most {q.baseline:g}x"
        return text + ")"


def judge_query(q: PromQuery, value: float | None, baseline: float | None) -> QueryResult:
    """Hold ``value`` to the query's threshold and, if it has one, to the old release's value."""
    if value is None:
        return QueryResult(q, None, baseline, problem=f"{q.name}: the query returned no data")
    if not _COMPARE[q.comparison](value, q.threshold):
        problem = f"{q.name} {value:.4g} is not {q.comparison} {q.threshold:g}"
        return QueryResult(q, value, baseline, problem=problem)
    if q.baseline is None:
        return QueryResult(q, value)
    if baseline is None or baseline == 0:
        return QueryResult(
            q, value, baseline, note=f"{q.name}: no value for the old release to compare with"
        )
    lower_is_better = q.comparison in ("<", "<=")
    worse = value / baseline if lower_is_better else baseline / value if value else math.inf
    if worse > q.baseline:
        return QueryResult(
            q,
            value,
            baseline,
            ratio=worse,
            problem=(
                f"{q.name} {value:.4g} is {worse:.2f}x the old release's {baseline:.4g} "
                f"(at most {q.baseline:g}x)"
            ),
        )
    return QueryResult(q, value, baseline, ratio=worse)


def _render(q: PromQuery, app: str, region: str) -> str:
    window = f"{max(1, round(q.window_s * 1000))}ms"
    return string.Template(q.query).safe_substitute(app=app, region=region, window=window)


async def _query(api: PrometheusAPI, promql: str, at: float) -> float | None:
    """Evaluate ``promql`` at ``at`` (Unix seconds).

    Raises:
        GateFailed: Prometheus could not be asked, or refused the query.
    """
    try:
        return await api.query(promql, at)
    except PromQueryError as exc:
        raise GateFailed(str(exc)) from exc


def _queries(step: Step) -> list[PromQuery]:
    out = []
    for raw in step.params.get("queries") or []:
        out.append(
            PromQuery(
                name=str(raw["name"]),
                query=str(raw["query"]),
                comparison=str(raw["comparison"]),
                threshold=float(raw["threshold"]),
                window_s=float(raw["window_s"]),
                baseline=None if raw.get("baseline") is None else float(raw["baseline"]),
            )
        )
    return out


async def _evaluate(
    ctx: StepContext, step: Step, api: PrometheusAPI, began: float | None
) -> list[QueryResult]:
    """Run every check; while one has no data yet, ask again (the bake traffic goes on).

    A machine a scrape has not reached yet has no series: Prometheus finds new targets within
    seconds (Fly's scrapes are every 15 s), which is no verdict on the release.
    """
    deadline = time.monotonic() + NO_DATA_WAIT_S
    while True:
        now = time.time()
        results: list[QueryResult] = []
        for q in _queries(step):
            promql = _render(q, ctx.app, step.region)
            value = await _query(api, promql, now)
            old = await _query(api, promql, began) if q.baseline and began else None
            result = judge_query(q, value, old)
            if q.baseline and began is None and result.problem is None:
                result = QueryResult(
                    q, value, note=f"{q.name}: the region changed in an earlier run; no baseline"
                )
            results.append(result)
        if all(r.value is not None for r in results) or time.monotonic() >= deadline:
            return results
        ctx.bus.emit(StepProgress(step, "waiting for Prometheus to have data"))
        await asyncio.sleep(1.0)  # polling Prometheus for the first samples, with a deadline


async def promql_gate(ctx: StepContext, step: Step, traffic: Any) -> str:
    """Bake the region with ``traffic``, then run the wave's PromQL checks; return the figures.

    ``traffic(stop)`` sends the bake's requests until ``stop`` is set (the gate's own load).

    Raises:
        GateFailed: a check failed, returned no data, or Prometheus could not be asked.
        DeployError: the run has no Prometheus (the wave has queries but none was configured).
    """
    endpoint = PROMETHEUS.get()
    if endpoint is None:
        raise DeployError(f"{step.region}: the wave has PromQL checks but no [prometheus] is set")
    region = step.region
    bake_s = float(step.params.get("bake_s") or 0.0)
    began = ctx.state.region_began.get(region)
    stop = asyncio.Event()
    load = asyncio.create_task(traffic(stop))
    started = time.monotonic()
    try:
        while (left := started + bake_s - time.monotonic()) > 0:
            await asyncio.sleep(min(left, max(0.5, bake_s / 4)))
            done = time.monotonic() - started
            ctx.bus.emit(StepProgress(step, f"baking {done:.1f}/{bake_s:g}s before the queries"))
        async with PrometheusAPI(endpoint) as api:
            results = await _evaluate(ctx, step, api, began)
    finally:
        stop.set()
        await load
    ctx.journal.step_result(ctx.run, step.id, {"promql": [r.to_json() for r in results]})
    problems = [r.problem for r in results if r.problem]
    notes = [r.note for r in results if r.note]
    figures = "; ".join(r.describe() for r in results)
    if problems:
        raise GateFailed(f"metrics gate failed: {region}: {'; '.join(problems)}")
    tail = f"; {'; '.join(notes)}" if notes else ""
    return f"{region}: PromQL checks passed: {figures}{tail}"
