"""Start real sample-app processes, and a stand-in edge proxy, for the tests.

Every process is started with ``PORT=0`` (the OS picks a free port, the app logs it) and stopped by
PID in the fixture's teardown, whatever the test did.
"""

from __future__ import annotations

import http.client
import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")

_LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
# Variables the app reads: never inherit them from whoever runs the tests.
_OWN_VARS = ("PORT", "DATA_DIR", "PRIMARY_REGION")
_OWN_PREFIXES = ("FLY_", "SAMPLE_APP_", "LOCALFLY_")


def wait_for(check: Callable[[], T | None], *, what: str, timeout: float = 10.0) -> T:
    """Poll ``check`` until it returns something other than None/False; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = check()
        except (httpx.HTTPError, OSError) as exc:
            value, last_exc = None, exc
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(0.05)


def clean_env() -> dict[str, str]:
    """Return this process's environment without anything the sample app would read."""
    return {
        key: value
        for key, value in os.environ.items()
        if key not in _OWN_VARS and not key.startswith(_OWN_PREFIXES)
    }


@dataclass
class AppProcess:
    """One running sample app."""

    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    out_path: Path
    err_path: Path
    env: dict[str, str]
    http: httpx.Client

    @property
    def url(self) -> str:
        """Return the app's base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def region(self) -> str:
        """Return the app's FLY_REGION."""
        return self.env["FLY_REGION"]

    @property
    def machine_id(self) -> str:
        """Return the app's FLY_MACHINE_ID."""
        return self.env["FLY_MACHINE_ID"]

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """GET a path from the app."""
        return self.http.get(self.url + path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        """POST to a path of the app."""
        return self.http.post(self.url + path, **kwargs)

    def status(self) -> dict[str, Any]:
        """Return the JSON of ``GET /status`` (whatever its HTTP status)."""
        body: dict[str, Any] = self.get("/status").json()
        return body

    def write(self, data: object) -> dict[str, Any]:
        """Write a record on this (primary) app and return the 201 answer."""
        resp = self.post("/records", json={"data": data})
        assert resp.status_code == 201, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def records(self, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Return the app's records after a seq."""
        resp = self.get("/records", params={"after": after, "limit": limit})
        assert resp.status_code == 200, resp.text
        records: list[dict[str, Any]] = resp.json()["records"]
        return records

    def scrape(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Scrape ``/metrics``, parse it as Prometheus does, and index samples by name+labels."""
        resp = self.get("/metrics")
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
        samples = {}
        for family in text_string_to_metric_families(resp.text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return samples

    def stdout(self) -> str:
        """Return what the app logged to stdout so far."""
        return self.out_path.read_text()

    def stderr(self) -> str:
        """Return what the app logged to stderr so far."""
        return self.err_path.read_text()

    def stop(self, timeout: float = 10.0) -> int:
        """Send SIGTERM to the app's PID and return its exit code."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout)


@dataclass
class Launcher:
    """Start sample apps in a test's temporary directory and stop them all afterwards."""

    root: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10.0, trust_env=False))
    _count: int = 0

    def env(
        self,
        *,
        region: str,
        primary_region: str | None,
        release: str,
        data_dir: Path,
        extra: Mapping[str, str] | None,
    ) -> dict[str, str]:
        """Build the environment the local Fly would give a machine."""
        env = clean_env()
        env.update(
            {
                "PORT": "0",
                "FLY_REGION": region,
                "FLY_MACHINE_ID": f"m-{region}-{self._count}",
                "FLY_IMAGE_REF": f"registry.fly.io/sample-app:{release}",
                "FLY_APP_NAME": "sample-app",
                "DATA_DIR": str(data_dir),
                "SAMPLE_APP_REPLICATE_INTERVAL": "0.1",
            }
        )
        if primary_region is not None:
            env["PRIMARY_REGION"] = primary_region
        env.update(extra or {})
        return env

    def spawn(self, env: Mapping[str, str]) -> tuple[subprocess.Popen[bytes], Path, Path]:
        """Start ``python -m orchestrator.sampleapp`` with an environment; do not wait."""
        self._count += 1
        out = self.root / f"app{self._count}.out"
        err = self.root / f"app{self._count}.err"
        with out.open("wb") as out_file, err.open("wb") as err_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "orchestrator.sampleapp"],
                env=dict(env),
                stdout=out_file,
                stderr=err_file,
                stdin=subprocess.DEVNULL,
            )
        self.started.append(proc)
        return proc, out, err

    def start(
        self,
        *,
        region: str = "syd",
        primary_region: str | None = "syd",
        release: str = "v1",
        data_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> AppProcess:
        """Start an app and wait until it listens."""
        data = data_dir or self.root / f"data-{region}-{self._count + 1}"
        full_env = self.env(
            region=region, primary_region=primary_region, release=release, data_dir=data, extra=env
        )
        proc, out, err = self.spawn(full_env)

        def listening() -> int | None:
            match = _LISTENING.search(out.read_text())
            if match:
                return int(match.group(1))
            if proc.poll() is not None:
                raise AssertionError(
                    f"the app exited with {proc.returncode}: {err.read_text()}{out.read_text()}"
                )
            return None

        port = wait_for(listening, what="the app to listen")
        return AppProcess(proc, port, data, out, err, full_env, self.http)

    def stop_all(self) -> None:
        """Stop every process this launcher started, by PID (SIGTERM, then SIGKILL)."""
        for proc in self.started:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.started:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)


