"""Tokens stay secret, the local Fly only listens on loopback and only to its token, and names
sent to its API never reach outside ``.localfly/``.

- Every command an operator runs (a deploy, a deploy that fails its health checks and is rolled
  back, a drill with its reports, a rollback, ``status``/``plan``/``scale`` with ``--json``, and
  commands given a ``FLY_API_TOKEN``-style token the API refuses) is run with the real
  ``invoke``; neither the local Fly's token nor the fake one may appear in any stdout or
  stderr, nor in any file under the fleet directory (journal, lock, reports, ``.localfly``'s
  logs, machine logs, volumes) except ``.localfly/token`` itself.
- A plain ``http://`` API URL to a host that is not loopback is refused before any call.
- The local Fly answers 401 without the token or with a wrong one (API and control), and every
  listening socket of it and of its machines is on loopback.
- App names, machine ids, volume ids, snapshot ids and mount paths with ``..`` are refused or
  not found, and nothing appears outside ``.localfly/``.
- An app secret with a known value, staged, rolled out, rolled back (a value that breaks the
  app) and unset with ``invoke secrets``: the value reaches machines only through a rollout, and
  is found in no output and no file but the local Fly's 0600 ``secrets.json``.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from execute.localfleet import APP, wait_for

from .harness import Rig

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def rig(shared_rig: Rig) -> Rig:
    return shared_rig


def _files(*roots: Path) -> Iterator[Path]:
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                yield path


def _hits(data: bytes, needles: list[bytes]) -> list[bytes]:
    return [n for n in needles if n in data]


def test_no_output_or_file_holds_a_token(rig: Rig) -> None:
    local_token = rig.local.endpoint.token
    fake_secret = "fm2_" + secrets.token_urlsafe(48)
    fake = f"FlyV1 {fake_secret}"
    runs: list[tuple[str, str, str]] = []

    def run(*args: str, env: dict[str, str] | None = None, binary: bool = False) -> int:
        """Run a command (its own process; ``binary``: the real ``invoke``); keep its output."""
        if binary:
            done = rig.invoke(*args, env=env)
            runs.append((" ".join(args), done.stdout, done.stderr))
            return done.returncode
        code, child = rig.run_child(*args, env=env)
        runs.append((" ".join(args), child.stdout, child.stderr))
        return code

    rig.set_image("secret-ok")
    assert run("deploy", "--json", binary=True) == 0
    assert run("status", "--json") == 0
    assert run("plan", "--format", "json") == 0
    assert run("scale", "--json") == 0
    # A deploy that fails half-way, and a drill with its reports, unless the tests before
    # this one on the shared fleet (restart, concurrency) left them: their output is scanned
    # too (every orchestrator process's output is kept in the runs directory).
    failed = rig.journal_rows(
        "SELECT 1 FROM releases WHERE command = 'deploy' AND outcome IN ('failed', 'rolled_back')"
    )
    if not failed:
        # A release whose health checks fail: the deploy fails and the wave rolls back.
        rig.set_image("secret-unhealthy")
        assert run("deploy", "--json") == 1
        rig.set_image("secret-ok")
    report = rig.root / "reports" / "drill.md"
    if not report.exists():
        report.parent.mkdir(exist_ok=True)
        assert run("drill", "--region", "ams", "--json", "--report", str(report)) == 0
    run("rollback", "--json")
    # A token of Fly's own format, which the API refuses: the errors must not echo it.
    api = {"FLY_API_TOKEN": fake, "FLY_FLAPS_BASE_URL": rig.local.endpoint.api_url}
    assert run("deploy", "--json", env=api, binary=True) == 1
    assert run("status", "--json", env=api) == 1
    ams = (rig.root / "regions" / "ams.toml").read_bytes()
    assert run("scale", "--region", "ams", "--count", "2", "--json", env=api) == 1
    # Refused by the API: the region file still holds what it held.
    assert (rig.root / "regions" / "ams.toml").read_bytes() == ams

    needles = [local_token.encode(), fake.encode(), fake_secret.encode()]
    leaks = []
    for command, *streams in runs:
        for stream in streams:
            found = _hits(stream.encode(), needles)
            if found:
                leaks.append(f"{command}: output holds {len(found)} token(s)")
    token_file = rig.state_dir / "token"
    scanned = 0
    for path in _files(rig.root, rig.runs_dir):
        if path == token_file:
            continue
        scanned += 1
        if _hits(path.read_bytes(), needles):
            leaks.append(str(path.relative_to(rig.root.parent)))
    processes = len(list(rig.runs_dir.glob("*.out")))
    print(f"secrets: {processes} processes' output, {scanned} files scanned", file=sys.stderr)
    assert leaks == []
    # The scan saw what matters: the journal, the lock (its holder record is the lock machine's
    # metadata, in the local Fly's state.db), the reports and the logs.
    names = {p.name for p in _files(rig.root)}
    wanted = {"journal.db", "state.db", "requests.log", "server.log", "drill.md", "drill.html"}
    assert wanted <= names, names
    assert any(p.name == "log" for p in _files(rig.state_dir / "machines"))
    assert scanned > 20


def test_plain_http_to_a_remote_api_is_refused(rig: Rig) -> None:
    mark = rig.log_mark()
    env = {"FLY_API_TOKEN": "FlyV1 " + "fm2_not-sent", "FLY_FLAPS_BASE_URL": "http://example.com"}
    for args in (["deploy"], ["status"], ["scale", "--region", "ams", "--count", "2"]):
        code, child = rig.run_child(*args, env=env)
        assert code == 2, (args, child.stdout, child.stderr)
        assert child.stderr.strip().startswith("error: FLY_FLAPS_BASE_URL: plain http://")
        assert "not-sent" not in child.stdout + child.stderr
    assert rig.requests_since(mark) == []


def test_the_local_fly_wants_its_token_and_listens_on_loopback_only(rig: Rig) -> None:
    endpoint = rig.local.endpoint
    good = endpoint.token
    wrong = {
        "none": {},
        "wrong bearer": {"Authorization": "Bearer " + secrets.token_hex(16)},
        "wrong FlyV1": {"Authorization": "FlyV1 " + secrets.token_hex(16)},
        "token with a suffix": {"Authorization": f"Bearer {good}x"},
        "basic": {"Authorization": f"Basic {good}"},
    }
    with httpx.Client(base_url=endpoint.api_url, timeout=10) as client:
        for path in (f"/v1/apps/{APP}/machines", "/_localfly/faults", "/_localfly/stats"):
            for name, headers in wrong.items():
                resp = client.get(path, headers=headers)
                assert resp.status_code == 401, (path, name, resp.status_code)
                assert good not in resp.text
            assert client.get(path, headers=endpoint.headers).status_code == 200
        # Changes are refused too, and nothing changed.
        resp = client.post(f"/v1/apps/{APP}/machines/x/stop", headers=wrong["wrong bearer"])
        assert resp.status_code == 401

    server = psutil.Process(endpoint.pid)
    machines = [psutil.Process(int(p)) for p in _machine_pids(rig)]
    assert machines, "no machine process found"
    listening = []
    for proc in (server, *machines):
        for conn in proc.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                listening.append((proc.pid, conn.laddr.ip, conn.laddr.port))
    assert len(listening) >= 2 + len(machines), listening
    outside = [s for s in listening if not ipaddress.ip_address(s[1]).is_loopback]
    assert outside == []


def _machine_pids(rig: Rig) -> list[int]:
    pids = []
    marker = str(rig.state_dir.resolve())
    for proc in psutil.process_iter(["pid", "environ"]):
        try:
            env = proc.info["environ"] or {}
        except psutil.Error:
            continue
        if env.get("LOCALFLY_STATE_DIR", "").rstrip("/") == marker:
            pids.append(proc.pid)
    return pids


def _unlimited(rig: Rig, method: str, path: str, body: Any) -> httpx.Response:
    """Call the API, waiting out Fly's rate limit (a 429 says nothing about the name)."""
    answers: list[httpx.Response] = []

    def call() -> bool:
        answers.append(rig.api(method, path, json=body))
        return answers[-1].status_code != 429

    wait_for(call, timeout=30, every=0.5, what=f"{method} {path} past the rate limit")
    return answers[-1]


