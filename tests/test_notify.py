"""Webhook notifications: real deploys post to real HTTP receivers on loopback."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from execute.localfleet import LocalFleet, copy_fleet

from orchestrator.errors import ConfigError
from orchestrator.notify import read_notify

pytestmark = pytest.mark.timeout(400)


class Receiver:
    """A webhook receiver on 127.0.0.1 that records every JSON body; answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/s3cr3t-path"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    good, bad = Receiver(200), Receiver(500)
    try:
        yield good, bad
    finally:
        good.close()
        bad.close()


NOTIFY = """
[notify]
  webhooks = ["DEPLOY_HOOK", "BROKEN_HOOK", "UNSET_HOOK"]
  timeout = "3s"
"""


def test_a_deploy_notifies_each_stage_and_a_failing_webhook_changes_nothing(
    tmp_path: Path, receivers: tuple[Receiver, Receiver]
) -> None:
    good, bad = receivers
    root = copy_fleet(tmp_path / "fleet")
    waves = root / "regions" / "waves.toml"
    waves.write_text(waves.read_text() + NOTIFY)
    fleet = LocalFleet.start(root)
    try:
        env = {"DEPLOY_HOOK": good.url, "BROKEN_HOOK": bad.url}
        proc = fleet.invoke("deploy", "--region", "syd", "--json", env=env)
    finally:
        fleet.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["outcome"] == "succeeded"
    kinds = [b["event"] for b in good.bodies]
    assert kinds[0] == "run_started"
    assert kinds[1] == "wave_started"
    assert "gate_passed" in kinds
    assert kinds[-1] == "run_finished"
    assert good.bodies[-1]["outcome"] == "succeeded"
    assert all(b["text"].startswith("[sample-fleet] ") for b in good.bodies)
    assert all(b["release"].startswith("v1-") for b in good.bodies)
    # The failing webhook got the same posts; the deploy went on and said so once.
    assert [b["event"] for b in bad.bodies] == kinds
    # The URLs are secrets: in no output and not in the journal.
    db = sqlite3.connect(root / ".orchestrator" / "journal.db")
    try:
        dump = "\n".join(db.iterdump())
    finally:
        db.close()
    for secret in (good.url, bad.url, "s3cr3t-path"):
        assert secret not in proc.stdout + proc.stderr
        assert secret not in dump


def test_a_failing_gate_and_its_rollback_are_notified(
    tmp_path: Path, receivers: tuple[Receiver, Receiver]
) -> None:
    good, _ = receivers
    root = copy_fleet(tmp_path / "fleet")
    waves = root / "regions" / "waves.toml"
    waves.write_text(waves.read_text() + '\n[notify]\n  webhooks = ["DEPLOY_HOOK"]\n')
    fleet = LocalFleet.start(root)
    try:
        env = {"DEPLOY_HOOK": good.url}
        first = fleet.invoke("deploy", "--region", "syd", "--json", env=env)
        assert first.returncode == 0, first.stdout + first.stderr
        good.bodies.clear()
        proc = fleet.invoke(
            "deploy",
            "--region",
            "syd",
            "--image",
            "registry.fly.io/sample-app:v3-unhealthy",
            "--json",
            env=env,
        )
    finally:
        fleet.stop()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    kinds = [b["event"] for b in good.bodies]
    assert "rollback_started" in kinds
    assert kinds.index("rollback_started") < kinds.index("rollback_finished")
    assert kinds[-1] == "run_finished"
    assert good.bodies[-1]["outcome"] == "rolled_back"
    # The release failed on a machine's checks (its update step) or on a gate: either is told.
    failures = [b for b in good.bodies if b["event"] in ("gate_failed", "step_failed")]
    assert failures
    assert all(b["region"] == "syd" for b in failures)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('[notify]\n  webhooks = ["https://hooks.example.com/x"]\n', "a URL is a secret"),
        ('[notify]\n  webhooks = ["not a name"]\n', "is not an environment variable name"),
        ('[notify]\n  webhook = ["X"]\n', "unknown key"),
        ('[notify]\n  webhooks = ["X"]\n  timeout = "2h"\n', "notify.timeout"),
    ],
)
def test_a_bad_notify_section_is_bad_input_naming_the_key(
    tmp_path: Path, section: str, message: str
) -> None:
    root = copy_fleet(tmp_path / "fleet")
    waves = root / "regions" / "waves.toml"
    waves.write_text(waves.read_text() + section)
    with pytest.raises(ConfigError) as info:
        read_notify(root)
    assert message in f"{info.value.where}: {info.value}"
    assert "regions/waves.toml: notify" in str(info.value.where)
