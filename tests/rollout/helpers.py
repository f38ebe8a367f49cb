"""A sample fleet tuned for quick staged rollouts, and what the rollout tests look at.

`start_rollout_fleet` copies the repo's sample fleet (syd: 2 machines, primary; dfw: 2; ams: 1;
waves ``[syd]``, ``[dfw, ams]`` with ``rollback_wave`` on wave 2) into a temp dir and shortens
it for tests: a half-second bake, and health checks every second with a one-second grace
period, so a release that fails its checks is caught in about five seconds instead of nine; the
orchestrator polls checks every 0.2 s and leases machines for 3 s (its ``invoke.yaml``).
Everything else (image, counts, policies, thresholds) is the sample fleet's.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
from execute.localfleet import LocalFleet, copy_fleet, wait_for

from orchestrator.fleetconfig.load import load_spec
from orchestrator.plan.config import release_id

V1 = "registry.fly.io/sample-app:v1"
SPEC_COUNTS = {"syd": 2, "dfw": 2, "ams": 1}


def _edit(path: Path, pattern: str, new: str) -> None:
    text = path.read_text()
    changed, n = re.subn(pattern, new, text, flags=re.MULTILINE)
    assert n >= 1, f"{pattern!r} not in {path}"
    path.write_text(changed)


def start_rollout_fleet(root: Path, *, wave2_concurrency: int | None = None) -> LocalFleet:
    """Copy the sample fleet into ``root`` (shortened for tests) and start its local Fly."""
    copy_fleet(root)
    waves = root / "regions" / "waves.toml"
    _edit(waves, r'^  bake_time = "3s"$', '  bake_time = "500ms"')
    if wave2_concurrency is not None:
        _edit(
            waves,
            r'^  on_failure = "rollback_wave"$',
            f'  on_failure = "rollback_wave"\n  max_concurrency = {wave2_concurrency}',
        )
    fly = root / "fly.toml"
    _edit(fly, r'^(\s+)interval = "2s"$', r'\1interval = "1s"')
    _edit(fly, r'^(\s+)grace_period = "2s"$', r'\1grace_period = "1s"')
    (root / "fly.toml.base").write_text(fly.read_text())
    # Checks polled every 0.2 s, and 3 s leases so a killed run's lapse quickly (flyctl's 13 s
    # would be waited out after every kill of the crash matrix): same steps, shorter waits.
    (root / "invoke.yaml").write_text("orchestrator:\n  poll: 0.2\n  lease_ttl: 3\n")
    return LocalFleet.start(root)


def set_env(fleet: LocalFleet, env: Mapping[str, str] | None = None) -> None:
    """Give the next release these extra ``[env]`` variables (none: back to the base file)."""
    text = (fleet.root / "fly.toml.base").read_text()
    extra = "".join(f'  {k} = "{v}"\n' for k, v in (env or {}).items())
    anchor = '  LOG_LEVEL = "info"\n'
    assert anchor in text
    (fleet.root / "fly.toml").write_text(text.replace(anchor, anchor + extra, 1))


def release_of(fleet: LocalFleet, image: str) -> str:
    """Return the release id the fleet's current files give ``image``."""
    return release_id(load_spec(fleet.root, image_override=image))


def run_json(fleet: LocalFleet, *args: str, env: Mapping[str, str] | None = None) -> Any:
    """Run ``invoke ARGS --json`` and return (exit code, parsed stdout, stderr)."""
    proc = fleet.invoke(*args, "--json", env=env)
    assert proc.stdout.lstrip().startswith("{"), proc.stdout + proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def journal(fleet: LocalFleet, sql: str, *args: Any) -> list[sqlite3.Row]:
    """Run a read-only query on the fleet's journal."""
    db = sqlite3.connect(fleet.root / ".orchestrator" / "journal.db")
    db.row_factory = sqlite3.Row
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def releases_by_region(fleet: LocalFleet) -> dict[str, set[tuple[str, str]]]:
    """Return region → {(image, fly_release_id)} of its live machines."""
    out: dict[str, set[tuple[str, str]]] = {}
    for m in fleet.machines():
        meta = m["config"].get("metadata", {})
        out.setdefault(m["region"], set()).add((m["config"]["image"], meta.get("fly_release_id")))
    return out


def assert_on(fleet: LocalFleet, expected: Mapping[str, tuple[str, str]]) -> None:
    """Assert each region's machines all run (image, release), started with checks passing."""
    by_region = releases_by_region(fleet)
    for region, want in expected.items():
        assert by_region.get(region) == {want}, (region, by_region.get(region), want)
    for m in fleet.machines():
        if m["region"] in expected:
            assert m["state"] == "started", m
            checks = m.get("checks") or []
            assert checks, m
            assert all(c["status"] == "passing" for c in checks), m


def assert_counts(fleet: LocalFleet, counts: Mapping[str, int] = SPEC_COUNTS) -> None:
    """Assert exactly ``counts`` live machines per region, one per slot 1..count."""
    for region, count in counts.items():
        slots = sorted(int(m["config"]["metadata"]["orch_slot"]) for m in fleet.machines(region))
        assert slots == list(range(1, count + 1)), (region, slots)


def write_records(fleet: LocalFleet, tag: str, n: int = 3) -> list[str]:
    """Write ``n`` records through the proxy (they land on the primary); return their data."""
    data = [f"{tag}-{i}" for i in range(n)]
    for item in data:
        fleet.write_record(item)
    return data


def _holds(fleet: LocalFleet, machine_id: str, wanted: set[str]) -> bool:
    try:
        return wanted <= {r["data"] for r in fleet.records(machine_id)}
    except httpx.HTTPError:
        return False  # restarting; ask again


def assert_records(fleet: LocalFleet, data: Iterable[str], *, timeout: float = 30.0) -> None:
    """Assert every live machine's volume holds every record in ``data`` (replicas catch up)."""
    wanted = set(data)
    for m in fleet.machines():
        wait_for(
            lambda m=m: _holds(fleet, m["id"], wanted),
            timeout=timeout,
            what=f"records {sorted(wanted)} on {m['region']} machine {m['id']}",
        )