def test_names_used_as_paths_cannot_leave_the_state_dir(rig: Rig) -> None:
    outside = rig.root.parent
    before = sorted(p.name for p in outside.iterdir())
    machine = next(m for m in rig.machines() if m["region"] == "ams")
    # In a URL the dots are percent-encoded (a client would otherwise resolve them away); the
    # server decodes them back to ``..`` and ``/``. In a JSON body they go as they are.
    in_url = ["%2e%2e", "%2e%2e%2f%2e%2e", "..%2F..%2Fetc", "a%2F..%2F..%2Fb", "%2e%2e%5c%2e%2e"]
    in_body = ["..", "../..", "../../../etc", "a/../../b", "..\\..", "/etc/passwd"]
    refused = 0
    for name in in_url:
        for method, path, body in [
            ("GET", f"/v1/apps/{name}/machines", None),
            ("GET", f"/v1/apps/{APP}/machines/{name}", None),
            ("DELETE", f"/v1/apps/{APP}/machines/{name}?force=true", None),
            ("GET", f"/v1/apps/{APP}/machines/{name}/lease", None),
            ("GET", f"/v1/apps/{APP}/volumes/{name}", None),
            ("DELETE", f"/v1/apps/{APP}/volumes/{name}", None),
            ("PUT", f"/v1/apps/{APP}/volumes/{name}/extend", {"size_gb": 2}),
            ("POST", f"/v1/apps/{APP}/volumes/{name}/snapshots", None),
        ]:
            resp = _unlimited(rig, method, path, body)
            assert resp.status_code in (400, 404, 405, 422), (method, path, resp.status_code)
            refused += 1
    volume_fields = ("name", "source_volume_id", "snapshot_id")
    for n, name in enumerate(in_body):
        # Volume creates are rate limited (1/s): each name goes in one field, in turn.
        volume = {"name": "data", "region": "ams", "size_gb": 1}
        volume[volume_fields[n % len(volume_fields)]] = name
        for path, body in [
            ("/v1/apps", {"name": name, "org_slug": "personal"}),
            (f"/v1/apps/{APP}/volumes", volume),
        ]:
            resp = _unlimited(rig, "POST", path, body)
            assert resp.status_code in (400, 404, 422), (path, body, resp.status_code, resp.text)
            refused += 1
        config = dict(machine["config"])
        config["mounts"] = [{"volume": machine["config"]["mounts"][0]["volume"], "path": name}]
        resp = _unlimited(
            rig, "POST", f"/v1/apps/{APP}/machines", {"config": config, "region": "ams"}
        )
        assert resp.status_code in (400, 404, 409, 422), (name, resp.status_code, resp.text)
        refused += 1
    assert refused >= 55
    assert sorted(p.name for p in outside.iterdir()) == before
    # Nothing named after the attempts exists anywhere under the state dir either.
    strays = [p for p in rig.state_dir.rglob("*") if ".." in p.name or p.name == "etc"]
    assert strays == []


