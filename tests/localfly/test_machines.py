"""Machines end to end through FlyClient: real processes, the proxy, versions, leases."""

from __future__ import annotations

import httpx
import pytest

from orchestrator.errors import FlyConflict, FlyLeaseHeld, FlyPreconditionFailed, FlyWaitTimeout
from orchestrator.localfly.control import Endpoint

from .helpers import (
    alive,
    await_for,
    echo_config,
    fly_client,
    machine_pid,
    passing,
    sample_config,
    unique_app,
)

pytestmark = pytest.mark.anyio


async def test_sample_app_in_syd_answers_through_the_proxy_and_survives_an_update(
    localfly: Endpoint,
) -> None:
    app = unique_app()
    host = {"host": f"{app}.fly.dev"}
    async with fly_client(localfly) as fly, httpx.AsyncClient(base_url=localfly.proxy_url) as edge:
        await fly.create_app(app)
        vol = await fly.create_volume(app, name="data", region="syd", size_gb=1)
        created = await fly.create_machine(app, sample_config(vol.id, "v1"), region="syd")
        await fly.wait_machine(app, created.id, state="started", timeout=30)
        m = await passing(fly, app, created.id)
        old_pid = machine_pid(localfly.state_dir, m.id)
        assert old_pid is not None
        assert alive(old_pid)
        assert (await fly.get_volume(app, vol.id)).attached_machine_id == m.id

        status = (await edge.get("/status", headers=host)).json()
        assert (status["region"], status["release"], status["role"]) == ("syd", "v1", "primary")
        written = await edge.post("/records", json={"data": "kept"}, headers=host)
        assert written.status_code == 201

        config = m.config.to_api()
        config["image"] = "registry.fly.io/sample-app:v2"
        updated = await fly.update_machine(app, m.id, config, current_version=m.version)
        assert updated.version != m.version
        assert len(updated.version) == 26
        await fly.wait_machine(app, m.id, state="started", version=updated.version, timeout=30)
        await passing(fly, app, m.id)
        new_pid = machine_pid(localfly.state_dir, m.id)
        assert new_pid != old_pid
        assert not alive(old_pid)

        status = (await edge.get("/status", headers=host)).json()
        assert status["release"] == "v2"
        records = (await edge.get("/records", headers=host)).json()["records"]
        assert [r["data"] for r in records] == ["kept"]

        with pytest.raises(FlyConflict) as stale:
            await fly.update_machine(app, m.id, config, current_version=m.version)
        assert stale.value.status_code == 409
        assert "version" in stale.value.message
        assert (await fly.get_machine(app, m.id)).version == updated.version


async def test_a_held_lease_refuses_other_callers(localfly: Endpoint) -> None:
    app = unique_app()
    async with fly_client(localfly) as fly:
        await fly.create_app(app)
        m = await fly.create_machine(app, echo_config(), region="dfw", lease_ttl=30)
        assert m.nonce
        await fly.wait_machine(app, m.id, state="started", timeout=30)
        with pytest.raises(FlyLeaseHeld):
            await fly.acquire_lease(app, m.id, ttl=10)
        with pytest.raises(FlyLeaseHeld) as refused:
            await fly.update_machine(app, m.id, echo_config(env={"A": "1"}))
        assert refused.value.status_code == 409
        with pytest.raises(FlyConflict):
            await fly.cordon_machine(app, m.id, nonce="not-the-nonce")
        assert (await fly.get_machine(app, m.id)).version == m.version

        refreshed = await fly.acquire_lease(app, m.id, ttl=10, nonce=m.nonce)
        assert refreshed.nonce == m.nonce
        updated = await fly.update_machine(app, m.id, echo_config(env={"A": "1"}), nonce=m.nonce)
        assert updated.version != m.version
        await fly.release_lease(app, m.id, m.nonce)
        assert await fly.get_lease(app, m.id) is None
        mine = await fly.acquire_lease(app, m.id, ttl=1, description="test")
        assert mine.nonce != m.nonce
        assert mine.description == "test"

        async def expired() -> bool:
            return await fly.get_lease(app, m.id) is None

        await await_for(expired, timeout=5, what="the lease to expire")
        await fly.cordon_machine(app, m.id)  # no lease, no nonce needed


