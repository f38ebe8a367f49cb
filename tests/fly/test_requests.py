"""Every client method sends a request Fly's OpenAPI document allows and reads the answer right.

The `FlyAPI` handler checks each request against the document (path, method, parameters, body
schema); these tests add what the user of the method would notice: the values that went out and
the typed value that came back.
"""

from __future__ import annotations

import inspect

import httpx
import pytest

from orchestrator.errors import (
    FlyBadRequest,
    FlyConflict,
    FlyLeaseHeld,
    FlyNotFound,
    FlyPreconditionFailed,
)
from orchestrator.fly.client import FlyClient
from orchestrator.fly.models import Guest, MachineConfig

from . import samples
from .openapi import FlyAPI, json_response

pytestmark = pytest.mark.anyio

APP = "demo"
MID = "148ed193b95e89"
NONCE = "7a3c9e1f2b4d"

# docs/architecture.md, "The client": the whole public surface, no more, no less.
DOCUMENTED_METHODS = {
    "create_app", "get_app",
    "list_machines", "create_machine", "get_machine", "update_machine", "destroy_machine",
    "start_machine", "stop_machine", "restart_machine", "cordon_machine", "uncordon_machine",
    "wait_machine", "get_lease", "acquire_lease", "release_lease",
    "get_metadata", "update_metadata", "set_metadata", "delete_metadata",
    "exec_machine", "list_events", "list_processes", "list_versions",
    "list_volumes", "create_volume", "get_volume", "update_volume", "destroy_volume",
    "extend_volume", "list_snapshots", "create_snapshot",
    "list_secrets", "reveal_secrets", "set_secrets", "unset_secret",
    "list_regions",
}  # fmt: skip


def test_client_has_exactly_the_documented_api_methods() -> None:
    public = {
        name
        for name, fn in inspect.getmembers(FlyClient, inspect.iscoroutinefunction)
        if not name.startswith("_")
    }
    assert public - {"aclose"} == DOCUMENTED_METHODS


# -- apps -----------------------------------------------------------------------------------


async def test_create_app_sends_the_idempotency_key_and_returns_the_named_app(
    api: FlyAPI, fly: FlyClient
) -> None:
    api.on("Apps_create", json_response(201, {"id": "app_9x", "created_at": 1722506400}))
    app = await fly.create_app(APP, org_slug="acme", idempotency_key="launch-1")
    (call,) = api.calls
    assert call.body == {"name": APP, "org_slug": "acme", "idempotency_key": "launch-1"}
    assert (app.id, app.name, app.organization) == ("app_9x", APP, "acme")


async def test_create_app_name_taken_is_a_bad_request_with_fly_status(
    api: FlyAPI, fly: FlyClient
) -> None:
    api.on(
        "Apps_create",
        json_response(
            422, {"error": "app name taken", "status": "name_taken"}, fly_request_id="req-1"
        ),
    )
    with pytest.raises(FlyBadRequest) as info:
        await fly.create_app(APP)
    assert info.value.fly_status == "name_taken"
    assert "fly-request-id req-1" in str(info.value)
    assert len(api.calls) == 1


async def test_get_app(api: FlyAPI, fly: FlyClient) -> None:
    api.on(
        "Apps_show",
        json_response(
            200,
            {
                "id": "app_9x",
                "name": APP,
                "status": "deployed",
                "organization": {"slug": "personal", "name": "Me"},
                "machine_count": 3,
                "volume_count": 3,
            },
        ),
    )
    app = await fly.get_app(APP)
    assert api.calls[0].path_params == {"app_name": APP}
    assert (app.name, app.status, app.machine_count, app.organization) == (
        APP,
        "deployed",
        3,
        "personal",
    )


# -- machines -------------------------------------------------------------------------------


