"""Deploys, rollbacks and scales converge under seeded API faults (the fault matrix).

The local Fly answers a share of the calls to every operation the orchestrator uses with 429,
500, 502 or 503, drops the connection before or after doing the call, or holds it past the
client's timeout (see `tests.reliability.matrix`). Twelve seeds per scenario run here (a
hundred with ``--runslow``; more in ``bench/reliability.py``), on four fleets at once: three
deploy and roll back in turn, one scales. Every seed must end with the fleet at the desired
release (or, after a rollback, the region on the release it went back to), one machine per
slot, no orphan volume, no lease outliving its TTL and every acknowledged record on every
machine: straight away, or after a clean failure and the documented way to finish.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest

from .harness import OPERATIONS, Rig, in_threads, rigs
from .matrix import SeedReport, run_seeds, schedule, summarize

pytestmark = pytest.mark.timeout(900)

SEEDS = 12
SLOW_SEEDS = 100
# Fleets at once (they mostly wait on machines and checks): deploys take longest, so most deploy.
# Three deploy fleets run four deploys and four rollbacks each while the scale fleet runs its
# twelve scales (about half a deploy each): the four end together.
DEPLOY_RIGS = 3
SCALE_RIGS = 1


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def test_deploys_rollbacks_and_scales_converge_under_seeded_faults(
    tmp_path_factory: pytest.TempPathFactory, runslow: bool
) -> None:
    n = SLOW_SEEDS if runslow else SEEDS
    deploy_seeds = list(range(1000, 1000 + n))
    rollback_seeds = list(range(3000, 3000 + n))
    scale_seeds = list(range(2000, 2000 + n))
    base = tmp_path_factory.mktemp("faults")
    names = [f"deploy-{i}" for i in range(DEPLOY_RIGS)] + [f"scale-{i}" for i in range(SCALE_RIGS)]
    with rigs([base / name for name in names]) as started:
        by_name = {rig.root.name: rig for rig in started}
        work: dict[str, Callable[[], Any]] = {}
        for i in range(DEPLOY_RIGS):
            rig = by_name[f"deploy-{i}"]
            plan = schedule(deploy_seeds[i::DEPLOY_RIGS], rollback_seeds[i::DEPLOY_RIGS])
            work[rig.root.name] = lambda rig=rig, plan=plan: run_seeds(rig, plan, log=_log)
        for i in range(SCALE_RIGS):
            rig = by_name[f"scale-{i}"]
            plan = [("scale", s) for s in scale_seeds[i::SCALE_RIGS]]

            def scale_work(rig: Rig = rig, plan: list[tuple[str, int]] = plan) -> list[SeedReport]:
                setup = rig.deploy()
                assert setup.outcome == "succeeded", setup.error
                return run_seeds(rig, plan, log=_log)

            work[rig.root.name] = scale_work
        results = in_threads(work)
    crashed = {name: r for name, r in results.items() if isinstance(r, BaseException)}
    assert not crashed, crashed
    reports: list[SeedReport] = [rep for r in results.values() for rep in r]
    figures = summarize(reports)
    _log(f"fault matrix: {figures}")

    for problem in figures["problems"]:
        _log(f"PROBLEM {problem}")
    assert figures["problems"] == []
    assert figures["by_scenario"] == {"deploy": n, "rollback": n, "scale": n}
    # Nothing was called outside the list, and every operation called often got faults (the
    # rare ones, such as Apps_create once per fleet, get theirs over more seeds: --runslow or
    # bench/reliability.py).
    called = set(figures["calls_by_operation"])
    assert called <= set(OPERATIONS), called - set(OPERATIONS)
    unfaulted = [
        op
        for op in OPERATIONS
        if figures["calls_by_operation"].get(op, 0) >= 60 and not figures["faults_by_operation"][op]
    ]
    assert not unfaulted, unfaulted
    assert all(figures["faults_by_kind"].values()), figures["faults_by_kind"]
