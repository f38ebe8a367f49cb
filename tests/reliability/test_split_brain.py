"""A split fleet is never healthy, and nothing reports success into an outage.

Both scenarios are made on a deployed sample fleet through the local Fly's API, as an
interrupted drill leaves them:

- **split brain**: a dfw machine is told ``PRIMARY_REGION=dfw`` while syd stays primary. Both
  sides acknowledge writes. ``invoke status`` must exit 1 naming both sides and saying how to
  resolve it; ``deploy``, ``scale`` and ``rollback`` must refuse to start (exit 1, naming the
  machines) and change nothing, the region file included.
- **outage**: syd (the primary region) is frozen by a local outage, as a ``kill -9``-ed drill
  leaves it. A deploy of a new release to dfw alone passes every step; it must still fail its
  primary gate instead of reporting success, say what to run, and be recorded as failed (the
  journal, ``invoke releases``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from execute.localfleet import APP, wait_for

from .harness import Rig, check_converged

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def rig(shared_rig: Rig) -> Rig:
    return shared_rig


def _role(rig: Rig, machine_id: str) -> str | None:
    resp = rig.app("GET", "/status", headers={"fly-force-instance-id": machine_id})
    try:
        return str(resp.json().get("role"))
    except ValueError:
        return None


def _set_primary_region(rig: Rig, machine: dict[str, Any], primary: str | None) -> None:
    config = machine["config"]
    env = dict(config.get("env") or {})
    if primary is None:
        env.pop("PRIMARY_REGION", None)
    else:
        env["PRIMARY_REGION"] = primary
    resp = rig.api(
        "POST", f"/v1/apps/{APP}/machines/{machine['id']}", json={"config": {**config, "env": env}}
    )
    assert resp.status_code == 200, resp.text


@pytest.fixture
def split(rig: Rig) -> Iterator[dict[str, Any]]:
    """Make one dfw machine a second primary; put it back afterwards, whatever happened."""
    dfw = next(m for m in rig.machines() if m["region"] == "dfw")
    original = dfw["config"].get("env", {}).get("PRIMARY_REGION")
    _set_primary_region(rig, dfw, "dfw")
    try:
        wait_for(lambda: _role(rig, dfw["id"]) == "primary", timeout=60, what="dfw to claim")
        yield dfw
    finally:
        now = next(m for m in rig.machines() if m["id"] == dfw["id"])
        _set_primary_region(rig, now, original)
        wait_for(lambda: _role(rig, dfw["id"]) == "replica", timeout=60, what="dfw to follow")


def test_split_brain_is_a_fleet_problem_and_commands_refuse_it(
    rig: Rig, split: dict[str, Any]
) -> None:
    syd_primary = next(
        m["id"] for m in rig.machines() if m["region"] == "syd" and _role(rig, m["id"]) == "primary"
    )
    # Both sides take writes: this is what status must not call healthy.
    for machine_id in (syd_primary, split["id"]):
        resp = rig.app(
            "POST",
            "/records",
            json={"data": f"split-{machine_id}"},
            headers={"fly-force-instance-id": machine_id},
        )
        assert resp.status_code == 201, resp.text

    status = rig.invoke("status")
    assert status.returncode == 1, status.stdout + status.stderr
    assert "all machines healthy" not in status.stdout
    assert "split brain" in status.stdout
    error = status.stderr.strip().splitlines()[-1]
    assert error.startswith("error: split brain")
    assert split["id"] in error
    assert syd_primary in error
    assert "invoke drill --abort" in error
    doc = json.loads(rig.invoke("status", "--json").stdout)
    assert doc["healthy"] is False
    assert split["id"] in doc["split_brain"]

    dfw_file = (rig.root / "regions" / "dfw.toml").read_text()
    machines_before = {m["id"]: m["instance_id"] for m in rig.machines()}
    deploy = rig.deploy()
    assert deploy.outcome == "refused"
    assert "deploy refused: split brain" in (deploy.error or "")
    assert split["id"] in (deploy.error or "")
    scale = rig.scale("dfw", count=3)
    assert scale.outcome == "refused"
    assert "split brain" in (scale.error or "")
    rollback = rig.rollback()
    assert rollback.outcome == "refused"
    assert "split brain" in (rollback.error or "")
    # Refused means untouched: the same machines at the same versions, the file as it was.
    assert {m["id"]: m["instance_id"] for m in rig.machines()} == machines_before
    assert (rig.root / "regions" / "dfw.toml").read_text() == dfw_file

    by_cli = rig.invoke("deploy")
    assert by_cli.returncode == 1
    assert "Traceback" not in by_cli.stderr
    assert by_cli.stderr.strip().splitlines()[-1].startswith("error: deploy refused: split brain")

    # The documented way out: the spec's primary region becomes the only primary, and the
    # records only dfw took are kept on its volume, named.
    aborted = rig.invoke("drill", "--abort", "--json")
    assert aborted.returncode == 0, aborted.stdout[-3000:] + aborted.stderr[-3000:]
    report = json.loads(aborted.stdout)
    assert (
        report["integrity"]["primaries"] == [syd_primary]
        or len(report["integrity"]["primaries"]) == 1
    )
    assert split["id"] in report["details"].get("orphaned_records", {})
    healed = rig.invoke("status")
    assert healed.returncode == 0, healed.stdout + healed.stderr


def test_a_deploy_does_not_succeed_into_an_outage(rig: Rig) -> None:
    volumes = rig.volume_ids()
    old_tag = rig.image_tag()
    # A release that changes dfw only, while syd, the primary region, is frozen: the wave's
    # data-health gate finds no primary to compare dfw with, and stops the wave before dfw
    # changes, as a fleet problem (not "Fly failed, resume").
    release = rig.set_image("outage")
    down = rig.api("POST", "/_localfly/outage/syd")
    assert down.status_code in (200, 201, 204), down.text
    try:
        done = rig.invoke("deploy", "--region", "dfw")
        assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
        assert "Traceback" not in done.stderr
        error = done.stderr.strip().splitlines()[-1]
        assert error.startswith("error: dfw:gate.data"), error
        assert "no region takes writes" in error
        assert "invoke status" in error
        # Recorded as failed where it is read back: this directory's journal, and the
        # release list on Fly that `invoke releases` shows from any host.
        run = rig.last_run()
        assert run is not None
        assert (run["release"], run["outcome"]) == (release, "failed"), dict(run)
        assert "gate.data" in run["error"]
        listed = rig.invoke("releases", "--json")
        assert listed.returncode == 0, listed.stderr
        newest = json.loads(listed.stdout)["releases"][0]
        assert (newest["release"], newest["outcome"]) == (release, "failed"), newest
    finally:
        up = rig.api("DELETE", "/_localfly/outage/syd")
        assert up.status_code in (200, 204), up.text
        rig.set_image(old_tag)
    again = rig.deploy()
    assert again.ok, again
    check_converged(rig, volumes_before=volumes)