async def test_list_machines_sends_every_filter(api: FlyAPI, fly: FlyClient) -> None:
    api.on("Machines_list", json_response(200, [samples.machine()]))
    machines = await fly.list_machines(
        APP,
        region="syd",
        state=["started", "stopped"],
        metadata={"fly_release_id": "v2", "orch_slot": "1"},
        include_deleted=True,
        summary=True,
        limit=50,
    )
    (call,) = api.calls
    assert call.query == [
        ("region", "syd"),
        ("state", "started,stopped"),
        ("metadata.fly_release_id", "v2"),
        ("metadata.orch_slot", "1"),
        ("include_deleted", "true"),
        ("summary", "true"),
        ("limit", "50"),
    ]
    assert [(m.id, m.region, m.state) for m in machines] == [(MID, "syd", "started")]


async def test_list_machines_without_filters_sends_no_query(api: FlyAPI, fly: FlyClient) -> None:
    api.on("Machines_list", json_response(200, []))
    assert await fly.list_machines(APP) == []
    assert api.calls[0].query == []


async def test_list_machines_follows_the_next_cursor_header_to_the_last_page(
    api: FlyAPI, fly: FlyClient
) -> None:
    api.on(
        "Machines_list",
        json_response(200, [samples.machine("m1"), samples.machine("m2")], fly_next_cursor="c1"),
        json_response(200, [samples.machine("m3")], fly_next_cursor="c2"),
        json_response(200, [samples.machine("m4")]),
    )
    machines = await fly.list_machines(APP, region="syd", limit=2)
    assert [m.id for m in machines] == ["m1", "m2", "m3", "m4"]
    assert [c.query_value("cursor") for c in api.calls] == [None, "c1", "c2"]
    # Every page keeps the filters and the page size.
    assert all(c.query_value("region") == "syd" for c in api.calls)
    assert all(c.query_value("limit") == "2" for c in api.calls)


async def test_list_machines_stops_when_a_cursor_repeats(api: FlyAPI, fly: FlyClient) -> None:
    api.on("Machines_list", json_response(200, [samples.machine("m1")], fly_next_cursor="same"))
    machines = await fly.list_machines(APP, limit=1)
    assert len(api.calls) == 2
    assert [m.id for m in machines] == ["m1", "m1"]


async def test_create_machine_with_lease_ttl_returns_a_leased_machine(
    api: FlyAPI, fly: FlyClient
) -> None:
    api.on("Machines_create", json_response(200, samples.machine(nonce=NONCE)))
    config = MachineConfig.from_api(samples.CONFIG)
    created = await fly.create_machine(
        APP, config, region="syd", name="demo-syd-1", lease_ttl=300, skip_launch=True
    )
    (call,) = api.calls
    # region, name, lease_ttl and skip_launch are top-level request fields, not config.
    assert call.body["region"] == "syd"
    assert call.body["name"] == "demo-syd-1"
    assert call.body["lease_ttl"] == 300
    assert call.body["skip_launch"] is True
    assert call.body["config"]["image"] == "registry.fly.io/sample-app:v2"
    assert "lease_ttl" not in call.body["config"]
    assert created.nonce == NONCE
    assert created.id == MID


async def test_create_and_update_send_min_secrets_version_at_the_top_level(
    api: FlyAPI, fly: FlyClient
) -> None:
    api.on("Machines_create", json_response(200, samples.machine()))
    api.on("Machines_update", json_response(200, samples.machine(version="01NEWVERSION")))
    await fly.create_machine(APP, {"image": "nginx:1"}, region="dfw", min_secrets_version=4)
    await fly.update_machine(APP, MID, {"image": "nginx:1"}, min_secrets_version=5)
    create, update = api.calls
    assert create.body["min_secrets_version"] == 4
    assert update.body["min_secrets_version"] == 5
    assert "min_secrets_version" not in create.body["config"]


