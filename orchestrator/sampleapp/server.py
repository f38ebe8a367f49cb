"""Serve the sample app over HTTP with the stdlib, and run it as a process.

``http.server.ThreadingHTTPServer`` (one thread per connection) keeps a machine at about 25 MB
RSS and listening about 0.15 s after exec; an ASGI stack would cost several times both, and the
benchmarks run hundreds of machines on two cores.
"""

from __future__ import annotations

import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from urllib.parse import parse_qs, urlsplit

from orchestrator.errors import ConfigError
from orchestrator.sampleapp.app import FOLLOWER_HEADER, MAX_BODY_BYTES, Response, SampleApp
from orchestrator.sampleapp.config import AppConfig, load_config
from orchestrator.sampleapp.leadership import Coordinator, Leadership, StoreMemory
from orchestrator.sampleapp.metrics import path_label
from orchestrator.sampleapp.replication import Replicator, Upstream
from orchestrator.sampleapp.store import CorruptStore, RecordStore, StoreError, quarantine

__all__ = ["AppServer", "run"]

# Health checks and scrapes arrive every few seconds on every machine; logging them would drown
# the lines an operator reads. They are still counted in /metrics.
_QUIET_PATHS = frozenset({"/status", "/metrics"})
_DRAIN_TIMEOUT_S = 5.0
_HANDOFF_TIMEOUT_S = 3.0


def _stamp() -> str:
    # Fly's log pipeline dates every line; the local Fly keeps what the app writes as is, so
    # the app dates its own lines (``invoke logs --since`` and the merge by time read them).
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def log(message: str) -> None:
    """Write one dated log line to stdout (the local Fly keeps it in the machine's log file)."""
    print(f"{_stamp()} {message}", flush=True)


def warn(message: str) -> None:
    """Write one dated line to stderr."""
    print(f"{_stamp()} {message}", file=sys.stderr, flush=True)


