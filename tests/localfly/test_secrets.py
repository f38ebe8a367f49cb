"""App secrets on the local Fly: the endpoints, the 0600 file, and what a machine's process gets.

A value set through the API reaches a machine's process as an environment variable only
through its next create or update (a restart keeps what it booted with), and never shows in
``requests.log``, ``server.log``, ``state.db`` or the machine's log.
"""

from __future__ import annotations

import secrets
import stat
from pathlib import Path

import httpx
import pytest

from orchestrator.errors import FlyBadRequest
from orchestrator.localfly.control import Endpoint

from .helpers import api, echo_config, fly_client, machine_pid, passing, unique_app, wait_for

pytestmark = pytest.mark.anyio


def _process_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(): v.decode(errors="replace") for k, v in pairs}


def _files_holding(root: Path, needle: bytes, *, skip: Path) -> list[str]:
    found = []
    for path in root.rglob("*"):
        holds = path.is_file() and not path.is_symlink() and path != skip
        if holds and needle in path.read_bytes():
            found.append(str(path.relative_to(root)))
    return found


async def test_a_secret_reaches_a_machine_through_its_next_update_and_nowhere_else(
    localfly: Endpoint,
) -> None:
    app = unique_app("sec")
    value = "s3cr3t-" + secrets.token_hex(12)
    newer = "n3wer-" + secrets.token_hex(12)
    async with fly_client(localfly) as fly:
        await fly.create_app(app)
        first = await fly.set_secrets(app, {"DB_URL": value})
        listed = await fly.list_secrets(app)
        assert [s.name for s in listed] == ["DB_URL"]
        assert listed[0].digest
        assert value not in listed[0].digest

        created = await fly.create_machine(
            app, echo_config(), region="syd", min_secrets_version=first
        )
        m = await passing(fly, app, created.id)
        pid = machine_pid(localfly.state_dir, m.id)
        assert pid is not None
        assert _process_env(pid)["DB_URL"] == value
        ran = await fly.exec_machine(app, m.id, ["sh", "-c", 'printf %s "$DB_URL"'])
        assert ran.stdout == value

        # A change is a new version; the running machine keeps what it booted with, even
        # across a restart, until it is updated.
        second = await fly.set_secrets(app, {"DB_URL": newer})
        assert second == first + 1
        assert (await fly.list_secrets(app))[0].digest != listed[0].digest
        await fly.restart_machine(app, m.id)
        wait_for(lambda: machine_pid(localfly.state_dir, m.id) not in (None, pid))
        restarted = await passing(fly, app, m.id)
        pid = machine_pid(localfly.state_dir, restarted.id)
        assert pid is not None
        assert _process_env(pid)["DB_URL"] == value

        updated = await fly.update_machine(
            app, m.id, restarted.config.to_api(), min_secrets_version=second
        )
        await fly.wait_machine(app, m.id, version=updated.version, timeout=30)
        await passing(fly, app, m.id)
        pid = machine_pid(localfly.state_dir, m.id)
        assert pid is not None
        assert _process_env(pid)["DB_URL"] == newer

        # Asking for a version the app does not have is refused, naming no value.
        with pytest.raises(FlyBadRequest) as refused:
            await fly.create_machine(
                app, echo_config(), region="syd", min_secrets_version=second + 5
            )
        assert "min_secrets_version" in str(refused.value)

        assert await fly.unset_secret(app, "DB_URL") == second + 1
        assert await fly.unset_secret(app, "DB_URL") is None
        assert await fly.list_secrets(app) == []
        await fly.destroy_machine(app, m.id, force=True)

    secrets_file = localfly.state_dir / "secrets.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    for needle in (value.encode(), newer.encode()):
        assert _files_holding(localfly.state_dir, needle, skip=secrets_file) == []


def _past_limits(c: httpx.Client, method: str, path: str, body: object = None) -> httpx.Response:
    """Send a call again while Fly's rate limit answers 429 (which says nothing of the call)."""
    answers: list[httpx.Response] = []

    def sent() -> bool:
        answers.append(c.request(method, path, json=body))
        return answers[-1].status_code != 429

    wait_for(sent, timeout=30, what=f"{method} {path} past the rate limit")
    return answers[-1]


def test_bad_secret_requests_are_refused_without_echoing_values(localfly: Endpoint) -> None:
    app = unique_app("sec")
    value = "v-" + secrets.token_hex(12)
    with api(localfly) as c:
        c.post("/v1/apps", json={"name": app, "org_slug": "personal"}).raise_for_status()
        cases: list[tuple[str, str, object]] = [
            ("POST", f"/v1/apps/{app}/secrets", {"values": {"1BAD": value}}),
            ("POST", f"/v1/apps/{app}/secrets", {"values": {"OK": 5}}),
            ("POST", f"/v1/apps/{app}/secrets", {"values": {}}),
            ("POST", f"/v1/apps/{app}/secrets", [value]),
            ("POST", f"/v1/apps/{app}/secrets/BAD-NAME", {"value": value}),
            ("POST", f"/v1/apps/{app}/secrets/OK", {"value": value + "\x00"}),
            ("GET", f"/v1/apps/{app}/secrets?min_version=x", None),
            ("GET", f"/v1/apps/{app}/secrets?min_version=99", None),
        ]
        for method, path, body in cases:
            resp = _past_limits(c, method, path, body)
            assert resp.status_code == 400, (method, path, resp.status_code)
            assert value not in resp.text
            assert "None" not in resp.json()["error"]
        assert c.get(f"/v1/apps/{app}/secrets/MISSING").status_code == 404
        assert _past_limits(c, "DELETE", f"/v1/apps/{app}/secrets/MISSING").status_code == 404
        made = _past_limits(c, "POST", f"/v1/apps/{app}/secrets/OK", {"value": value})
        assert made.status_code == 201
        assert made.json()["version"] == 1
        assert "value" not in made.json()
        shown = c.get(f"/v1/apps/{app}/secrets/OK", params={"show_secrets": "true"})
        assert shown.json()["value"] == value
        c.delete(f"/v1/apps/{app}").raise_for_status()
    with httpx.Client(base_url=localfly.api_url) as anonymous:
        assert anonymous.get(f"/v1/apps/{app}/secrets").status_code == 401
