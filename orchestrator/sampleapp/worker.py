"""Run the sample app's ``worker`` process group: consume the records the app group keeps.

``python -m orchestrator.sampleapp worker`` (on the local Fly: ``init.cmd = ["worker"]``, what
flyctl sends for ``[processes] worker = "worker"``) pages through ``GET /records`` of the app
through the edge proxy, logs one line per record it consumes, and answers ``GET /status`` on
``$PORT`` so a check can gate it: 200 while its last poll reached the records, 503 when it did
not (or when a failure switch says so, as the app's own ``/status`` does).
"""

from __future__ import annotations

import json
import signal
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

from orchestrator.errors import ConfigError
from orchestrator.sampleapp.config import AppConfig, load_config
from orchestrator.sampleapp.server import log, warn

__all__ = ["Consumer", "run_worker"]

_PAGE = 100
_REQUEST_TIMEOUT_S = 5.0


@dataclass(slots=True)
class Consumer:
    """Where the worker is in the app's records, and whether it can reach them.

    Attributes:
        source: the app's base URL (the edge proxy on the local Fly).
        host: the ``Host`` header that names the app to the proxy.
        cursor: the newest record seq consumed.
        consumed: records consumed since the process started.
        problem: why the last poll failed, or ``None`` after a good poll (``"starting"``
            before the first).
    """

    source: str
    host: str
    cursor: int = 0
    consumed: int = 0
    problem: str | None = "starting"
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def poll(self) -> int:
        """Consume one page of new records; return how many (0 when none or on failure)."""
        url = f"{self.source.rstrip('/')}/records?after={self.cursor}&limit={_PAGE}"
        request = urllib.request.Request(url, headers={"Host": self.host})
        try:
            with urllib.request.urlopen(request, timeout=_REQUEST_TIMEOUT_S) as answer:
                page = json.loads(answer.read())
        except (OSError, ValueError) as exc:
            reason = str(exc.reason) if isinstance(exc, urllib.error.URLError) else str(exc)
            self._set_problem(f"cannot read records from {self.source}: {reason}")
            return 0
        records = page.get("records") if isinstance(page, dict) else None
        if not isinstance(records, list):
            self._set_problem(f"{self.source}/records answered without a records list")
            return 0
        for record in records:
            seq = int(record["seq"])
            log(f"consumed record {seq}: {json.dumps(record.get('data'))}")
            with self.lock:
                self.cursor = max(self.cursor, seq)
                self.consumed += 1
        self._set_problem(None)
        return len(records)

    def _set_problem(self, problem: str | None) -> None:
        with self.lock:
            changed = problem != self.problem
            self.problem = problem
        # One line per change, not per poll: a worker polls twice a second.
        if changed:
            log(problem if problem else f"reading records from {self.source}")


def _handler(consumer: Consumer, config: AppConfig) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "sample-app-worker"
        sys_version = ""

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/status":
                self._send(404, {"error": f"no route for {self.path}"})
                return
            with consumer.lock:
                problem = config.health_failure or consumer.problem
                body = {
                    "process_group": "worker",
                    "release": config.release,
                    "region": config.region,
                    "machine_id": config.machine_id,
                    "cursor": consumer.cursor,
                    "consumed": consumer.consumed,
                    "healthy": problem is None,
                    "problem": problem,
                }
            self._send(200 if problem is None else 503, body)

        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            # Health checks arrive every few seconds; their lines would drown the records'.
            return

    return Handler


def run_worker(environ: Mapping[str, str]) -> int:
    """Consume records until SIGTERM or SIGINT; return the process's exit code."""
    try:
        config = load_config(environ)
    except ConfigError as exc:
        warn(f"sample-app worker: fatal: {exc}")
        return 2
    source = config.upstream_url or f"https://{config.app}.fly.dev"
    consumer = Consumer(source=source, host=f"{config.app}.fly.dev")
    try:
        server = ThreadingHTTPServer((config.host, config.port), _handler(consumer, config))
    except OSError as exc:
        warn(f"sample-app worker: fatal: cannot listen on {config.host}:{config.port}: {exc}")
        return 1
    server.daemon_threads = True
    stop = threading.Event()
    reason: list[str] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        reason.append(signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5})
    serving.daemon = True
    serving.start()
    log(
        f"sample-app worker {config.release} (region {config.region}, machine "
        f"{config.machine_id}) consuming records from {source}; status on "
        f"http://{config.host}:{server.server_address[1]}/status"
    )
    try:
        while not stop.is_set():
            # A full page means more are waiting: read on without pausing.
            if consumer.poll() < _PAGE:
                stop.wait(config.replicate_interval)
    finally:
        server.shutdown()
        server.server_close()
    log(f"stopped ({reason[0] if reason else 'loop ended'}) after {consumer.consumed} record(s)")
    return 0
