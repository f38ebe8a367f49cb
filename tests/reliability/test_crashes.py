"""SIGKILL the orchestrator at every step boundary of a two-wave rollout; ``--resume`` converges.

Every kill point of a rollout of the sample fleet (21: each step's start and end, and each
update right after Fly answered it) plus six points inside first deploys' creates. Three
fleets share the work; a rollout is a fresh release deployed with the kill hook set, killed at
its first point, resumed by a new ``invoke deploy --resume`` killed at its next point, and so
on; the last resume runs to the end; a writer sends records to the primary throughout (see
`tests.reliability.crashes`). With ``--runslow`` every point also gets a rollout of its own.
"""

from __future__ import annotations

import sys

import pytest

from .crashes import CREATE_CHAINS, CrashReport, chains, rollout_points, run_chains
from .harness import in_threads, rigs

pytestmark = pytest.mark.timeout(900)

RIGS = 3


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def test_a_kill_at_any_step_boundary_is_resumed_to_the_release(
    tmp_path_factory: pytest.TempPathFactory, runslow: bool
) -> None:
    base = tmp_path_factory.mktemp("crashes")
    with rigs([base / f"crash-{i}" for i in range(RIGS)]) as fleets:
        # The rollout's points, from the plan a release change makes on a deployed fleet.
        probe = fleets[0]
        first = probe.deploy()
        assert first.outcome == "succeeded", first.error
        probe.set_image("probe")
        points = rollout_points(probe)
        probe.set_image("v1")
        assert len(points) >= 20, points
        first_wave = ["syd"]
        work_chains = chains(points, first_wave)
        if runslow:  # every point also alone: killed once, resumed to the end
            work_chains += [[p] for p in points]
        work = {}
        for i, rig in enumerate(fleets):
            mine: list[tuple[list[str], str | None]] = []
            if i > 0:  # the probe fleet is deployed already; the others start empty
                mine.append((list(CREATE_CHAINS[(i - 1) % len(CREATE_CHAINS)]), None))
            mine.extend((chain, f"c{n}") for n, chain in enumerate(work_chains) if n % RIGS == i)
            work[rig.root.name] = lambda rig=rig, mine=mine: run_chains(rig, mine, _log)
        results = in_threads(work)
    crashed = {name: r for name, r in results.items() if isinstance(r, BaseException)}
    assert not crashed, crashed
    reports: list[CrashReport] = [rep for r in results.values() for rep in r]
    distinct = {p for r in reports for p in r.killed}
    kills = sum(len(r.killed) for r in reports)
    _log(f"crash matrix: {kills} kills in {len(reports)} rollouts, {len(distinct)} distinct points")
    problems = [f"{r.points}: {p}" for r in reports for p in r.problems]
    assert problems == []
    creates = {p for i in range(1, RIGS) for p in CREATE_CHAINS[(i - 1) % len(CREATE_CHAINS)]}
    assert distinct == set(points) | creates