async def test_secrets_are_listed_without_values_and_changed_as_one_version(
    api: FlyAPI, fly: FlyClient
) -> None:
    listed = {
        "secrets": [
            {"name": "TOKEN", "digest": "d2", "value": "must-not-surface"},
            {"name": "DB_URL", "digest": "d1", "created_at": "2026-01-01T00:00:00Z"},
        ]
    }
    api.on("Secrets_list", json_response(200, listed))
    api.on("Secrets_update", json_response(200, {"secrets": [], "version": 7}))
    api.on("Secret_delete", json_response(200, {"version": 8}))
    secrets = await fly.list_secrets(APP)
    assert [(s.name, s.digest) for s in secrets] == [("DB_URL", "d1"), ("TOKEN", "d2")]
    assert "must-not-surface" not in repr(secrets)
    assert await fly.set_secrets(APP, {"DB_URL": "postgres://x", "TOKEN": "t"}) == 7
    assert await fly.unset_secret(APP, "OLD") == 8
    listing, update, delete = api.calls
    assert listing.query == []
    assert update.body == {"values": {"DB_URL": "postgres://x", "TOKEN": "t"}}
    assert delete.path_params == {"app_name": APP, "secret_name": "OLD"}


async def test_reveal_secrets_asks_for_values_and_keeps_only_the_names_asked(
    api: FlyAPI, fly: FlyClient
) -> None:
    listed = {"secrets": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
    api.on("Secrets_list", json_response(200, listed))
    assert await fly.reveal_secrets(APP, ["B", "C"]) == {"B": "2"}
    assert api.calls[0].query == [("show_secrets", "true")]


async def test_create_machine_accepts_a_plain_config_dict(api: FlyAPI, fly: FlyClient) -> None:
    api.on("Machines_create", json_response(200, samples.machine()))
    await fly.create_machine(APP, {"image": "nginx:1"}, region="dfw")
    assert api.calls[0].body == {"config": {"image": "nginx:1"}, "region": "dfw"}


async def test_get_machine_reads_version_checks_and_config(api: FlyAPI, fly: FlyClient) -> None:
    api.on("Machines_show", json_response(200, samples.machine()))
    m = await fly.get_machine(APP, MID)
    assert api.calls[0].path_params == {"app_name": APP, "machine_id": MID}
    assert m.version == "01HZX4V6X7KT0YQ5M7N4ZB1V2C"
    assert m.checks_passing
    assert m.config.mounts[0].path == "/app/.data"
    assert m.metadata["fly_release_id"] == "v2"


async def test_update_machine_sends_the_full_config_version_and_lease_nonce(
    api: FlyAPI, fly: FlyClient
) -> None:
    api.on("Machines_update", json_response(200, samples.machine(version="01NEWVERSION")))
    current = MachineConfig.from_api(samples.CONFIG)
    updated = await fly.update_machine(
        APP, MID, current, current_version="01HZX4V6X7KT0YQ5M7N4ZB1V2C", nonce=NONCE
    )
    (call,) = api.calls
    assert call.headers["fly-machine-lease-nonce"] == NONCE
    assert call.body["current_version"] == "01HZX4V6X7KT0YQ5M7N4ZB1V2C"
    # The FULL config goes back, fields the models do not name included.
    assert call.body["config"]["stop_config"] == {"signal": "SIGTERM", "timeout": "10s"}
    assert call.body["config"]["checks"] == samples.CONFIG["checks"]
    assert updated.version == "01NEWVERSION"


async def test_update_machine_with_a_stale_version_is_a_conflict(
    api: FlyAPI, fly: FlyClient
) -> None:
    api.on(
        "Machines_update",
        json_response(409, {"error": "current_version does not match"}, fly_request_id="r-9"),
    )
    with pytest.raises(FlyConflict) as info:
        await fly.update_machine(APP, MID, {"image": "x"}, current_version="old")
    assert not isinstance(info.value, FlyLeaseHeld)
    assert info.value.request_id == "r-9"
    assert len(api.calls) == 1


async def test_destroy_machine_sends_force_and_kill_as_fly_go_does(
    api: FlyAPI, fly: FlyClient
) -> None:
    # The spec names the parameter ``force``; fly-go's Destroy sends ``kill=true``, which the
    # document does not declare. Fly acts on what fly-go sends: both go (openapi.FLY_GO_QUERY).
    api.on("Machines_delete", json_response(200, {"ok": True}))
    await fly.destroy_machine(APP, MID, force=True, nonce=NONCE)
    await fly.destroy_machine(APP, MID)
    forced, plain = api.calls
    assert forced.query == [("force", "true"), ("kill", "true")]
    assert forced.headers["fly-machine-lease-nonce"] == NONCE
    assert plain.query == []
    assert "fly-machine-lease-nonce" not in plain.headers


@pytest.mark.parametrize(
    ("method", "operation"),
    [
        ("start_machine", "Machines_start"),
        ("stop_machine", "Machines_stop"),
        ("restart_machine", "Machines_restart"),
        ("cordon_machine", "Machines_cordon"),
        ("uncordon_machine", "Machines_uncordon"),
    ],
)
async def test_lifecycle_actions_carry_the_lease_nonce(
    api: FlyAPI, fly: FlyClient, method: str, operation: str
) -> None:
    api.on(operation, json_response(200, {"ok": True}))
    await getattr(fly, method)(APP, MID, nonce=NONCE)
    await getattr(fly, method)(APP, MID)
    leased, unleased = api.calls
    assert leased.operation_id == operation
    assert leased.headers["fly-machine-lease-nonce"] == NONCE
    assert "fly-machine-lease-nonce" not in unleased.headers


async def test_stop_machine_sends_signal_and_timeout_as_a_duration(
    api: FlyAPI, fly: FlyClient
) -> None:
    api.on("Machines_stop", json_response(200, {"ok": True}))
    await fly.stop_machine(APP, MID, signal="SIGINT", timeout=10)
    await fly.stop_machine(APP, MID, timeout="1m30s")
    assert api.calls[0].body == {"signal": "SIGINT", "timeout": "10s"}
    assert api.calls[1].body == {"timeout": "1m30s"}


async def test_wait_machine_sends_state_version_and_timeout(api: FlyAPI, fly: FlyClient) -> None:
    api.on(
        "Machines_wait",
        json_response(200, {"ok": True, "state": "started", "version": "01NEW", "event_id": "e"}),
    )
    result = await fly.wait_machine(APP, MID, state="started", version="01NEW", timeout=30)
    assert api.calls[0].query == [("state", "started"), ("timeout", "30"), ("version", "01NEW")]
    assert (result.ok, result.state, result.version) == (True, "started", "01NEW")


@pytest.mark.parametrize(("asked", "sent"), [(0.2, "1"), (45.5, "46"), (300, "60")])
async def test_wait_machine_clamps_the_timeout_to_fly_go_bounds(
    api: FlyAPI, fly: FlyClient, asked: float, sent: str
) -> None:
    api.on("Machines_wait", json_response(200, {"ok": True, "state": "stopped"}))
    await fly.wait_machine(APP, MID, state="stopped", timeout=asked)
    assert api.calls[0].query_value("timeout") == sent


# -- leases ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer", [samples.LEASE_FLAT, samples.LEASE_WRAPPED], ids=["spec-flat", "real-wrapped"]
)
async def test_acquire_lease_sends_ttl_as_fly_go_does_and_reads_either_answer_shape(
    api: FlyAPI, fly: FlyClient, answer: dict[str, object]
) -> None:
    # The spec's Lease is flat; Fly's docs and fly-go answer {"status": "success", "data": ...}.
    # Both must give the nonce. The ttl goes as ?ttl=N as fly-go sends it (what Fly reads; the
    # document does not declare it: openapi.FLY_GO_QUERY) and in the body as the spec says.
    api.on("Machines_create_lease", json_response(201, answer))
    lease = await fly.acquire_lease(APP, MID, ttl=13, description="orchestrator deploy v2")
    (call,) = api.calls
    assert call.body == {"ttl": 13, "description": "orchestrator deploy v2"}
    assert call.query == [("ttl", "13")]
    assert "fly-machine-lease-nonce" not in call.headers
    assert lease.nonce == NONCE
    assert lease.expires_at == 1722506473
    assert lease.owner == "deployer@example.com"


