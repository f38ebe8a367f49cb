"""Right after a create, a 404 from ``/wait`` is retried for a bounded time, as flyctl does.

The local Fly injects the 404 (its fault control, ``Machines_wait`` answering 404): a few of
them after a create cost a moment and the deploy succeeds; a 404 that never ends fails the
step once the grace period (`NOT_FOUND_GRACE_S`) is over, and the deploy says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator.execute.machines import NOT_FOUND_GRACE_S

from .localfleet import LocalFleet, copy_fleet

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    root = copy_fleet(tmp_path_factory.mktemp("wait404") / "fleet")
    fleet = LocalFleet.start(root)
    try:
        yield fleet
    finally:
        fleet.api("DELETE", "/_localfly/faults")
        fleet.stop()


def _faults(fleet: LocalFleet, rules: list[dict[str, Any]]) -> None:
    resp = fleet.api("PUT", "/_localfly/faults", json={"seed": 1, "rules": rules})
    assert resp.status_code == 200, resp.text


def _fired(fleet: LocalFleet) -> int:
    rules = fleet.api("GET", "/_localfly/faults").json()["rules"]
    return sum(int(r.get("fired") or 0) for r in rules)


def test_a_few_404s_from_wait_after_a_create_are_waited_out(fleet: LocalFleet) -> None:
    _faults(fleet, [{"operation": "Machines_wait", "status": 404, "times": 4}])
    done = fleet.invoke("deploy", "--region", "syd", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outcome"] == "succeeded"
    assert _fired(fleet) == 4
    waits = [r for r in fleet.requests_log() if r["operation"] == "Machines_wait"]
    assert sum(1 for r in waits if r["status"] == 404) == 4
    assert len(fleet.machines("syd")) == 2


def test_a_404_that_does_not_end_fails_the_create_after_the_grace_period(
    fleet: LocalFleet,
) -> None:
    _faults(fleet, [{"operation": "Machines_wait", "status": 404}])
    done = fleet.invoke("deploy", "--region", "syd", "--json")
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    creates = [s for s in result["steps"] if s["kind"] == "machine.create"]
    failed = [s for s in creates if s["outcome"] == "failed"]
    assert failed, creates
    assert "404" in failed[0]["error"]
    waits = [r for r in fleet.requests_log() if r["operation"] == "Machines_wait"]
    assert waits
    # Retried, with backoff, for the grace period: more than one ask, not forever.
    per_machine = max(
        sum(1 for r in waits if m in r["path"]) for m in {r["path"].split("/")[5] for r in waits}
    )
    assert 2 <= per_machine <= 4 * NOT_FOUND_GRACE_S