class AppServer(ThreadingHTTPServer):
    """A threading HTTP server that hands every request to a SampleApp."""

    daemon_threads = True
    # Benchmarks open many connections at once; the default backlog of 5 drops SYNs.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: SampleApp) -> None:
        """Bind and listen on ``address``; raises OSError when that fails."""
        self.app = app
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup, which can stall start-up offline."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _Handler(BaseHTTPRequestHandler):
    """Translate between HTTP and SampleApp, and time every answer for /metrics."""

    server: AppServer
    protocol_version = "HTTP/1.1"
    server_version = "sample-app"
    sys_version = ""
    # Idle keep-alive connections are dropped after this many seconds.
    timeout = 30
    # Headers and body go out in two writes; with Nagle on, the second waits for the client's
    # delayed ACK and every keep-alive request costs 40 ms.
    disable_nagle_algorithm = True

    _started: float | None = None
    _status: int | None = None

    def version_string(self) -> str:
        """Name the server without the Python version."""
        return self.server_version

    def handle_one_request(self) -> None:
        """Handle one request, then count it (every answered request counts, errors too)."""
        self._started = None
        self._status = None
        try:
            super().handle_one_request()
        finally:
            # Set by parse_request during the call above (mypy cannot see that).
            started: float | None = getattr(self, "_started", None)
            if started is not None:
                self.server.app.request_finished()
        status: int | None = getattr(self, "_status", None)
        if status is None:
            return
        elapsed = time.perf_counter() - started if started is not None else 0.0
        target = getattr(self, "path", "")
        path = urlsplit(target).path
        self.server.app.metrics.observe(path_label(path), status, elapsed)
        if path not in _QUIET_PATHS:
            method = getattr(self, "command", "-")
            log(f"{method} {target} {status} {elapsed * 1000:.1f}ms")

    def parse_request(self) -> bool:
        """Start the clock once the request line is in (not while idling on keep-alive)."""
        self._started = time.perf_counter()
        self.server.app.request_started()
        return super().parse_request()

    def send_response(self, code: int, message: str | None = None) -> None:
        """Remember the status for the metrics, then send it."""
        self._status = code
        super().send_response(code, message)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log nothing here; handle_one_request logs once the answer is out."""

    def log_message(self, format: str, *args: object) -> None:
        """Log the server's own complaints (bad request lines, timeouts) to stderr."""
        warn(f"http: {format % args}")

    def do_GET(self) -> None:
        """Answer a GET."""
        self._dispatch()

    def do_HEAD(self) -> None:
        """Answer a HEAD like a GET, without the body."""
        self._dispatch()

    def do_POST(self) -> None:
        """Answer a POST."""
        self._dispatch()

    def do_PUT(self) -> None:
        """Answer a PUT (always 404 or 405)."""
        self._dispatch()

    def do_DELETE(self) -> None:
        """Answer a DELETE (always 404 or 405)."""
        self._dispatch()

    def do_PATCH(self) -> None:
        """Answer a PATCH (always 404 or 405)."""
        self._dispatch()

    def _dispatch(self) -> None:
        """Read the body, ask the app, write the answer."""
        app = self.server.app
        if app.stopping:
            self.close_connection = True
        target = urlsplit(self.path)
        try:
            body = self._read_body()
        except _BodyError as exc:
            self.close_connection = True
            self._write(Response(exc.status, f'{{"error": "{exc}"}}\n'.encode()))
            return
        query = parse_qs(target.query, keep_blank_values=True)
        follower = self.headers.get(FOLLOWER_HEADER)
        self._write(app.handle(self.command, target.path or "/", query, body, follower=follower))

    def _read_body(self) -> bytes | None:
        """Read the request body (Content-Length only); None when there is none."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise _BodyError(411, "chunked bodies are not supported; send Content-Length")
        raw = self.headers.get("Content-Length")
        if raw is None:
            return None
        try:
            length = int(raw)
        except ValueError:
            raise _BodyError(400, "Content-Length is not an integer") from None
        if length < 0:
            raise _BodyError(400, "Content-Length is negative")
        if length > MAX_BODY_BYTES:
            raise _BodyError(413, f"body larger than {MAX_BODY_BYTES} bytes")
        return self.rfile.read(length)

    def _write(self, response: Response) -> None:
        """Send a response with its length, so keep-alive works."""
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)


class _BodyError(Exception):
    """The request body cannot be read; carries the status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        """Remember the status."""
        self.status = status
        super().__init__(message)


def _open_store(config: AppConfig) -> RecordStore:
    """Open the records database; a replica sets a damaged one aside and starts empty."""
    try:
        return RecordStore.open(config.data_dir)
    except CorruptStore as exc:
        if config.candidate:
            raise StoreError(
                f"{exc} (a machine of the primary region will not start on a damaged "
                "database; move records.db aside to start empty)"
            ) from exc
        moved = quarantine(config.data_dir)
        names = ", ".join(p.name for p in moved) or "nothing"
        log(f"warning: {exc}; moved aside {names}; starting empty and following the primary")
        return RecordStore.open(config.data_dir)


def run(environ: Mapping[str, str]) -> int:
    """Run the sample app until SIGTERM or SIGINT; return the process exit code.

    0 after a clean stop, 2 for a bad environment variable, 1 for any other fatal error (the
    reason goes to stderr).
    """
    try:
        config = load_config(environ)
    except ConfigError as exc:
        warn(f"sample-app: fatal: {exc}")
        return 2
    try:
        store = _open_store(config)
    except StoreError as exc:
        warn(f"sample-app: fatal: {exc}")
        return 1
    try:
        return _serve(config, store)
    except Exception as exc:
        traceback.print_exc()
        warn(f"sample-app: fatal: {exc!r}")
        return 1
    finally:
        store.close()


