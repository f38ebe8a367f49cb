"""Rate limits, seeded faults, dropped connections, region outages, failing checks."""

from __future__ import annotations

import httpx
import pytest

from orchestrator.errors import FlyServerError
from orchestrator.localfly.control import Endpoint

from .helpers import (
    api,
    await_for,
    echo_config,
    fly_client,
    machine_port,
    passing,
    service_config,
    unique_app,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def clean_faults(localfly: Endpoint) -> object:
    """Clear injected faults and outages after the test, whatever happened."""
    yield None
    with api(localfly) as c:
        c.delete("/_localfly/faults")


def test_four_fast_starts_of_one_machine_are_rate_limited(localfly: Endpoint) -> None:
    app = unique_app()
    with api(localfly) as c:
        c.post("/v1/apps", json={"name": app, "org_slug": "personal"}).raise_for_status()
        m = c.post(
            f"/v1/apps/{app}/machines",
            json={"region": "syd", "config": {"image": "sleeper"}, "skip_launch": True},
        ).json()
        limited_before = c.get("/_localfly/stats").json()["rate_limited"]
        answers = [c.post(f"/v1/apps/{app}/machines/{m['id']}/start") for _ in range(4)]
        assert [r.status_code for r in answers[:3]] == [200, 412, 412]
        assert answers[3].status_code == 429
        assert int(answers[3].headers["retry-after"]) >= 1
        assert answers[3].json()["status"] == "unknown"
        assert "rate limit" in answers[3].json()["error"]
        assert c.get("/_localfly/stats").json()["rate_limited"] == limited_before + 1


def test_seeded_faults_replay_and_drop_connections(
    localfly: Endpoint, clean_faults: object
) -> None:
    app = unique_app()
    rule = {"operation": "Apps_show", "rate": 0.5, "status": 503}
    with api(localfly) as c:
        c.post("/v1/apps", json={"name": app}).raise_for_status()
        runs = []
        for _ in range(2):
            c.put("/_localfly/faults", json={"seed": 7, "rules": [rule]}).raise_for_status()
            runs.append([c.get(f"/v1/apps/{app}").status_code for _ in range(16)])
        assert runs[0] == runs[1]
        assert {200, 503} <= set(runs[0])
        assert c.get("/_localfly/faults").json()["rules"][0]["fired"] == runs[1].count(503)

        c.put(
            "/_localfly/faults",
            json={"rules": [{"operation": "Machines_create", "drop": "after", "times": 1}]},
        ).raise_for_status()
        body = {"region": "syd", "config": {"image": "sleeper"}, "skip_launch": True}
        with pytest.raises(httpx.TransportError):
            c.post(f"/v1/apps/{app}/machines", json=body)
        # The call happened although its answer was lost: the ambiguous case.
        assert len(c.get(f"/v1/apps/{app}/machines").json()) == 1
        assert c.post(f"/v1/apps/{app}/machines", json=body).status_code == 200

        # The delay holds its call at least that long, and hits its operation only: the
        # other call is not held (what the rule did is counted; how fast the other call
        # answers meanwhile is measured by bench/latency.py).
        delay = {"operation": "Apps_list", "delay_ms": 1500}
        c.put("/_localfly/faults", json={"rules": [delay]}).raise_for_status()
        assert c.get("/v1/apps").elapsed.total_seconds() >= 1.5
        assert c.get(f"/v1/apps/{app}").status_code == 200
        assert c.get("/_localfly/faults").json()["rules"][0]["fired"] == 1

        bad = c.put("/_localfly/faults", json={"rules": [{"operation": "*", "rate": 2}]})
        assert bad.status_code == 400
        assert "rate" in bad.json()["error"]


async def test_region_outage_moves_traffic_to_other_regions(
    localfly: Endpoint, clean_faults: object
) -> None:
    app = unique_app()
    host = {"host": f"{app}.fly.dev"}
    async with fly_client(localfly) as fly, httpx.AsyncClient(base_url=localfly.proxy_url) as edge:
        await fly.create_app(app)
        syd = await fly.create_machine(app, echo_config(), region="syd")
        ams = await fly.create_machine(app, echo_config(), region="ams")
        await passing(fly, app, syd.id)
        await passing(fly, app, ams.id)
        prefer_syd = {**host, "fly-prefer-region": "syd"}
        assert (await edge.get("/", headers=prefer_syd)).headers["fly-region"] == "syd"
        port = machine_port(localfly.state_dir, syd.id)

        async with httpx.AsyncClient(base_url=localfly.api_url, headers=localfly.headers) as c:
            down = await c.post("/_localfly/outage/syd")
            assert syd.id in down.json()["machines"]  # (other tests share the server)
            for _ in range(4):
                r = await edge.get("/", headers=prefer_syd)
                assert (r.status_code, r.headers["fly-region"]) == (200, "ams")
            with pytest.raises(httpx.TimeoutException):
                await edge.get(f"http://127.0.0.1:{port}/", timeout=0.5)
            seen = await fly.get_machine(app, syd.id)
            assert seen.host_status == "unreachable"
            with pytest.raises(FlyServerError) as refused:
                await fly.stop_machine(app, syd.id)
            assert refused.value.status_code == 503

            async def critical() -> bool:
                m = await fly.get_machine(app, syd.id)
                return bool(m.checks) and m.checks[0].status == "critical"

            await await_for(critical, what="syd checks to fail")
            await c.delete("/_localfly/outage/syd")
        await passing(fly, app, syd.id)
        assert (await edge.get(f"http://127.0.0.1:{port}/", timeout=5)).status_code == 200
        assert (await edge.get("/", headers=prefer_syd)).headers["fly-region"] == "syd"


async def test_injected_check_failures_take_a_machine_out_of_the_proxy(
    localfly: Endpoint, clean_faults: object
) -> None:
    app = unique_app()
    host = {"host": f"{app}.fly.dev"}
    async with fly_client(localfly) as fly, httpx.AsyncClient(base_url=localfly.proxy_url) as edge:
        await fly.create_app(app)
        # Service checks: Fly's proxy routes on them (top-level checks do not route).
        a = await fly.create_machine(app, service_config(), region="dfw")
        b = await fly.create_machine(app, service_config(), region="dfw")
        await passing(fly, app, a.id)
        await passing(fly, app, b.id)
        with api(localfly) as c:
            c.put("/_localfly/faults", json={"failing_checks": [b.id]}).raise_for_status()

        async def failing() -> bool:
            return not (await fly.get_machine(app, b.id)).checks_passing

        await await_for(failing, what="injected check failure")
        served = {(await edge.get("/", headers=host)).headers["fly-machine-id"] for _ in range(6)}
        assert served == {a.id}
        await fly.cordon_machine(app, a.id)
        r = await edge.get("/", headers=host)
        assert (r.status_code, r.json()) == (503, {"error": "no machine available"})
        await fly.uncordon_machine(app, a.id)

        async def served() -> bool:
            return (await edge.get("/", headers=host)).status_code == 200

        await await_for(served, what="the proxy to route again")


async def test_the_proxy_routes_on_service_checks_not_top_level_checks(
    localfly: Endpoint, clean_faults: object
) -> None:
    app = unique_app()
    host = {"host": f"{app}.fly.dev"}
    async with fly_client(localfly) as fly, httpx.AsyncClient(base_url=localfly.proxy_url) as edge:
        await fly.create_app(app)
        top = await fly.create_machine(app, echo_config(), region="iad")
        svc = await fly.create_machine(app, service_config(), region="iad")
        seen = await passing(fly, app, svc.id)
        # Fly lists a service check's result under servicecheck-<index>-<type>-<port>.
        assert [c.name for c in seen.checks] == ["servicecheck-00-http-8080"]
        await passing(fly, app, top.id)
        with api(localfly) as c:
            c.put("/_localfly/faults", json={"failing_checks": [top.id, svc.id]}).raise_for_status()

        async def both_failing() -> bool:
            machines = [await fly.get_machine(app, m.id) for m in (top, svc)]
            return all(m.checks and not m.checks_passing for m in machines)

        await await_for(both_failing, what="injected check failures on both machines")
        served = {(await edge.get("/", headers=host)).headers["fly-machine-id"] for _ in range(8)}
        # The machine failing only a top-level check keeps its traffic; the other loses it.
        assert served == {top.id}


async def test_a_machine_without_a_service_gets_no_traffic(localfly: Endpoint) -> None:
    app = unique_app()
    host = {"host": f"{app}.fly.dev"}
    async with fly_client(localfly) as fly, httpx.AsyncClient(base_url=localfly.proxy_url) as edge:
        await fly.create_app(app)
        # A worker: it runs and passes its check, but has no service for the proxy to use.
        worker = await fly.create_machine(app, echo_config(services=[]), region="ord")
        await passing(fly, app, worker.id)
        r = await edge.get("/", headers=host)
        assert (r.status_code, r.json()) == (503, {"error": "no machine available"})
        web = await fly.create_machine(app, service_config(), region="ord")
        await passing(fly, app, web.id)
        served = {(await edge.get("/", headers=host)).headers["fly-machine-id"] for _ in range(6)}
        assert served == {web.id}
