"""The local Fly's state file: every record comes back as it was written."""

from __future__ import annotations

from pathlib import Path

from orchestrator.localfly.state import LeaseRecord, MachineRecord, Store


def test_a_machine_with_its_lease_config_events_and_versions_comes_back_whole(
    tmp_path: Path,
) -> None:
    machine = MachineRecord(
        id="m1",
        app="a",
        name="m1-name",
        region="syd",
        config={"image": "img:v2", "env": {"K": "v"}, "checks": {"c": {"port": 8080}}},
        version="v2",
        state="started",
        seq=3,
        created_at="2026-01-01T00:00:00Z",
        updated_at="2026-01-01T00:00:01Z",
        lease=LeaseRecord(nonce="n", owner="o", description="d", expires_at=12.5, version="l1"),
        events=[{"type": "start", "status": "started", "timestamp": 1}],
        versions=[{"version": "v1", "config": {"image": "img:v1"}}],
    )
    store = Store(tmp_path / "state.db")
    try:
        store.put(machine)
        assert store.load(MachineRecord) == [machine]
    finally:
        store.close()