async def test_waiting_for_a_version_that_never_comes_times_out(localfly: Endpoint) -> None:
    app = unique_app()
    async with fly_client(localfly) as fly:
        await fly.create_app(app)
        m = await fly.create_machine(app, echo_config(image="sleeper"), region="ams")
        ok = await fly.wait_machine(app, m.id, state="started", timeout=30)
        assert ok.state == "started"
        assert ok.version == m.version
        with pytest.raises(FlyWaitTimeout) as timed_out:
            await fly.wait_machine(app, m.id, state="started", version="0" * 26, timeout=1)
        assert timed_out.value.status_code == 408


async def test_list_filters_pages_and_metadata(localfly: Endpoint) -> None:
    app = unique_app()
    async with fly_client(localfly) as fly:
        await fly.create_app(app)
        ids = []
        for i, region in enumerate(["syd", "syd", "dfw"]):
            config = echo_config(image="sleeper", metadata={"slot": str(i), "role": "web"})
            ids.append((await fly.create_machine(app, config, region=region, skip_launch=True)).id)
        assert {m.id for m in await fly.list_machines(app, region="syd")} == set(ids[:2])
        by_meta = await fly.list_machines(app, metadata={"role": "web", "slot": "2"})
        assert [m.id for m in by_meta] == [ids[2]]
        assert len(await fly.list_machines(app, limit=1)) == 3  # follows fly-next-cursor
        assert [m.state for m in await fly.list_machines(app, state="created")] == ["created"] * 3

        await fly.update_metadata(app, ids[0], {"role": None, "extra": "x"})
        assert await fly.get_metadata(app, ids[0]) == {"slot": "0", "extra": "x"}
        with pytest.raises(FlyPreconditionFailed):
            await fly.update_metadata(app, ids[0], {"a": "b"}, machine_version="0" * 26)
        await fly.set_metadata(app, ids[1], "k", "v")
        await fly.delete_metadata(app, ids[1], "slot")
        assert await fly.get_metadata(app, ids[1]) == {"role": "web", "k": "v"}


async def test_destroy_needs_force_while_started_and_keeps_the_volume(localfly: Endpoint) -> None:
    app = unique_app()
    async with fly_client(localfly) as fly:
        await fly.create_app(app)
        vol = await fly.create_volume(app, name="data", region="syd", size_gb=1)
        config = echo_config(mounts=[{"volume": vol.id, "path": "/app/.data"}])
        m = await fly.create_machine(app, config, region="syd")
        await fly.wait_machine(app, m.id, state="started", timeout=30)
        pid = machine_pid(localfly.state_dir, m.id)
        assert pid is not None
        with pytest.raises(FlyPreconditionFailed):
            await fly.destroy_machine(app, m.id)
        await fly.destroy_machine(app, m.id, force=True)
        assert not alive(pid)
        gone = await fly.get_machine(app, m.id)
        assert gone.state == "destroyed"
        assert m.id not in {x.id for x in await fly.list_machines(app)}
        assert m.id in {x.id for x in await fly.list_machines(app, include_deleted=True)}
        kept = await fly.get_volume(app, vol.id)
        assert kept.state == "created"
        assert kept.attached_machine_id is None