def _in_machines(rig: Rig, name: str) -> dict[str, str]:
    """Return what each live machine's environment holds under ``name`` (exec, as ssh would)."""
    found = {}
    for m in rig.machines():
        resp = rig.api(
            "POST",
            f"/v1/apps/{APP}/machines/{m['id']}/exec",
            json={"command": ["sh", "-c", f'printf %s "${name}"'], "timeout": 10},
        )
        assert resp.status_code == 200, resp.text
        found[m["id"]] = resp.json()["stdout"]
    return found


def _unset_all(rig: Rig, names: list[str]) -> None:
    for name in names:
        rig.api("DELETE", f"/v1/apps/{APP}/secrets/{name}")


def test_a_secret_is_a_release_and_its_value_is_found_nowhere(rig: Rig) -> None:
    """A staged secret reaches machines only through the next rollout; a bad one rolls back."""
    known = "known-" + secrets.token_hex(16)
    names = ["APP_KNOWN", "SAMPLE_APP_FAIL_HEALTH"]
    outputs: list[str] = []

    def run(*args: str) -> tuple[int, dict[str, Any]]:
        done = rig.invoke(*args)
        outputs.extend([done.stdout, done.stderr])
        try:
            body = json.loads(done.stdout)
        except ValueError:
            body = {}
        return done.returncode, body

    before = {m["id"]: m["version"] for m in rig.machines()}
    try:
        code, staged = run("secrets", "set", "--stage", "--json", "--", f"APP_KNOWN={known}")
        assert code == 0, outputs[-1]
        assert (staged["staged"], staged["deploy"], staged["names"]) == (True, None, ["APP_KNOWN"])
        # Staged: no machine changed, none has it.
        assert {m["id"]: m["version"] for m in rig.machines()} == before
        assert set(_in_machines(rig, "APP_KNOWN").values()) == {""}
        code, listing = run("secrets", "list", "--json")
        assert code == 0
        assert [s["name"] for s in listing["secrets"]] == ["APP_KNOWN"]
        assert listing["machines_current"] == 0

        # The next deploy rolls it out, through the waves and gates, to every machine.
        code, deployed = run("deploy", "--json")
        assert code == 0, outputs[-1]
        assert deployed["outcome"] == "succeeded"
        updates = [s for s in deployed["steps"] if s["kind"] == "machine.update"]
        assert len(updates) == len(before)
        assert set(_in_machines(rig, "APP_KNOWN").values()) == {known}
        released = deployed["release"]

        # A change that breaks the app: caught by the gates, the wave rolls back, the previous
        # values are put back, and the machines run them again.
        code, failed = run("secrets", "set", "--json", "--", "SAMPLE_APP_FAIL_HEALTH=1")
        assert code == 1, outputs[-2:]
        assert failed["restored"] is True
        assert failed["deploy"]["outcome"] == "rolled_back"
        assert set(_in_machines(rig, "SAMPLE_APP_FAIL_HEALTH").values()) == {""}
        assert set(_in_machines(rig, "APP_KNOWN").values()) == {known}
        releases = {m["config"]["metadata"]["fly_release_id"] for m in rig.machines()}
        assert releases == {released}
        assert rig.invoke("status", "--json").returncode == 0

        # Unset without --stage: rolled out at once, and the fleet is back where it was.
        code, unset = run("secrets", "unset", "--json", "--", "APP_KNOWN")
        assert code == 0, outputs[-1]
        assert unset["deploy"]["outcome"] == "succeeded"
        assert set(_in_machines(rig, "APP_KNOWN").values()) == {""}
    finally:
        _unset_all(rig, names)
        assert rig.deploy().ok

    leaks = [i for i, text in enumerate(outputs) if known in text]
    secrets_file = rig.state_dir / "secrets.json"
    scanned = 0
    for path in _files(rig.root, rig.runs_dir):
        if path == secrets_file:
            continue
        scanned += 1
        if known.encode() in path.read_bytes():
            leaks.append(str(path.relative_to(rig.root.parent)))
    print(f"secret value: {len(outputs)} outputs, {scanned} files scanned", file=sys.stderr)
    assert leaks == []
    # The scan saw what matters: the journal, the logs, the local Fly's state.
    names_seen = {p.name for p in _files(rig.root)}
    assert {"journal.db", "requests.log", "server.log", "state.db"} <= names_seen
