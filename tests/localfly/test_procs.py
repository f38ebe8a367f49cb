"""``GET .../ps`` and ``exec`` on the local Fly: a machine's processes, its env, root and volume."""

from __future__ import annotations

import pytest

from orchestrator.errors import FlyBadRequest, FlyPreconditionFailed
from orchestrator.localfly.control import Endpoint

from .helpers import api, fly_client, machine_pid, passing, sample_config, unique_app

pytestmark = pytest.mark.anyio


async def test_ps_lists_the_machine_process_and_exec_sees_its_volume(localfly: Endpoint) -> None:
    app = unique_app("ps")
    async with fly_client(localfly) as fly:
        await fly.create_app(app)
        vol = await fly.create_volume(app, name="data", region="syd", size_gb=1)
        created = await fly.create_machine(app, sample_config(vol.id, "v1"), region="syd")
        m = await passing(fly, app, created.id)
        pid = machine_pid(localfly.state_dir, m.id)

        procs = await fly.list_processes(app, m.id)
        assert pid in [p.pid for p in procs]
        main = next(p for p in procs if p.pid == pid)
        assert "orchestrator.sampleapp" in main.command
        assert main.rss_bytes > 1_000_000
        assert main.listening
        assert main.directory.endswith(f"machines/{m.id}/root")

        # The mount path in a command's words is the machine's volume; env and cwd are its own.
        ran = await fly.exec_machine(
            app, m.id, ["sh", "-c", 'ls /app/.data; echo "$FLY_MACHINE_ID"; pwd']
        )
        assert ran.exit_code == 0, ran.stderr
        lines = ran.stdout.splitlines()
        assert "records.db" in lines
        assert m.id in lines
        assert lines[-1].endswith(f"machines/{m.id}/root")
        data = localfly.state_dir / "volumes" / vol.id / "data"
        touched = await fly.exec_machine(app, m.id, ["touch", "/app/.data/from-exec"])
        assert touched.exit_code == 0, touched.stderr
        assert (data / "from-exec").exists()

        with api(localfly) as c:
            bad = c.get(f"/v1/apps/{app}/machines/{m.id}/ps", params={"sort_by": "nope"})
            assert bad.status_code == 400
        await fly.stop_machine(app, m.id)
        await fly.wait_machine(app, m.id, state="stopped", timeout=30)
        with pytest.raises(FlyPreconditionFailed):
            await fly.list_processes(app, m.id)
        with pytest.raises((FlyPreconditionFailed, FlyBadRequest)):
            await fly.exec_machine(app, m.id, ["true"])
        await fly.destroy_machine(app, m.id, force=True)