async def test_restart_policy_and_exec(localfly: Endpoint) -> None:
    app = unique_app()
    async with fly_client(localfly) as fly:
        await fly.create_app(app)
        crash = echo_config(image="crasher", restart={"policy": "on-failure", "max_retries": 2})
        crash.pop("checks")
        m = await fly.create_machine(app, crash, region="lhr")

        async def stopped() -> bool:
            return (await fly.get_machine(app, m.id)).state == "stopped"

        await await_for(stopped, timeout=20, what="crash loop to give up")
        events = await fly.list_events(app, m.id, limit=50)
        assert sum(1 for e in events if e.type == "start") == 3  # first run + 2 retries
        log = (localfly.state_dir / "machines" / m.id / "log").read_text()
        assert log.count("[localfly]") >= 6  # three execs, three exits

        once = await fly.create_machine(app, {**crash, "restart": {"policy": "no"}}, region="lhr")

        async def stopped_once() -> bool:
            return (await fly.get_machine(app, once.id)).state == "stopped"

        await await_for(stopped_once, timeout=20, what="a crash without restarts")
        assert [e.type for e in await fly.list_events(app, once.id)].count("start") == 1

        tcp = {"type": "tcp", "port": 8080, "interval": "1s", "timeout": "1s"}
        config = echo_config(env={"GREETING": "hi"})
        config["checks"]["port"] = tcp
        e = await fly.create_machine(app, config, region="lhr")
        await fly.wait_machine(app, e.id, state="started", timeout=30)
        result = await fly.exec_machine(app, e.id, ["sh", "-c", "echo $GREETING $FLY_REGION"])
        assert (result.exit_code, result.stdout) == (0, "hi lhr\n")
        failed = await fly.exec_machine(app, e.id, ["sh", "-c", "exit 4"])
        assert failed.exit_code == 4

        await fly.stop_machine(app, e.id)
        await fly.wait_machine(app, e.id, state="stopped", timeout=30)
        pid = machine_pid(localfly.state_dir, e.id)
        assert pid is None
        await fly.start_machine(app, e.id)
        started = await passing(fly, app, e.id)
        assert sorted(c.name for c in started.checks) == ["alive", "port"]


async def test_stop_kills_a_process_that_ignores_sigterm(localfly: Endpoint) -> None:
    app = unique_app()
    async with fly_client(localfly) as fly:
        await fly.create_app(app)
        tcp = {"type": "tcp", "port": 8080, "interval": "1s", "timeout": "1s"}
        m = await fly.create_machine(
            app, echo_config(image="stubborn", checks={"port": tcp}), region="sin"
        )
        await passing(fly, app, m.id)
        pid = machine_pid(localfly.state_dir, m.id)
        assert pid is not None
        await fly.stop_machine(app, m.id, timeout="1s")
        await fly.wait_machine(app, m.id, state="stopped", timeout=30)
        assert not alive(pid)
        exit_event = next(e for e in await fly.list_events(app, m.id) if e.type == "exit")
        assert exit_event.raw["request"]["exit_event"]["signal"] == 9


async def test_the_proxy_replays_where_fly_replay_points(localfly: Endpoint) -> None:
    app = unique_app()
    host = {"host": f"{app}.fly.dev"}
    async with fly_client(localfly) as fly, httpx.AsyncClient(base_url=localfly.proxy_url) as edge:
        await fly.create_app(app)
        leader = await fly.create_machine(app, echo_config(), region="ams")
        by_id = echo_config(env={"ECHO_REPLAY": f"instance={leader.id}"})
        by_region = echo_config(env={"ECHO_REPLAY": "region=ams"})
        nowhere = echo_config(env={"ECHO_REPLAY": "instance=0000"})
        followers = [
            await fly.create_machine(app, config, region=region)
            for config, region in ((by_id, "syd"), (by_region, "dfw"), (nowhere, "lhr"))
        ]
        for m in (leader, *followers):
            await passing(fly, app, m.id)
        for follower in followers[:2]:
            forced = {**host, "fly-force-instance-id": follower.id}
            r = await edge.post("/", content=b"x" * 5000, headers=forced)
            assert (r.status_code, r.headers["fly-machine-id"]) == (201, leader.id)
            assert r.json()["size"] == 5000  # the body went again
            assert r.json()["replay_src"].startswith(f"instance={follower.id};")
        # A replay nobody can take leaves the app's own answer.
        stuck = {**host, "fly-force-instance-id": followers[2].id}
        r = await edge.post("/", content=b"x", headers=stuck)
        assert (r.status_code, r.headers["fly-replay"]) == (409, "instance=0000")
