"""Interrupt and crash matrices of the other fleet changes: drills, scales, rollbacks.

Deploy rollouts have their own crash matrix (`test_crashes.py`, `tests/rollout`). Here the
orchestrator runs as its own process and is stopped at a named point by its test hook
(`orchestrator.execute.failpoints`): ``kill -9`` (the process SIGKILLs itself, no cleanup) or
``sigint@`` (it sends itself SIGINT, as an operator's Ctrl-C, and handles it). Then the
documented recovery runs, and the end conditions are checked:

- **drills** (the primary region syd, so a promotion of dfw and a re-seed are part of it):
  stopped at phase boundaries; recovery is ``invoke drill --resume`` when the drill left its
  state, else nothing. While stopped, ``status`` never calls two primaries healthy. After
  recovery: one primary, in syd, the fleet at the spec (`check_converged`, the old primary's
  kept volumes allowed), no lease held, the region files untouched, the state file gone.
- **scales** (syd 2 → 3, 3 → 2, and a size change): stopped at step boundaries; the region
  file must not have moved, and the same ``invoke scale`` run again must reach the size and
  write the file, with every acknowledged record on every machine.
- **rollbacks** (from a deployed v2 back to v1): stopped at step boundaries; recovery is
  ``invoke deploy --resume`` (a stopped rollback is run again), ending on v1 everywhere with
  every acknowledged record kept.

- **deploys**: Ctrl-C'd during each wave (their kill -9 matrix is `test_crashes.py`); then
  ``invoke deploy --resume``.

CI runs a subset of each matrix (`CI`); ``--runslow`` runs every point (drills 14, scales 6,
rollbacks 6, deploys 2; 28 in all), and ``bench/reliability.py`` every point of every matrix,
several rounds. The points and the run of each live in `tests.reliability.interrupts`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .harness import Rig
from .interrupts import (
    DEPLOY_POINTS,
    DRILL_POINTS,
    ROLLBACK_POINTS,
    SCALE_POINTS,
    deploy_point,
    drill_point,
    prepare,
    rollback_point,
    scale_point,
)

pytestmark = pytest.mark.timeout(600)

# What CI runs: two points of each matrix, a Ctrl-C and a kill -9 (a drill stopped after its
# fault, by each; a scale-up and a scale-down; both waves of a rollback; both waves of a
# deploy). "sigint@update_sent:syd:machine.update:1" names a point of the scale matrix (the
# resize) and of the deploy matrix: nine tests in all. A drill stopped during or after its
# promotion costs a minute or more on two cores: `tests/drill/test_interrupt.py` stops the real
# command there in CI (one Ctrl-C, then two), and ``--runslow`` runs every point here.
CI = {
    "sigint@drill_phase_started:detect",
    "drill_phase_finished:fault",
    "sigint@step_started:syd:machine.create:3",
    "step_finished:syd:machine.destroy:2",
    "sigint@step_started:dfw:machine.update:1",
    "update_sent:ams:machine.update:1",
    "sigint@update_sent:syd:machine.update:1",
    "sigint@step_started:dfw:machine.update:2",
}


def _params(points: Any, key: Any = lambda p: p) -> list[Any]:
    return [
        pytest.param(p, id=str(key(p)), marks=() if key(p) in CI else pytest.mark.slow)
        for p in points
    ]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """A deployed sample fleet of the module's own, with short drill objectives."""
    rig = Rig.start(tmp_path_factory.mktemp("interrupts") / "fleet")
    try:
        prepare(rig)
        yield rig
    finally:
        rig.stop()


@pytest.mark.parametrize("point", _params(DRILL_POINTS))
def test_a_drill_stopped_anywhere_is_resumed_to_one_primary(rig: Rig, point: str) -> None:
    drill_point(rig, point)


@pytest.mark.parametrize("case", _params(SCALE_POINTS, key=lambda c: c[0]))
def test_a_scale_stopped_anywhere_keeps_its_file_and_finishes_when_run_again(
    rig: Rig, case: tuple[str, dict[str, int]]
) -> None:
    scale_point(rig, case)


@pytest.mark.parametrize("point", _params(ROLLBACK_POINTS))
def test_a_rollback_stopped_anywhere_is_resumed_to_the_previous_release(
    rig: Rig, point: str
) -> None:
    rollback_point(rig, point)


@pytest.mark.parametrize("point", _params(DEPLOY_POINTS))
def test_a_deploy_stopped_by_ctrl_c_is_resumed(rig: Rig, point: str) -> None:
    deploy_point(rig, point)
