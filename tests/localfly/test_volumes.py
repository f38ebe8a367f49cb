"""Volumes through FlyClient: forks across regions, snapshots, restores, soft deletes."""

from __future__ import annotations

import httpx
import pytest

from orchestrator.errors import FlyBadRequest, FlyConflict, FlyPreconditionFailed
from orchestrator.fly.client import FlyClient
from orchestrator.fly.models import Snapshot
from orchestrator.localfly.control import Endpoint

from .helpers import await_for, fly_client, passing, sample_config, unique_app

pytestmark = pytest.mark.anyio


async def _snapshot(fly: FlyClient, app: str, volume_id: str) -> Snapshot:
    before = {s.id for s in await fly.list_snapshots(app, volume_id)}
    await fly.create_snapshot(app, volume_id)

    async def taken() -> Snapshot | None:
        for s in await fly.list_snapshots(app, volume_id):
            if s.id not in before and s.status == "created":
                return s
        return None

    return await await_for(taken, what="snapshot")


async def _records(edge: httpx.AsyncClient, app: str, machine_id: str) -> list[str]:
    r = await edge.get(
        "/records", headers={"host": f"{app}.fly.dev", "fly-force-instance-id": machine_id}
    )
    assert r.status_code == 200, r.text
    return [x["data"] for x in r.json()["records"]]


async def test_fork_to_another_region_and_restore_keep_digest_and_records(
    localfly: Endpoint,
) -> None:
    app = unique_app()
    host = {"host": f"{app}.fly.dev"}
    async with fly_client(localfly) as fly, httpx.AsyncClient(base_url=localfly.proxy_url) as edge:
        await fly.create_app(app)
        source = await fly.create_volume(app, name="data", region="syd", size_gb=1)
        primary = await fly.create_machine(app, sample_config(source.id, "v1"), region="syd")
        await passing(fly, app, primary.id)
        for text in ("one", "two", "three"):
            assert (
                await edge.post("/records", json={"data": text}, headers=host)
            ).status_code == 201
        # A stopped machine has closed its database, so the files are at rest.
        await fly.stop_machine(app, primary.id)
        await fly.wait_machine(app, primary.id, state="stopped", timeout=30)
        original = await _snapshot(fly, app, source.id)
        assert original.digest.startswith("sha256:")
        assert original.size > 0

        fork = await fly.create_volume(
            app, name="data", region="ams", size_gb=1, source_volume_id=source.id
        )
        assert (fork.region, fork.attached_machine_id) == ("ams", None)
        assert (await _snapshot(fly, app, fork.id)).digest == original.digest
        replica = await fly.create_machine(app, sample_config(fork.id, "v1"), region="ams")
        await passing(fly, app, replica.id)
        assert await _records(edge, app, replica.id) == ["one", "two", "three"]

        restored = await fly.create_volume(
            app, name="data", region="dfw", size_gb=2, snapshot_id=original.id
        )
        assert (restored.region, restored.size_gb) == ("dfw", 2)
        assert (await _snapshot(fly, app, restored.id)).digest == original.digest
        third = await fly.create_machine(app, sample_config(restored.id, "v1"), region="dfw")
        await passing(fly, app, third.id)
        assert await _records(edge, app, third.id) == ["one", "two", "three"]


async def test_volume_rules(localfly: Endpoint) -> None:
    app = unique_app()
    async with fly_client(localfly) as fly:
        await fly.create_app(app)
        vol = await fly.create_volume(app, name="data", region="syd", size_gb=1)
        extended = await fly.extend_volume(app, vol.id, 3)
        assert (extended.volume.size_gb, extended.needs_restart) == (3, False)
        with pytest.raises(FlyBadRequest):
            await fly.extend_volume(app, vol.id, 2)
        updated = await fly.update_volume(app, vol.id, snapshot_retention=10)
        assert updated.snapshot_retention == 10

        m = await fly.create_machine(
            app, sample_config(vol.id, "v1"), region="syd", skip_launch=True
        )
        with pytest.raises(FlyPreconditionFailed):
            await fly.destroy_volume(app, vol.id)
        other = await fly.create_volume(app, name="data", region="syd", size_gb=1)
        with pytest.raises(FlyConflict, match="already attached"):
            await fly.create_machine(app, sample_config(vol.id, "v1"), region="syd")
        await fly.destroy_machine(app, m.id)
        gone = await fly.destroy_volume(app, vol.id)
        assert gone.state == "pending_destroy"
        assert {v.id: v.state for v in await fly.list_volumes(app)} == {
            vol.id: "pending_destroy",
            other.id: "created",
        }


async def test_bytes_used_counts_what_the_machine_wrote(localfly: Endpoint) -> None:
    app = unique_app()
    async with fly_client(localfly) as fly:
        await fly.create_app(app)
        vol = await fly.create_volume(app, name="data", region="syd", size_gb=1)
        (listed,) = await fly.list_volumes(app)
        assert listed.bytes_used == 0
        config = {"image": "sleeper", "mounts": [{"volume": vol.id, "path": "/data"}]}
        m = await fly.create_machine(app, config, region="syd")
        await fly.wait_machine(app, m.id, state="started", timeout=30)
        # The machine writes 3 files; the volume's usage is their bytes, whatever the blocks.
        wrote = await fly.exec_machine(
            app,
            m.id,
            [
                "sh",
                "-c",
                'cd "$LOCALFLY_ROOT/data" && mkdir -p d && head -c 12345 /dev/zero > a'
                " && head -c 100 /dev/zero > d/b && : > d/c",
            ],
        )
        assert wrote.exit_code == 0, wrote.stderr
        (listed,) = await fly.list_volumes(app)
        assert listed.bytes_used == 12345 + 100
        assert (await fly.get_volume(app, vol.id)).bytes_used == 12345 + 100
        # A summary list leaves it out, as it leaves out the other details.
        (brief,) = await fly.list_volumes(app, summary=True)
        assert brief.bytes_used is None
        await fly.destroy_machine(app, m.id, force=True)