async def test_refreshing_a_lease_sends_the_existing_nonce(api: FlyAPI, fly: FlyClient) -> None:
    api.on("Machines_create_lease", json_response(201, samples.LEASE_WRAPPED))
    lease = await fly.acquire_lease(APP, MID, ttl=13, nonce=NONCE)
    assert api.calls[0].headers["fly-machine-lease-nonce"] == NONCE
    assert lease.nonce == NONCE


async def test_a_lease_held_by_someone_else_is_lease_held_naming_the_holder(
    api: FlyAPI, fly: FlyClient
) -> None:
    api.on(
        "Machines_create_lease",
        json_response(409, {"error": "machine ID 148ed193b95e89 is held by ci@example.com"}),
    )
    with pytest.raises(FlyLeaseHeld, match=r"ci@example\.com"):
        await fly.acquire_lease(APP, MID)
    assert len(api.calls) == 1


async def test_get_lease_reads_both_shapes_and_none_when_absent(
    api: FlyAPI, fly: FlyClient
) -> None:
    api.on(
        "Machines_show_lease",
        json_response(200, samples.LEASE_FLAT),
        json_response(200, samples.LEASE_WRAPPED),
        json_response(404, {"error": "lease not found"}),
    )
    flat = await fly.get_lease(APP, MID)
    wrapped = await fly.get_lease(APP, MID)
    absent = await fly.get_lease(APP, MID)
    assert flat is not None
    assert flat.owner == "deployer@example.com"
    assert wrapped is not None
    assert wrapped.nonce == NONCE
    assert absent is None