def _serve(config: AppConfig, store: RecordStore) -> int:
    """Listen, follow or lead, and serve until a stop signal."""
    # Only a coordinated candidate keeps who it followed (see `StoreMemory`).
    memory = StoreMemory(store, config.primary_region) if config.upstream_url else None
    leadership = Leadership(config.machine_id, candidate=config.candidate, memory=memory)
    upstream = replicator = None
    if config.upstream_url:
        upstream = Upstream(
            config.upstream_url,
            app=config.app,
            primary_region=config.primary_region,
            # Long enough for a slow primary, short enough that a stop never waits long.
            timeout=max(2.0, min(10.0, config.replicate_interval * 4)),
        )
        replicator = Replicator(
            store,
            upstream,
            machine_id=config.machine_id,
            region=config.region,
            primary_region=config.primary_region,
            interval=config.replicate_interval,
            log=log,
        )
    coordinator = Coordinator(
        leadership,
        primary_region=config.primary_region,
        interval=config.replicate_interval,
        upstream=upstream,
        replicator=replicator,
        log=log,
    )
    app = SampleApp(config, store, leadership, replicator=replicator)
    try:
        server = AppServer((config.host, config.port), app)
    except OSError as exc:
        warn(f"sample-app: fatal: cannot listen on {config.host}:{config.port}: {exc}")
        return 1

    stop_signal: list[str] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if not stop_signal:
            stop_signal.append(signal.Signals(signum).name)
            # shutdown() waits for serve_forever, which runs in this (the main) thread.
            threading.Thread(target=_stop_serving, args=(server, app), daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    coordinator.start()
    if upstream is None and not config.candidate:
        log("warning: LOCALFLY_PROXY_URL is not set; this replica will not follow the primary")
    kind = "candidate for primary" if config.candidate else "replica"
    switches = _describe_switches(config)
    log(
        f"sample-app {config.release} ({kind}, region {config.region}, primary region "
        f"{config.primary_region}, machine {config.machine_id}) listening on "
        f"http://{config.host}:{server.server_port}; "
        f"data in {config.data_dir} (last seq {store.last_seq})"
        + (f"; switches: {switches}" if switches else "")
    )
    try:
        # A long poll keeps hundreds of idle machines cheap; _stop_serving does not wait for it.
        server.serve_forever(poll_interval=1.0)
    finally:
        app.stopping = True
        server.server_close()
        drained = app.wait_idle(_DRAIN_TIMEOUT_S)
        coordinator.stop()
    reason = stop_signal[0] if stop_signal else "serve loop ended"
    log(f"stopped ({reason}){'' if drained else '; gave up waiting for requests in flight'}")
    return 0


def _stop_serving(server: AppServer, app: SampleApp) -> None:
    """Hand off (as the primary), then make serve_forever return now, not at its next poll.

    shutdown() only raises a flag that the serve loop reads after its select() returns, so this
    connects to the listening socket to wake it, until shutdown() has gone through.
    """
    was_leader = app.leadership.is_leader()
    if not app.drain(_HANDOFF_TIMEOUT_S):
        log("stopping before every follower in the region had the last records")
    elif was_leader:
        log("handed off: followers in the region hold every record")
    done = threading.Thread(target=server.shutdown, name="shutdown", daemon=True)
    done.start()
    host = server.server_name
    wake_host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    while done.is_alive():
        try:
            socket.create_connection((wake_host, server.server_port), timeout=0.2).close()
        except OSError:
            pass  # the socket may already be closed: then the loop has ended anyway
        done.join(0.05)


def _describe_switches(config: AppConfig) -> str:
    """Name the failure switches in force, for the start-up line."""
    parts = []
    if config.health_failure:
        parts.append(f"failing health ({config.health_failure})")
    if config.error_rate:
        parts.append(f"error rate {config.error_rate:g}")
    if config.latency_s:
        parts.append(f"latency {config.latency_s * 1000:g} ms")
    return ", ".join(parts)
