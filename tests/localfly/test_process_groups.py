"""Process groups on the local Fly: each machine runs its group's command (``init.cmd``)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from orchestrator.localfly.control import Endpoint

from .helpers import await_for, fly_client, passing, sample_config, unique_app

pytestmark = pytest.mark.anyio


def worker_config(release: str) -> dict[str, Any]:
    """Return the sample app's worker group config, as flyctl builds it from [processes]."""
    return {
        "image": f"registry.fly.io/sample-app:{release}",
        "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256},
        "env": {"PRIMARY_REGION": "syd"},
        "init": {"cmd": ["worker"]},
        "checks": {
            "worker": {
                "type": "http",
                "port": 8080,
                "path": "/status",
                "interval": "1s",
                "timeout": "1s",
            }
        },
        "metadata": {"fly_platform_version": "v2", "fly_process_group": "worker"},
    }


async def test_a_worker_group_machine_runs_its_command_and_consumes_the_app_records(
    localfly: Endpoint,
) -> None:
    app = unique_app()
    host = {"host": f"{app}.fly.dev"}
    async with fly_client(localfly) as fly, httpx.AsyncClient(base_url=localfly.proxy_url) as edge:
        await fly.create_app(app)
        vol = await fly.create_volume(app, name="data", region="syd", size_gb=1)
        web = await fly.create_machine(app, sample_config(vol.id, "v1"), region="syd")
        await passing(fly, app, web.id, timeout=30)
        for data in ("first", "second"):
            written = await edge.post("/records", json={"data": data}, headers=host)
            assert written.status_code == 201

        worker = await fly.create_machine(app, worker_config("v1"), region="syd")
        await passing(fly, app, worker.id, timeout=30)
        log = localfly.state_dir / "machines" / worker.id / "log"

        async def consumed_both() -> bool:
            text = log.read_text() if log.exists() else ""
            return 'consumed record 1: "first"' in text and 'consumed record 2: "second"' in text

        await await_for(consumed_both, timeout=20, what="the worker consuming both records")
        # The worker serves no traffic: the proxy keeps sending requests to the app group.
        status = (await edge.get("/status", headers=host)).json()
        assert status["machine_id"] == web.id
        written = await edge.post("/records", json={"data": "third"}, headers=host)
        assert written.status_code == 201

        async def consumed_third() -> bool:
            return 'consumed record 3: "third"' in log.read_text()

        await await_for(consumed_third, timeout=20, what="the worker consuming a new record")

        # A release the sample app calls unhealthy fails the worker's check too, so a deploy
        # of the worker group is gated on it like the app group.
        current = await fly.get_machine(app, worker.id)
        updated = await fly.update_machine(
            app, worker.id, worker_config("v2-unhealthy"), current_version=current.version
        )
        await fly.wait_machine(app, worker.id, state="started", version=updated.version)

        async def failing() -> bool:
            m = await fly.get_machine(app, worker.id)
            return m.version == updated.version and any(c.status == "critical" for c in m.checks)

        await await_for(failing, timeout=20, what="the unhealthy worker's check failing")
        for machine_id in (worker.id, web.id):
            await fly.destroy_machine(app, machine_id, force=True)
