"""Conformance: the local Fly's answers match the schemas of Fly's OpenAPI document.

For every operation the server implements, schemathesis generates a few requests from
Fly's own spec (with real app, machine and volume ids in the path so most calls reach a
handler) and checks each answer: no 5xx, and every documented status carries a body that
validates against Fly's response schema. Bounded: a few examples per operation, no
shrinking; destructive operations run last.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from orchestrator.localfly import control
from orchestrator.localfly.app import IMPLEMENTED_OPERATIONS
from orchestrator.localfly.control import Endpoint

from .helpers import ECHO_IMAGES, api, assert_no_processes, machine_pids, wait_for

# Fly's document lives beside the repo, as tests/fly/openapi.py also reads it.
SPEC = Path(__file__).resolve().parents[1] / "ref" / "fly-machines-openapi.json"
EXAMPLES = 4
LAST = ("Machines_delete", "Volume_delete", "Apps_delete")
# Fixed inputs that keep a call bounded (a wait of at most 1 s, an exec that returns).
FIXED: dict[str, dict[str, Any]] = {
    "Machines_wait": {"query": {"timeout": 1}},
    "Machines_exec": {"body": {"command": ["echo", "hi"], "timeout": 5}},
    "Machines_restart": {"query": {"timeout": "1s"}},
}
# One more call per operation with a body the server accepts, so success answers are
# checked too (random bodies from the spec are mostly rejected by Fly's rules).
VALID: dict[str, dict[str, Any]] = {
    "Apps_create": {"body": {"name": "conformance-two", "org_slug": "personal"}},
    "Machines_create": {
        "body": {"region": "syd", "config": {"image": "sleeper"}, "skip_launch": True}
    },
    "Machines_update": {"body": {"config": {"image": "sleeper", "metadata": {"k": "v"}}}},
    "Machines_update_metadata": {"body": {"metadata": {"a": "b"}}},
    "Machines_update_metadata_deprecated": {"body": {"metadata": {"c": "d"}}},
    "Machines_upsert_metadata": {"body": {"value": "v"}},
    "Machines_stop": {"body": {"signal": "SIGTERM", "timeout": "1s"}},
    "Machines_signal": {"body": {"signal": "SIGHUP"}},
    "Volumes_create": {"body": {"name": "more", "region": "syd", "size_gb": 1}},
    "Volumes_extend": {"body": {"size_gb": 500}},
    "Volumes_update": {"body": {"snapshot_retention": 7}},
    "Machines_delete": {"query": {"force": "true"}},
    "Machines_create_lease": {"body": {"ttl": 30}},
}


@pytest.fixture(scope="module")
def conformance_fly(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """A private server whose rate-limit windows are 1000x shorter, so calls reach handlers."""
    state_dir = tmp_path_factory.mktemp("conformance") / "state"
    state_dir.mkdir(mode=0o700)
    (state_dir / "images.toml").write_text(ECHO_IMAGES)
    endpoint = control.ensure_running(state_dir, time_factor=0.001)
    try:
        yield endpoint
    finally:
        pids = [endpoint.pid, *machine_pids(state_dir)]
        control.stop(state_dir)
        assert_no_processes(state_dir, pids)


def _fixtures(endpoint: Endpoint) -> dict[str, str]:
    with api(endpoint) as c:
        c.post("/v1/apps", json={"name": "conformance"}).raise_for_status()
        vol = c.post("/v1/apps/conformance/volumes", json={"name": "data", "region": "syd"}).json()
        m = c.post(
            "/v1/apps/conformance/machines",
            json={
                "region": "syd",
                "config": {"image": "sleeper", "metadata": {"k": "v"}},
            },
        ).json()
        c.post(f"/v1/apps/conformance/volumes/{vol['id']}/snapshots").raise_for_status()
        wait_for(
            lambda: c.get(f"/v1/apps/conformance/machines/{m['id']}").json()["state"] == "started"
        )
    return {"app_name": "conformance", "machine_id": m["id"], "volume_id": vol["id"], "key": "k"}


def test_responses_match_flys_schemas(conformance_fly: Endpoint) -> None:
    schema = schemathesis.openapi.from_path(str(SPEC))
    ids = _fixtures(conformance_fly)
    operations = sorted(
        IMPLEMENTED_OPERATIONS, key=lambda op: (op in LAST, LAST.index(op) if op in LAST else 0, op)
    )
    print(f"\nimplemented operations ({len(operations)}): {', '.join(operations)}")
    checked: dict[str, list[int]] = {}
    headers = dict(conformance_fly.headers)
    for operation_id in operations:
        op = schema.find_operation_by_id(operation_id)
        params = {k: v for k, v in ids.items() if k in {p.name for p in op.path_parameters}}
        checked[operation_id] = []
        runs = [(EXAMPLES, FIXED.get(operation_id, {}))]
        if operation_id in VALID:
            runs.append((1, VALID[operation_id]))
        for examples, fixed in runs:
            strategy = op.as_strategy(path_parameters=params, **fixed)

            @settings(
                max_examples=examples,
                phases=[Phase.generate],
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def run(case: schemathesis.Case) -> None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ResourceWarning)
                    response = case.call(base_url=conformance_fly.api_url, headers=headers)
                checked[case.operation.definition.raw["operationId"]].append(response.status_code)
                if case.operation.label.endswith("/lease") and response.status_code == 201:
                    # Hold on to the lease so the calls after it may change the machine.
                    headers["fly-machine-lease-nonce"] = response.json()["data"]["nonce"]
                case.validate_response(
                    response,
                    checks=[
                        not_a_server_error,
                        response_schema_conformance,
                        content_type_conformance,
                    ],
                )

            run()
    print(json.dumps(checked, indent=None))
    assert set(checked) == set(IMPLEMENTED_OPERATIONS)
    answered = {op for op, codes in checked.items() if any(200 <= c < 300 for c in codes)}
    # Most operations must have been exercised on their success path, not only rejected.
    assert len(answered) >= len(IMPLEMENTED_OPERATIONS) * 2 // 3, sorted(
        set(IMPLEMENTED_OPERATIONS) - answered
    )
    with httpx.Client() as c:
        assert c.get(f"{conformance_fly.api_url}/v1/apps").status_code == 401
