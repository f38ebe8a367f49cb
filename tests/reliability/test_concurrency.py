"""Two commands that change the fleet at once: one proceeds, the other is refused naming it.

On the shared deployed copy of the sample fleet, each command its own orchestrator process:

- two deploys started at the same moment: exactly one runs, the other exits 1 at once with
  ``app 'sample-fleet' is locked: deploy of <release> by pid <the other's pid> ...``;
- a deploy and a scale, each way round: the second is refused naming the first (command, release
  and pid) and a refused scale leaves its region file as it was;
- a deploy and a drill, each way round: the drill holds the lock for the whole drill.

The one that proceeded must finish and leave the fleet converged.
"""

from __future__ import annotations

import re

import pytest
from execute.localfleet import APP, lock_holder, wait_for

from .harness import Child, Rig, check_converged

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def rig(shared_rig: Rig) -> Rig:
    return shared_rig


def _holder_pid(rig: Rig) -> int | None:
    holder = lock_holder(rig.root, rig.local.endpoint)
    return holder.pid if holder is not None else None


def _refusal(code: int, child: Child) -> str:
    """Return the refused command's one error line (exit 1, names the lock's holder)."""
    assert code == 1, (code, child.stdout[-500:], child.stderr[-500:])
    lines = [line for line in child.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, child.stderr
    assert lines[0].startswith(f"error: app '{APP}' is locked: "), lines[0]
    return lines[0]


def _while_held(rig: Rig, first: list[str], second: list[str]) -> tuple[str, int]:
    """Start ``first``; once it holds the lock run ``second``; return its refusal and pid.

    A small fleet's change takes a second or two, about as long as ``second`` takes to start;
    the local Fly holds ``first``'s first machine wait 3 s longer, so ``second`` surely comes
    while ``first`` holds the lock.
    """
    rig.set_faults(0, [{"operation": "Machines_wait", "delay_ms": 3000, "times": 1}])
    holder = rig.start_child(*first)
    try:
        wait_for(lambda: _holder_pid(rig) == holder.pid, timeout=60, what=f"{first} to lock")
        refused = _refusal(*rig.run_child(*second))
        assert holder.wait() == 0, holder.stderr[-2000:]
    finally:
        rig.clear_faults()
        holder.kill()
    return refused, holder.pid


def test_two_deploys_at_once_one_runs_the_other_names_it(rig: Rig) -> None:
    release = rig.set_image("together")
    before = rig.volume_ids()
    children = [rig.start_child("deploy", "--json") for _ in range(2)]
    try:
        codes = [c.wait() for c in children]
    finally:
        for c in children:
            c.kill()
    assert sorted(codes) == [0, 1], codes
    winner, loser = children[codes.index(0)], children[codes.index(1)]
    refused = _refusal(1, loser)
    assert f"is locked: deploy of {release} by pid {winner.pid} on " in refused, refused
    assert check_converged(rig, volumes_before=before).problems == []


def test_a_deploy_and_a_scale_exclude_each_other_either_way(rig: Rig) -> None:
    release = rig.set_image("with-scale")
    ams = rig.root / "regions" / "ams.toml"
    ams_before = ams.read_bytes()
    refused, pid = _while_held(rig, ["deploy"], ["scale", "--region", "ams", "--count", "2"])
    assert f"deploy of {release} by pid {pid} on " in refused, refused
    assert ams.read_bytes() == ams_before  # a refused scale writes nothing

    refused, pid = _while_held(rig, ["scale", "--region", "ams", "--count", "2"], ["deploy"])
    assert re.search(rf"scale of \S+ by pid {pid} on ", refused), refused
    assert check_converged(rig, volumes_before=rig.volume_ids()).problems == []
    back, child = rig.run_child("scale", "--region", "ams", "--count", "1", "--yes")
    assert back == 0, child.stderr


def test_a_deploy_and_a_drill_exclude_each_other_either_way(rig: Rig) -> None:
    report = rig.root / "reports" / "drill.md"  # test_secrets scans it
    report.parent.mkdir(exist_ok=True)
    drill = ["drill", "--region", "ams", "--json", "--report", str(report)]
    refused, pid = _while_held(rig, drill, ["deploy"])
    assert re.search(rf"drill of \S+ by pid {pid} on ", refused), refused

    release = rig.set_image("with-drill")
    refused, pid = _while_held(rig, ["deploy"], ["drill", "--region", "ams"])
    assert f"deploy of {release} by pid {pid} on " in refused, refused
    assert check_converged(rig, volumes_before=rig.volume_ids()).problems == []
