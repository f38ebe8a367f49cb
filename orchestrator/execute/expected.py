"""Pick the durations a rollout's ETA is worked out with: Fly.io's, or the local Fly's profile.

On Fly.io the estimate uses Fly's typical operation times (`orchestrator.plan.eta.FLY_TYPICAL`).
On the local Fly it uses the running server's profile and time factor (``server.json``), so a
``fast`` local Fly is expected to take little more than its check grace periods; a local Fly
not running yet will start with the ``fast`` profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from orchestrator.execute.gates import SMOKE_WINDOW_S
from orchestrator.execute.results import StepReport, WaveTiming
from orchestrator.fleetconfig.load import load_spec
from orchestrator.localfly.profiles import Span, get_profile
from orchestrator.localfly.statedir import read_server_info
from orchestrator.plan.eta import FLY_TYPICAL, Durations, Estimate, estimate
from orchestrator.plan.model import Plan
from orchestrator.settings import Settings

__all__ = ["durations_for", "plan_estimate", "wave_timings"]

# A region's typical distance from the local Fly's "nearest" region, for its latency term.
_TYPICAL_KM = 5000.0


def _mean(span: Span) -> float:
    return (span.lo + max(span.lo, span.hi)) / 2.0


def durations_for(settings: Settings) -> Durations:
    """Return the durations for ``settings``' backend (reads ``server.json`` when local)."""
    if settings.backend == "fly":
        return FLY_TYPICAL
    info = read_server_info(settings.local_state_dir) or {}
    name = str(info.get("profile") or "fast")
    factor = info.get("time_factor")
    tf = float(factor) if isinstance(factor, int | float) and factor > 0 else 1.0
    try:
        profile = get_profile(name, tf)
    except ValueError:
        profile = get_profile("fast")
    api = (profile.api_base_s + profile.api_per_1000km_s * _TYPICAL_KM / 1000.0) * tf
    return Durations(
        api_s=api,
        create_s=_mean(profile.create) * tf,
        update_s=_mean(profile.update) * tf,
        stop_s=_mean(profile.stop) * tf,
        check_scale=profile.check_scale,
        smoke_s=SMOKE_WINDOW_S,
        source=f"the local Fly's {profile.name} profile" + (f" x{tf:g}" if tf != 1.0 else ""),
    )


def plan_estimate(settings: Settings, plan: Plan) -> Estimate:
    """Return how long ``plan`` should take here (reads the spec for ``max_unavailable``)."""
    spec = load_spec(settings.root)
    budget = {code: r.max_unavailable for code, r in spec.regions.items()}
    return estimate(plan, durations_for(settings), budget)


def _at(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def wave_timings(plan: Plan, eta: Estimate, steps: Sequence[StepReport]) -> tuple[WaveTiming, ...]:
    """Return each wave's expected time beside its actual one, from the deploy's step reports."""
    expected = {w.wave: w.seconds for w in eta.waves}
    spans: dict[int, list[float]] = {}
    for s in steps:
        start, end = _at(s.started_at), _at(s.finished_at)
        if s.phase != "deploy" or start is None or end is None:
            continue
        span = spans.setdefault(s.wave, [start, end])
        span[0], span[1] = min(span[0], start), max(span[1], end)
    return tuple(
        WaveTiming(
            wave=i,
            regions=regions,
            expected_s=expected.get(i, 0.0),
            actual_s=(spans[i][1] - spans[i][0]) if i in spans else None,
        )
        for i, regions in enumerate(plan.waves, start=1)
    )
