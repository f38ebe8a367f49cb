"""Measure planning a release over a large synthetic fleet: time and memory, no server.

The fleet is N machines spread over K regions (waves: the primary alone, then up to three
regions, then the rest), all at spec on image ``v1`` and started with passing checks. It is
built as the JSON the Machines API lists, parsed with the client's models, turned into a Fleet
(``fleet_from_api``) and planned for image ``v2`` (``build_plan``): one update per machine plus
the gates. ``--sweep`` runs N = 1000, 3000, 10000, 30000, each in a fresh subprocess so that
the peak RSS is per size.

    .venv/bin/python bench/plan.py --machines 10000 [--regions 10] [--json] [--profile]
    .venv/bin/python bench/plan.py --sweep [--json]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import itertools
import json
import pstats
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, log, peak_rss_mb, rss_mb
from bench.fleet import IMAGE_V1, IMAGE_V2, REGION_ORDER, FleetShape, fleet_json, spread
from bench.fleet import synthetic_spec as make_spec
from orchestrator.fly.models import Machine, Volume
from orchestrator.plan import build_plan, fleet_from_api

SWEEP = (1000, 3000, 10000, 30000)
# Each size of the sweep gets this long before it is reported as timed out.
SWEEP_TIMEOUT_S = 900.0


def waves_for(codes: list[str]) -> tuple[tuple[str, ...], ...]:
    """Return the waves of a K-region fleet: the primary, then up to three, then the rest."""
    waves = [tuple(codes[:1]), tuple(codes[1:4]), tuple(codes[4:])]
    return tuple(w for w in waves if w)


def _hot_spots(profiler: cProfile.Profile, limit: int = 15) -> list[dict[str, Any]]:
    """Return the functions with the most cumulative time under ``build_plan``."""
    stats = pstats.Stats(profiler)
    rows: list[dict[str, Any]] = []
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, line, name), (_cc, ncalls, tottime, cumtime, _callers) in raw.items():
        where = Path(filename)
        short = (
            f"{where.parent.name}/{where.name}:{line}({name})"
            if "orchestrator" in filename or "networkx" in filename
            else f"{name}"
        )
        rows.append(
            {
                "function": short,
                "calls": ncalls,
                "tottime_s": round(tottime, 4),
                "cumtime_s": round(cumtime, 4),
            }
        )
    rows.sort(key=lambda r: r["tottime_s"], reverse=True)
    return rows[:limit]


def run_one(machines: int, regions: int, *, profile: bool, repeat: int = 3) -> dict[str, Any]:
    """Plan an image change over ``machines`` machines in ``regions`` regions; return figures.

    The plan is built ``repeat`` times (the previous one dropped first, so the peak RSS is that
    of one plan); ``plan_s`` is the fastest run, which is the least disturbed by a busy host.
    """
    counts = spread(machines, regions)
    shape = FleetShape(counts=counts, waves=waves_for(list(counts)))
    spec = make_spec(shape, IMAGE_V1)
    rss_start = rss_mb()
    t0 = time.perf_counter()
    machines_json, volumes_json = fleet_json(spec)
    build_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    parsed_m = [Machine.from_api(m) for m in machines_json]
    parsed_v = [Volume.from_api(v) for v in volumes_json]
    parse_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    fleet = fleet_from_api(spec.app, parsed_m, parsed_v)
    fleet_s = time.perf_counter() - t0
    rss_input = rss_mb()

    profiler = cProfile.Profile() if profile else None
    runs: list[float] = []
    plan = None
    for _ in range(1 if profile else max(1, repeat)):
        plan = None
        gc.collect()
        t0 = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        plan = build_plan(spec, fleet, image=IMAGE_V2)
        if profiler is not None:
            profiler.disable()
        runs.append(time.perf_counter() - t0)
    assert plan is not None
    plan_s = min(runs)

    t0 = time.perf_counter()
    order = plan.steps()
    steps_s = time.perf_counter() - t0
    updates = sum(1 for s in order if s.kind.value == "machine.update")
    if updates != machines:
        raise SystemExit(f"expected {machines} updates, the plan has {updates}")

    result: dict[str, Any] = {
        "machines": machines,
        "regions": regions,
        "steps": plan.graph.number_of_nodes(),
        "edges": plan.graph.number_of_edges(),
        "waves": [len(w) for w in plan.waves],
        "plan_s": round(plan_s, 4),
        "plan_us_per_machine": round(plan_s / machines * 1e6, 1),
        "plan_s_runs": [round(r, 4) for r in runs],
        "parse_s": round(parse_s, 4),
        "fleet_s": round(fleet_s, 4),
        "steps_order_s": round(steps_s, 4),
        "input_build_s": round(build_s, 4),
        "peak_rss_mb": peak_rss_mb(),
        "rss_start_mb": rss_start,
        "rss_with_fleet_mb": rss_input,
        "profiled": profile,
    }
    if profiler is not None:
        result["hot_spots"] = _hot_spots(profiler)
    return result


def sweep(regions: int, *, profile: bool, repeat: int) -> dict[str, Any]:
    """Run every size of :data:`SWEEP` in its own subprocess and collect the results."""
    runs: list[dict[str, Any]] = []
    for n in SWEEP:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--machines", str(n)]
        cmd += ["--regions", str(regions), "--repeat", str(repeat), "--json"]
        cmd += ["--profile"] if profile else []
        log(f"plan: {n} machines over {regions} regions ...")
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=SWEEP_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            runs.append({"machines": n, "regions": regions, "error": "timed out"})
            continue
        if proc.returncode != 0:
            runs.append({"machines": n, "error": proc.stderr.strip().splitlines()[-1:]})
            continue
        run = json.loads(proc.stdout)
        log(f"plan: {n} machines: {run['plan_s']} s, peak RSS {run['peak_rss_mb']} MiB")
        runs.append(run)
    ok = [r for r in runs if "plan_s" in r]
    growth = [
        {
            "from": a["machines"],
            "to": b["machines"],
            "machines_x": round(b["machines"] / a["machines"], 2),
            "plan_s_x": round(b["plan_s"] / a["plan_s"], 2) if a["plan_s"] else None,
            "peak_rss_x": round(b["peak_rss_mb"] / a["peak_rss_mb"], 2),
        }
        for a, b in itertools.pairwise(ok)
    ]
    return {"benchmark": "plan.sweep", "regions": regions, "runs": runs, "growth": growth}


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run the benchmark, print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--machines", type=int, default=10000, help="machines in the fleet")
    parser.add_argument(
        "--regions",
        type=int,
        default=10,
        help=f"regions the machines are spread over (1..{len(REGION_ORDER)})",
    )
    parser.add_argument("--sweep", action="store_true", help="run N = 1000, 3000, 10000, 30000")
    parser.add_argument("--profile", action="store_true", help="profile build_plan (cProfile)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="plans built per size; the fastest is reported"
    )
    parser.add_argument("--json", action="store_true", help="one-line JSON (else indented)")
    args = parser.parse_args(argv)
    if args.sweep:
        result = sweep(args.regions, profile=args.profile, repeat=args.repeat)
    else:
        figures = run_one(args.machines, args.regions, profile=args.profile, repeat=args.repeat)
        result = {"benchmark": "plan", **figures}
    emit(result, compact=args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
