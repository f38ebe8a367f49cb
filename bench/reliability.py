"""Run the reliability matrices long: many fault seeds, every crash and interrupt point.

The CI suite (``tests/reliability``) runs twelve seeds per scenario, chains crash points and
runs a few points of each interrupt matrix to stay within its time budget; this script runs the
same code (``tests/reliability/matrix.py``, ``crashes.py``, ``interrupts.py``, ``harness.py``)
with as many seeds as asked, a fault rate that can be turned up until runs fail (to exercise
the clean-failure-then-resume path), every crash point of a rollout killed and resumed to the
end on its own, and every point of the drill, scale, rollback and deploy interrupt matrices
(Ctrl-C or kill -9, then the documented recovery), ``--interrupt-rounds`` times each, one fleet
per matrix. It prints one JSON object on stdout (the figures docs/reliability.md quotes):
for the interrupt matrices, the points run and passed, the failures by point and the time;
progress goes to stderr.

```sh
.venv/bin/python bench/reliability.py --seeds 100 --json             # ~10 min on 2 cores
.venv/bin/python bench/reliability.py --seeds 30 --rate-scale 4      # heavy faults: runs fail
.venv/bin/python bench/reliability.py --seeds 0 --crashes independent
.venv/bin/python bench/reliability.py --seeds 0 --crashes none --interrupt-rounds 3
.venv/bin/python bench/reliability.py --seeds 0 --crashes none --interrupts drill,scale
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

_MATRIX_NAMES = ("drill", "scale", "rollback", "deploy")


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


def _interrupts(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    from reliability.harness import in_threads, rigs
    from reliability.interrupts import MATRICES, prepare

    chosen = [m for m in args.interrupts.split(",") if m]
    started = time.monotonic()
    with rigs([base / f"interrupt-{name}" for name in chosen]) as fleets:
        by_name = {rig.root.name.removeprefix("interrupt-"): rig for rig in fleets}
        work: dict[str, Any] = {}
        for name in chosen:
            points, run_point, key = MATRICES[name]

            def matrix(
                rig: Any = by_name[name],
                points: Any = points,
                run_point: Any = run_point,
                key: Any = key,
                name: str = name,
            ) -> dict[str, Any]:
                began = time.monotonic()
                prepare(rig)
                failures: dict[str, list[str]] = {}
                runs = 0
                for round_ in range(args.interrupt_rounds):
                    for point in points:
                        at = time.monotonic()
                        runs += 1
                        try:
                            run_point(rig, point, round_)
                        except AssertionError as exc:
                            lines = str(exc).strip().splitlines() or ["AssertionError"]
                            failures.setdefault(key(point), []).append(
                                f"round {round_}: {lines[0][:300]}"
                            )
                        took = time.monotonic() - at
                        ok = "failed" if key(point) in failures else "ok"
                        log(f"{name} {key(point)} round {round_}: {ok} in {took:.1f}s")
                return {
                    "points": len(points),
                    "rounds": args.interrupt_rounds,
                    "runs": runs,
                    "passed": runs - sum(len(v) for v in failures.values()),
                    "failures_by_point": failures,
                    "wall_s": round(time.monotonic() - began, 1),
                }

            work[name] = matrix
        results = in_threads(work)
    out: dict[str, Any] = {}
    for name, result in results.items():
        out[name] = result if not isinstance(result, BaseException) else {"crashed": repr(result)}
    done = [r for r in out.values() if "runs" in r]
    out["total"] = {
        "runs": sum(r["runs"] for r in done),
        "passed": sum(r["passed"] for r in done),
        "crashed_matrices": [n for n, r in out.items() if "crashed" in r],
        "wall_s": round(time.monotonic() - started, 1),
    }
    return out


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
    parser.add_argument(
        "--interrupts",
        default="drill,scale,rollback,deploy",
        help="interrupt matrices to run, comma-separated (drill, scale, rollback, deploy; "
        "'' for none)",
    )
    parser.add_argument(
        "--interrupt-rounds", type=int, default=1, help="times through each interrupt matrix"
    )
    parser.add_argument("--keep", action="store_true", help="keep the fleet directories")
    parser.add_argument("--json", action="store_true", help="print the result on one line")
    args = parser.parse_args()
    unknown = [m for m in args.interrupts.split(",") if m and m not in _MATRIX_NAMES]
    if unknown or args.interrupt_rounds < 1:
        known = ", ".join(_MATRIX_NAMES)
        parser.error(
            f"--interrupts: unknown matrix {', '.join(unknown)} (known: {known})"
            if unknown
            else "--interrupt-rounds: at least 1"
        )

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
        if args.interrupts.strip(","):
            result["interrupts"] = _interrupts(args, base)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    emit(result, compact=args.json)


if __name__ == "__main__":
    main()
