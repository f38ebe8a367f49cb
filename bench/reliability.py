"""Run the reliability matrices long: many fault seeds, every crash point on its own.

The CI suite (``tests/reliability``) runs twenty seeds per scenario and chains crash points to
stay within its time budget; this script runs the same code (``tests/reliability/matrix.py``,
``crashes.py``, ``harness.py``) with as many seeds as asked, a fault rate that can be turned
up until runs fail (to exercise the clean-failure-then-resume path), and every crash point
killed and resumed to the end on its own. It prints one JSON object on stdout (the figures
docs/reliability.md quotes); progress goes to stderr.

```sh
.venv/bin/python bench/reliability.py --seeds 100 --json             # ~10 min on 2 cores
.venv/bin/python bench/reliability.py --seeds 30 --rate-scale 4      # heavy faults: runs fail
.venv/bin/python bench/reliability.py --seeds 0 --crashes independent
.venv/bin/python bench/reliability.py --seeds 5 --first-seed 1234    # replay seeds 1234...
```

A seed replays: the local Fly draws its faults from ``random.Random(seed)``, so the same seed
and the same sequence of calls fire the same faults (the order of concurrent calls can differ
from run to run, so a replay is close, not exact).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# The matrices live with the tests (they are the CI suite's own code); import them from there.
sys.path[:0] = [str(REPO / "tests"), str(REPO)]

from bench.common import emit, log  # noqa: E402


def _faults(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    from reliability.harness import in_threads, rigs
    from reliability.matrix import run_seeds, schedule, summarize

    n, first = args.seeds, args.first_seed
    deploys = list(range(first, first + n))
    rollbacks = list(range(first + 10_000, first + 10_000 + n))
    scales = list(range(first + 20_000, first + 20_000 + n))
    names = [f"deploy-{i}" for i in range(args.deploy_rigs)]
    names += [f"scale-{i}" for i in range(args.scale_rigs)]
    started = time.monotonic()
    with rigs([base / name for name in names]) as fleets:
        by_name = {rig.root.name: rig for rig in fleets}
        work: dict[str, Any] = {}
        for i in range(args.deploy_rigs):
            rig = by_name[f"deploy-{i}"]
            plan = schedule(deploys[i :: args.deploy_rigs], rollbacks[i :: args.deploy_rigs])
            work[rig.root.name] = lambda rig=rig, plan=plan: run_seeds(
                rig, plan, rate_scale=args.rate_scale, log=log
            )
        for i in range(args.scale_rigs):
            rig = by_name[f"scale-{i}"]
            plan = [("scale", s) for s in scales[i :: args.scale_rigs]]

            def scale_work(rig: Any = rig, plan: Any = plan) -> Any:
                setup = rig.deploy()
                if not setup.ok:
                    raise RuntimeError(f"setup deploy failed: {setup.error}")
                return run_seeds(rig, plan, rate_scale=args.rate_scale, log=log)

            work[rig.root.name] = scale_work
        results = in_threads(work)
    crashed = {k: repr(v) for k, v in results.items() if isinstance(v, BaseException)}
    reports = [r for v in results.values() if not isinstance(v, BaseException) for r in v]
    figures = summarize(reports)
    figures["crashed_workers"] = crashed
    figures["rate_scale"] = args.rate_scale
    figures["wall_s"] = round(time.monotonic() - started, 1)
    return figures


def _crashes(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    from reliability.crashes import CREATE_CHAINS, chains, rollout_points, run_chains
    from reliability.harness import in_threads, rigs

    started = time.monotonic()
    with rigs([base / f"crash-{i}" for i in range(args.crash_rigs)]) as fleets:
        probe = fleets[0]
        if not probe.deploy().ok:
            raise RuntimeError("the probe fleet's first deploy failed")
        probe.set_image("probe")
        points = rollout_points(probe)
        probe.set_image("v1")
        if args.crashes == "chained":
            work_chains = chains(points, ["syd"])
        else:
            work_chains = [[p] for p in points]
        work_chains = work_chains * args.crash_rounds
        work: dict[str, Any] = {}
        for i, rig in enumerate(fleets):
            mine: list[tuple[list[str], str | None]] = []
            if i > 0:
                mine.append((list(CREATE_CHAINS[(i - 1) % len(CREATE_CHAINS)]), None))
            mine.extend(
                (chain, f"b{n}") for n, chain in enumerate(work_chains) if n % len(fleets) == i
            )
            work[rig.root.name] = lambda rig=rig, mine=mine: run_chains(rig, mine, log)
        results = in_threads(work)
    crashed = {k: repr(v) for k, v in results.items() if isinstance(v, BaseException)}
    reports = [r for v in results.values() if not isinstance(v, BaseException) for r in v]
    return {
        "mode": args.crashes,
        "rollouts": len(reports),
        "kills": sum(len(r.killed) for r in reports),
        "distinct_points": len({p for r in reports for p in r.killed}),
        "resumed_to_the_end": sum(1 for r in reports if r.resumed == 0),
        "problems": [f"{r.points}: {p}" for r in reports for p in r.problems],
        "crashed_workers": crashed,
        "wall_s": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100, help="seeds per fault scenario")
    parser.add_argument("--first-seed", type=int, default=5000, help="the first seed")
    parser.add_argument(
        "--rate-scale", type=float, default=1.0, help="multiply every fault rate (4: runs fail)"
    )
    parser.add_argument("--deploy-rigs", type=int, default=5, help="fleets that deploy/roll back")
    parser.add_argument("--scale-rigs", type=int, default=1, help="fleets that scale")
    parser.add_argument(
        "--crashes",
        choices=("none", "chained", "independent"),
        default="independent",
        help="crash matrix: none, chained (as CI), or every point resumed on its own",
    )
    parser.add_argument("--crash-rounds", type=int, default=1, help="times through the points")
    parser.add_argument("--crash-rigs", type=int, default=3, help="fleets for the crash matrix")
    parser.add_argument("--keep", action="store_true", help="keep the fleet directories")
    parser.add_argument("--json", action="store_true", help="print the result on one line")
    args = parser.parse_args()

    import logging

    import stamina

    stamina.set_testing(False)
    # As tasks.py: a retry is expected here; only a call that finally fails says something.
    logging.getLogger("stamina").setLevel(logging.ERROR)
    base = Path(tempfile.mkdtemp(prefix="bench-reliability-"))
    log(f"fleets under {base}")
    result: dict[str, Any] = {"seeds_per_scenario": args.seeds}
    try:
        if args.seeds > 0:
            result["faults"] = _faults(args, base)
        if args.crashes != "none":
            result["crashes"] = _crashes(args, base)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    emit(result, compact=args.json)


if __name__ == "__main__":
    main()