async def test_release_lease_sends_the_nonce_header(api: FlyAPI, fly: FlyClient) -> None:
    api.on("Machines_release_lease", json_response(200))
    await fly.release_lease(APP, MID, NONCE)
    assert api.calls[0].headers["fly-machine-lease-nonce"] == NONCE


# -- metadata -------------------------------------------------------------------------------


async def test_get_metadata(api: FlyAPI, fly: FlyClient) -> None:
    api.on("Machines_show_metadata", json_response(200, {"fly_release_id": "v2", "orch_slot": "1"}))
    assert await fly.get_metadata(APP, MID) == {"fly_release_id": "v2", "orch_slot": "1"}


async def test_update_metadata_patches_keys_and_deletes_with_null(
    api: FlyAPI, fly: FlyClient
) -> None:
    # Fly deletes a key sent as null; the spec types metadata values as strings only. The
    # handler allows null for exactly this field (openapi.DEVIATIONS).
    api.on("Machines_update_metadata", json_response(204))
    await fly.update_metadata(
        APP,
        MID,
        {"fly_release_id": "v3", "orch_canary": None},
        machine_version="01HZX4V6X7KT0YQ5M7N4ZB1V2C",
        nonce=NONCE,
    )
    (call,) = api.calls
    assert call.request.method == "PATCH"
    assert call.body == {
        "metadata": {"fly_release_id": "v3", "orch_canary": None},
        "machine_version": "01HZX4V6X7KT0YQ5M7N4ZB1V2C",
    }
    assert call.headers["fly-machine-lease-nonce"] == NONCE


async def test_update_metadata_with_a_stale_machine_version_fails_precondition(
    api: FlyAPI, fly: FlyClient
) -> None:
    api.on("Machines_update_metadata", json_response(412, {"error": "machine version mismatch"}))
    with pytest.raises(FlyPreconditionFailed):
        await fly.update_metadata(APP, MID, {"a": "b"}, machine_version="stale")


async def test_set_and_delete_one_metadata_key(api: FlyAPI, fly: FlyClient) -> None:
    api.on("Machines_upsert_metadata", json_response(204))
    api.on("Machines_delete_metadata", json_response(204))
    await fly.set_metadata(APP, MID, "orch_launch_id", "3f2a", nonce=NONCE)
    await fly.delete_metadata(APP, MID, "orch_launch_id")
    put, delete = api.calls
    assert put.path_params["key"] == "orch_launch_id"
    assert put.body == {"value": "3f2a"}
    assert put.headers["fly-machine-lease-nonce"] == NONCE
    assert delete.operation_id == "Machines_delete_metadata"
    assert delete.path_params["key"] == "orch_launch_id"


