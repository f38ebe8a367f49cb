"""Kill -9 a two-wave rollout at many points; `invoke deploy --resume` must always converge.

The fleet starts with syd alone at v1 (with records on it). The rollout deploys v2 to every
region: syd's machines are updated (wave 1), dfw's and ams's are created on forks of syd's
volumes and replicate (wave 2). The deploy process SIGKILLs itself at a chosen point
(``ORCH_TEST_KILL_AT``, a test-only hook: `orchestrator.execute.failpoints`), and each
``--resume`` is killed at the next point, so every kill starts from the state the previous one
left: one rollout, ten kills, then a resume that finishes it. A second rollout, of a release
that fails its health checks in ams, is killed after the failure, as its rollback starts and in
the middle of the rollback: the resumes finish the rollback. CI runs the second (on a plain
deploy of v2 everywhere); the first, whose points CI's crash matrix covers
(`tests/reliability/test_crashes.py`), runs with ``--runslow``.

Wave 2 runs one step at a time here (``max_concurrency = 1``), so each point is reached in a
known state. After every kill: no slot has two machines. At the end: the spec's machine count
per region on the expected release, every volume attached (no orphan left by a killed create),
every record on every machine.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from itertools import pairwise

import pytest
from execute.localfleet import LocalFleet

from .helpers import (
    assert_counts,
    assert_on,
    assert_records,
    journal,
    release_of,
    releases_by_region,
    set_env,
    start_rollout_fleet,
    write_records,
)

pytestmark = pytest.mark.timeout(600)

V2 = "registry.fly.io/sample-app:v2"
V3 = "registry.fly.io/sample-app:v3"
SIGKILLED = -9

# Each point is reached by the run resumed after the previous kill (see the module docstring).
ROLLOUT_KILLS = (
    # syd's slot 1 took writes first, so it is updated last (after a hand-off), slot 2 first.
    "step_started:syd:machine.update:2",  # journaled start, nothing sent
    "update_sent:syd:machine.update:2",  # Fly took the update; version not yet verified
    "step_finished:syd:machine.update:1",  # syd updated, not yet gated
    "step_finished:syd:gate.metrics",  # the resumed run re-checked and re-baked syd
    "step_finished:dfw:volume.ensure:1",  # a fork made, no machine on it
    "volume_created:dfw:volume.ensure:2",  # a fork asked for, still hydrating
    "create_sent:dfw:machine.create:1",  # Fly made the machine; not yet verified
    "launch_recorded:dfw:machine.create:2",  # launch id journaled, create not sent
    "step_started:ams:volume.replicate:1",  # ams machine up, data not yet verified
    "step_finished:dfw:gate.metrics",  # dfw passed; ams not yet gated
)
ROLLBACK_KILLS = (
    "step_finished:ams:machine.update:1",  # the failed step is journaled; no rollback yet
    "rollback_started",  # the resumed run's rollback is journaled, nothing restored
    "step_finished:dfw:machine.update:1",  # half of the rollback done
)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    """The sample fleet with syd alone at v1 (wave 2 one step at a time), and its local Fly."""
    local = start_rollout_fleet(tmp_path_factory.mktemp("crash") / "fleet", wave2_concurrency=1)
    try:
        first = local.invoke("deploy", "--region", "syd")
        assert first.returncode == 0, first.stdout + first.stderr
        yield local
    finally:
        local.stop()


def _kill_at(fleet: LocalFleet, point: str, *args: str) -> None:
    proc = fleet.invoke(*args, env={"ORCH_TEST_KILL_AT": point})
    assert proc.returncode == SIGKILLED, (
        f"the run was not killed at {point}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
    )
    [newest] = journal(fleet, "SELECT finished_at FROM releases ORDER BY run DESC LIMIT 1")
    assert newest["finished_at"] is None, point
    _no_duplicates(fleet)


def _no_duplicates(fleet: LocalFleet) -> None:
    slots = Counter(
        (m["region"], m["config"]["metadata"].get("orch_slot")) for m in fleet.machines()
    )
    assert all(n == 1 for n in slots.values()), slots


def _unattached(fleet: LocalFleet) -> set[str]:
    return {v["id"] for v in fleet.volumes() if not v.get("attached_machine_id")}


# Every boundary of a two-wave rollout, and the kills inside creates of forked volumes, are in
# CI's crash matrix (`tests/reliability/test_crashes.py`, chained the same way); this chain of
# ten runs with --runslow.
@pytest.mark.slow
def test_a_rollout_killed_at_ten_points_resumes_to_the_release(fleet: LocalFleet) -> None:
    records = write_records(fleet, "before-rollout")
    orphans_before = _unattached(fleet)

    _kill_at(fleet, ROLLOUT_KILLS[0], "deploy", "--image", V2)
    for point in ROLLOUT_KILLS[1:]:
        _kill_at(fleet, point, "deploy", "--resume")
    final = fleet.invoke("deploy", "--resume")

    assert final.returncode == 0, final.stdout + final.stderr
    assert "resuming run" in final.stdout
    runs = journal(fleet, "SELECT run, outcome, resumed_from FROM releases ORDER BY run")
    chain = runs[-len(ROLLOUT_KILLS) - 1 :]
    assert [r["outcome"] for r in chain[:-1]] == [None] * len(ROLLOUT_KILLS)
    # The last resume may only have gates left to run: nothing to change, then.
    assert chain[-1]["outcome"] in ("succeeded", "noop")
    assert all(r["resumed_from"] == p["run"] for p, r in pairwise(chain))
    rel2 = release_of(fleet, V2)
    assert_on(fleet, {r: (V2, rel2) for r in ("syd", "dfw", "ams")})
    assert_counts(fleet)
    assert _unattached(fleet) == orphans_before
    mounted = [m["config"]["mounts"][0]["volume"] for m in fleet.machines()]
    assert len(mounted) == len(set(mounted))
    assert_records(fleet, records)


def test_a_rollback_killed_at_three_points_is_finished_by_resume(fleet: LocalFleet) -> None:
    rel2 = release_of(fleet, V2)
    if releases_by_region(fleet) != {r: {(V2, rel2)} for r in ("syd", "dfw", "ams")}:
        # The killed rollout above (--runslow) leaves every region on v2; without it, deploy it.
        deployed = fleet.invoke("deploy", "--image", V2)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    records = write_records(fleet, "before-v3")
    set_env(fleet, {"SAMPLE_APP_FAIL_HEALTH_REGIONS": "ams"})
    try:
        rel3 = release_of(fleet, V3)
        _kill_at(fleet, ROLLBACK_KILLS[0], "deploy", "--image", V3)
        for point in ROLLBACK_KILLS[1:]:
            _kill_at(fleet, point, "deploy", "--resume")
        final = fleet.invoke("deploy", "--resume", "--json")
    finally:
        set_env(fleet)

    assert final.returncode == 1, final.stdout + final.stderr
    assert '"outcome": "rolled_back"' in final.stdout
    assert "finished the rollback of dfw, ams" in final.stderr
    # syd passed wave 1 and keeps v3; wave 2 is back on v2.
    assert_on(fleet, {"syd": (V3, rel3), "dfw": (V2, rel2), "ams": (V2, rel2)})
    assert_counts(fleet)
    rollbacks = journal(
        fleet, "SELECT rollback_of, outcome FROM releases WHERE command = 'rollback' ORDER BY run"
    )
    assert [r["outcome"] for r in rollbacks] == [None, None, "succeeded"]
    assert len({r["rollback_of"] for r in rollbacks}) == 1
    assert_records(fleet, records)