class EdgeProxy:
    """Stand in for the local Fly's edge proxy, as docs/architecture.md describes it.

    Round-robin over the apps given to :meth:`route`; ``fly-prefer-region`` narrows to a
    region when it has one; ``fly-force-instance-id`` picks one machine; a machine that refuses
    the connection is skipped. Answers carry ``fly-region`` (or ``region``, when a test wants the
    proxy to lie) and ``fly-machine-id``. ``seen`` keeps every request's headers, with its path
    under ``":path"``.
    """

    def __init__(self) -> None:
        """Listen on a free loopback port in a background thread."""
        self.targets: list[AppProcess] = []
        self.region: str | None = None
        self.seen: list[dict[str, str]] = []
        self._turn = itertools.count()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                seen = {k.lower(): v for k, v in self.headers.items()}
                seen[":path"] = self.path
                proxy.seen.append(seen)
                for target in proxy.pick(seen):
                    conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=10)
                    try:
                        conn.request("GET", self.path, headers=dict(self.headers.items()))
                        resp = conn.getresponse()
                        body = resp.read()
                    except ConnectionRefusedError:
                        continue
                    except OSError:
                        break
                    finally:
                        conn.close()
                    headers = {
                        "Content-Type": resp.getheader("content-type", ""),
                        "fly-region": proxy.region or target.region,
                        "fly-machine-id": target.machine_id,
                    }
                    self._answer(resp.status, body, headers)
                    return
                self._answer(503, b'{"error": "no machine available"}', {})

            def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def route(self, *apps: AppProcess) -> None:
        """Send app traffic to these apps from now on (none: answer 503)."""
        self.targets = list(apps)

    def pick(self, headers: Mapping[str, str]) -> list[AppProcess]:
        """Return the apps to try for a request, in order."""
        pool = list(self.targets)
        forced = headers.get("fly-force-instance-id")
        if forced:
            return [app for app in pool if app.machine_id == forced]
        prefer = headers.get("fly-prefer-region")
        pool = [app for app in pool if app.region == prefer] or pool
        if not pool:
            return []
        k = next(self._turn) % len(pool)
        return pool[k:] + pool[:k]

    @property
    def url(self) -> str:
        """Return the proxy's base URL."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        """Stop the proxy's thread and close its socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
