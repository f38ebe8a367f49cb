"""The sample app as a process: memory, start-up time, signals, fatal errors."""

from __future__ import annotations

import re
import socket
import threading
from pathlib import Path

import httpx
import psutil

from .harness import EdgeProxy, Launcher, wait_for

MB = 1024 * 1024


def test_a_machine_costs_well_under_50_mb(launcher: Launcher, edge: EdgeProxy) -> None:
    primary = launcher.start()
    edge.route(primary)
    replica = launcher.start(
        region="dfw", primary_region="syd", env={"LOCALFLY_PROXY_URL": edge.url}
    )
    for n in range(50):
        primary.write({"n": n, "pad": "x" * 500})
    for _ in range(50):
        primary.get("/")
        primary.get("/metrics")
    wait_for(lambda: replica.status()["last_seq"] == 50, what="the replica to catch up")

    for app in (primary, replica):
        rss = psutil.Process(app.proc.pid).memory_info().rss
        assert rss < 50 * MB, f"{rss / MB:.1f} MB"


def test_a_fresh_machine_listens_and_says_where_and_what_it_is(
    launcher: Launcher, tmp_path: Path
) -> None:
    # How fast it listens is measured in bench/sampleapp.py, not here.
    env = launcher.env(
        region="syd", primary_region="syd", release="v1", data_dir=tmp_path / "boot", extra=None
    )
    _, out, _ = launcher.spawn(env)

    def status() -> dict[str, object] | None:
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", out.read_text())
        if not match:
            return None
        url = f"http://127.0.0.1:{match.group(1)}/status"
        resp = httpx.get(url, timeout=2.0, trust_env=False)
        return resp.json() if resp.status_code == 200 else None

    answer = wait_for(status, what="the app to answer /status")
    assert answer["region"] == "syd"
    assert answer["role"] == "primary"
    # Each line starts with its time (ISO 8601, UTC), then the app says who and where it is.
    stamp, _, said = out.read_text().partition(" ")
    assert stamp.endswith("Z")
    assert "T" in stamp
    assert said.startswith("sample-app v1")


def test_sigterm_finishes_the_request_in_flight_then_exits_0(launcher: Launcher) -> None:
    app = launcher.start(env={"SAMPLE_APP_LATENCY_MS": "400"})
    app.write("kept")
    process = psutil.Process(app.proc.pid)
    idle_threads = process.num_threads()
    answers: list[int] = []

    def slow_request() -> None:
        # A new connection, so the server starts a new handler thread for it.
        resp = httpx.get(f"{app.url}/", timeout=10.0, trust_env=False)
        answers.append(resp.status_code)

    client = threading.Thread(target=slow_request)
    client.start()
    # The slow request is being served once its handler thread exists.
    wait_for(lambda: process.num_threads() > idle_threads, what="the request to be in flight")

    code = app.stop()
    client.join(10)

    assert code == 0
    assert answers == [200]
    assert "stopped (SIGTERM)" in app.stdout()
    assert not (app.data_dir / "records.db-wal").exists()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", app.port)) != 0


def test_bad_environment_exits_2_naming_the_variable(launcher: Launcher, tmp_path: Path) -> None:
    env = launcher.env(
        region="syd", primary_region="syd", release="v1", data_dir=tmp_path / "d", extra=None
    )
    env["SAMPLE_APP_ERROR_RATE"] = "often"

    proc, _, err = launcher.spawn(env)

    assert proc.wait(10) == 2
    assert "SAMPLE_APP_ERROR_RATE" in err.read_text()


def test_port_in_use_exits_1(launcher: Launcher, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = launcher.env(
            region="syd", primary_region="syd", release="v1", data_dir=tmp_path / "d", extra=None
        )
        env["PORT"] = str(taken.getsockname()[1])

        proc, _, err = launcher.spawn(env)

        assert proc.wait(10) == 1
    assert "cannot listen" in err.read_text()


def test_unusable_data_dir_exits_1(launcher: Launcher, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = launcher.env(
        region="syd", primary_region="syd", release="v1", data_dir=blocker / "data", extra=None
    )

    proc, _, err = launcher.spawn(env)

    assert proc.wait(10) == 1
    assert "cannot create data directory" in err.read_text()