# -- exec and events ------------------------------------------------------------------------


async def test_exec_machine_returns_exit_code_and_output(api: FlyAPI, fly: FlyClient) -> None:
    api.on(
        "Machines_exec",
        json_response(200, {"exit_code": 3, "stdout": "out\n", "stderr": "err\n"}),
    )
    result = await fly.exec_machine(APP, MID, ["sqlite3", "/app/.data/db", "select 1"], timeout=5)
    assert api.calls[0].body == {"command": ["sqlite3", "/app/.data/db", "select 1"], "timeout": 5}
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")


async def test_list_events(api: FlyAPI, fly: FlyClient) -> None:
    api.on(
        "Machines_list_events",
        json_response(
            200,
            [
                {"id": "e2", "type": "exit", "status": "stopped", "source": "flyd",
                 "timestamp": 2},
                {"id": "e1", "type": "start", "status": "started", "source": "user",
                 "timestamp": 1},
            ],
        ),
    )  # fmt: skip
    events = await fly.list_events(APP, MID, limit=2)
    assert api.calls[0].query == [("limit", "2")]
    assert [(e.type, e.status) for e in events] == [("exit", "stopped"), ("start", "started")]


# -- volumes --------------------------------------------------------------------------------


async def test_list_volumes(api: FlyAPI, fly: FlyClient) -> None:
    api.on("Volumes_list", json_response(200, [samples.volume(attached_machine_id=MID)]))
    volumes = await fly.list_volumes(APP, summary=True)
    assert api.calls[0].query == [("summary", "true")]
    assert [(v.id, v.attached_machine_id, v.size_gb) for v in volumes] == [("vol_123", MID, 1)]
    assert volumes[0].bytes_used is None  # not in the answer: unknown, not zero


async def test_list_volumes_reads_bytes_used(api: FlyAPI, fly: FlyClient) -> None:
    used = samples.volume(bytes_used=734_003_200, bytes_total=1_073_741_824)
    api.on("Volumes_list", json_response(200, [used, samples.volume("vol_456", bytes_used=0)]))
    volumes = await fly.list_volumes(APP)
    assert api.calls[0].query == []
    assert [(v.id, v.bytes_used) for v in volumes] == [("vol_123", 734_003_200), ("vol_456", 0)]


async def test_create_volume_fork_sends_source_and_compute_hint(
    api: FlyAPI, fly: FlyClient
) -> None:
    api.on("Volumes_create", json_response(200, samples.volume("vol_fork", state="hydrating")))
    vol = await fly.create_volume(
        APP,
        name="data",
        region="ams",
        size_gb=3,
        source_volume_id="vol_123",
        require_unique_zone=False,
        snapshot_retention=7,
        encrypted=True,
        compute=Guest(cpu_kind="performance", cpus=2, memory_mb=4096),
    )
    assert api.calls[0].body == {
        "name": "data",
        "region": "ams",
        "size_gb": 3,
        "source_volume_id": "vol_123",
        "require_unique_zone": False,
        "snapshot_retention": 7,
        "encrypted": True,
        "compute": {"cpu_kind": "performance", "cpus": 2, "memory_mb": 4096},
    }
    assert (vol.id, vol.state) == ("vol_fork", "hydrating")


async def test_create_volume_from_snapshot_sends_only_what_was_asked(
    api: FlyAPI, fly: FlyClient
) -> None:
    api.on("Volumes_create", json_response(200, samples.volume("vol_r", state="restoring")))
    await fly.create_volume(APP, name="data", region="syd", size_gb=1, snapshot_id="vs_1")
    assert api.calls[0].body == {
        "name": "data",
        "region": "syd",
        "size_gb": 1,
        "snapshot_id": "vs_1",
    }


