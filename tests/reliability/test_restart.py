"""The local Fly restarts mid-rollout: the orchestrator rides it out or fails cleanly.

A deploy of a new release runs as the real ``invoke deploy``. Once the first machine of the
first wave is updated, the local Fly goes away and comes back (``invoke local.down`` then
``local.up``: every machine process stops and is started again from the saved state; or the
server is SIGKILLed, leaving its machines orphaned for the next server to clean up). Calls in
between meet a refused connection, which the client retries with backoff.

The deploy must either finish (exit 0) or fail cleanly: exit 1, one ``error:`` line, no
traceback, the lock released, the journal's run finished as failed. Then ``deploy --resume``
(when needed) finishes it, and the fleet converges (`check_converged`).
"""

from __future__ import annotations

import os
import signal
import sys

import pytest
from execute.localfleet import lock_holder, wait_for

from orchestrator.localfly import control

from .harness import RecordWriter, Rig, check_converged

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def rig(shared_rig: Rig) -> Rig:
    return shared_rig


def _step_finished(rig: Rig, step_id: str) -> bool:
    rows = rig.journal_rows(
        "SELECT 1 FROM steps WHERE step_id = ? AND finished_at IS NOT NULL"
        " AND run = (SELECT max(run) FROM releases)",
        step_id,
    )
    return bool(rows)


def _restart(rig: Rig, how: str) -> None:
    if how == "graceful":
        down = rig.invoke("local.down")
        assert down.returncode == 0, down.stderr
    else:
        os.kill(rig.local.endpoint.pid, signal.SIGKILL)
        wait_for(lambda: not control.status(rig.state_dir).running, timeout=30, what="it to die")
    up = rig.invoke("local.up")
    assert up.returncode == 0, up.stdout + up.stderr
    rig.local.endpoint = control.ensure_running(rig.state_dir)


@pytest.mark.parametrize("how", ["graceful", "sigkill"])
def test_a_rollout_survives_a_restart_of_the_local_fly(rig: Rig, how: str) -> None:
    release = rig.set_image(f"restart-{how}")
    before = rig.volume_ids()
    with RecordWriter(rig, f"restart-{how}") as writer:
        deploy = rig.start_child("deploy", "--json")
        try:
            wait_for(
                lambda: _step_finished(rig, "syd:machine.update:1") or deploy.done,
                timeout=120,
                what="the first update",
            )
            assert not deploy.done, "the deploy ended before the restart"
            _restart(rig, how)
            code = deploy.wait()
        finally:
            deploy.kill()
        assert "Traceback" not in deploy.stderr, deploy.stderr[-3000:]
        assert lock_holder(rig.root, rig.local.endpoint) is None
        last = rig.last_run()
        assert last is not None
        assert last["release"] == release
        if code != 0:
            # A clean failure: one error line, the run recorded as failed; resume finishes it.
            assert code == 1, deploy.stderr[-2000:]
            errors = [line for line in deploy.stderr.splitlines() if line.startswith("error: ")]
            assert len(errors) == 1, deploy.stderr[-2000:]
            assert last["outcome"] in ("failed", "rolled_back"), dict(last)
            assert last["error"], dict(last)
            resumed, child = rig.run_child("deploy", "--resume", "--json")
            assert resumed == 0, child.stderr[-2000:]
        else:
            assert last["outcome"] == "succeeded", dict(last)
    seen = check_converged(rig, volumes_before=before, acked=writer.acked)
    assert seen.problems == []
    print(f"restart ({how}): deploy exit {code}", file=sys.stderr)


def test_the_local_fly_crashing_twice_loses_no_acknowledged_write(rig: Rig) -> None:
    # Each crash restarts every machine at once: the region's candidates come up together
    # and must settle on the primary that has the newest records, not on whichever claims
    # first (the writes the loser acknowledged were set aside, before the sample app kept
    # who it followed).
    before = rig.volume_ids()
    with RecordWriter(rig, "crashes") as writer:
        for _ in range(2):
            wait_for(lambda: len(writer.acked) >= 10, timeout=30, what="acknowledged writes")
            _restart(rig, "sigkill")
            seen = len(writer.acked)
            wait_for(lambda n=seen: len(writer.acked) > n + 5, timeout=30, what="writes again")
    assert len(writer.acked) >= 20
    assert check_converged(rig, volumes_before=before, acked=writer.acked).problems == []