async def test_get_update_and_destroy_volume(api: FlyAPI, fly: FlyClient) -> None:
    api.on("Volumes_get_by_id", json_response(200, samples.volume()))
    api.on("Volumes_update", json_response(200, samples.volume(snapshot_retention=14)))
    api.on("Volume_delete", json_response(200, samples.volume(state="pending_destroy")))
    got = await fly.get_volume(APP, "vol_123")
    updated = await fly.update_volume(
        APP, "vol_123", snapshot_retention=14, auto_backup_enabled=False
    )
    destroyed = await fly.destroy_volume(APP, "vol_123")
    _get, put, delete = api.calls
    assert put.request.method == "PUT"
    assert put.body == {"snapshot_retention": 14, "auto_backup_enabled": False}
    assert got.zone == "a1b2"
    assert updated.snapshot_retention == 14
    assert destroyed.destroyed
    assert delete.path_params["volume_id"] == "vol_123"


async def test_extend_volume_reports_whether_a_restart_is_needed(
    api: FlyAPI, fly: FlyClient
) -> None:
    api.on(
        "Volumes_extend",
        json_response(200, {"volume": samples.volume(size_gb=5), "needs_restart": True}),
    )
    result = await fly.extend_volume(APP, "vol_123", 5)
    assert api.calls[0].request.method == "PUT"
    assert api.calls[0].body == {"size_gb": 5}
    assert result.volume.size_gb == 5
    assert result.needs_restart is True


async def test_snapshots_list_and_create_with_an_empty_answer(api: FlyAPI, fly: FlyClient) -> None:
    api.on(
        "Volumes_list_snapshots",
        json_response(
            200,
            [
                {
                    "id": "vs_1",
                    "created_at": "2026-08-01T00:00:00Z",
                    "digest": "sha256:abc",
                    "size": 1024,
                    "volume_size": 1073741824,
                    "status": "created",
                    "retention_days": 5,
                }
            ],
        ),
    )
    # Fly answers a snapshot create with 200 and no body at all.
    api.on("createVolumeSnapshot", httpx.Response(200))
    await fly.create_snapshot(APP, "vol_123")
    snaps = await fly.list_snapshots(APP, "vol_123")
    assert [(s.id, s.digest, s.status) for s in snaps] == [("vs_1", "sha256:abc", "created")]
    assert api.calls[0].body is None


# -- platform -------------------------------------------------------------------------------


async def test_list_regions(api: FlyAPI, fly: FlyClient) -> None:
    api.on("Platform_regions_get", json_response(200, samples.REGIONS))
    regions = await fly.list_regions()
    assert [r.code for r in regions] == ["syd", "dfw", "ams"]
    assert regions[0].gateway_available
    assert regions[0].latitude == pytest.approx(-33.87)


async def test_an_unknown_machine_is_not_found(api: FlyAPI, fly: FlyClient) -> None:
    api.on("Machines_show", json_response(404, {"error": "machine not found"}))
    with pytest.raises(FlyNotFound, match="machine not found"):
        await fly.get_machine(APP, "nope")
    assert len(api.calls) == 1


async def test_list_processes_reads_fly_process_stats(api: FlyAPI, fly: FlyClient) -> None:
    rows = [
        {"pid": 9, "command": "sleep 1", "rss": 10, "cpu": 3, "listen_sockets": []},
        {
            "pid": 1,
            "command": "python -m app",
            "directory": "/app",
            "rss": 25_000_000,
            "cpu": 1200,
            "listen_sockets": [{"address": "0.0.0.0:8080", "proto": "tcp"}],
        },
    ]
    api.on("Machines_list_processes", json_response(200, rows))
    procs = await fly.list_processes(APP, MID)
    assert api.calls[0].path_params == {"app_name": APP, "machine_id": MID}
    assert [p.pid for p in procs] == [1, 9]
    assert (procs[0].rss_bytes, procs[0].cpu_ms, procs[0].listening) == (
        25_000_000,
        1200,
        ("0.0.0.0:8080",),
    )
