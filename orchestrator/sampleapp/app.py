"""Answer the sample app's endpoints; knows nothing of sockets (``server.py`` does the HTTP).

Routes: ``GET /`` (hello), ``GET /status`` (health), ``GET /metrics`` (Prometheus text),
``POST /records`` (primary only) and ``GET /records?after=N&limit=M``. See docs/sample-app.md.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from orchestrator.sampleapp.config import AppConfig, Role
from orchestrator.sampleapp.leadership import Followers, Leadership
from orchestrator.sampleapp.metrics import CONTENT_TYPE, Metrics
from orchestrator.sampleapp.replication import FOLLOWER_HEADER, Replicator
from orchestrator.sampleapp.store import RecordStore, StoreError

__all__ = [
    "DEFAULT_LIMIT",
    "FOLLOWER_HEADER",
    "MAX_BODY_BYTES",
    "MAX_LIMIT",
    "Response",
    "SampleApp",
]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_BODY_BYTES = 1024 * 1024
_DECIDE_TIMEOUT_S = 2.0

_ROUTES: Mapping[str, frozenset[str]] = {
    "/": frozenset({"GET", "HEAD"}),
    "/status": frozenset({"GET", "HEAD"}),
    "/metrics": frozenset({"GET", "HEAD"}),
    "/records": frozenset({"GET", "HEAD", "POST"}),
}


@dataclass(frozen=True, slots=True)
class Response:
    """What to send back.

    Attributes:
        status: the HTTP status code.
        body: the encoded body.
        content_type: its media type.
        headers: extra headers.
    """

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def _json(status: int, payload: object, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """Build a JSON response."""
    return Response(status, json.dumps(payload).encode() + b"\n", headers=headers)


def _error(status: int, message: str, **extra: object) -> Response:
    """Build an error response: ``{"error": message, ...}``."""
    return _json(status, {"error": message, **extra})


class SampleApp:
    """Hold the app's state and answer requests."""

    def __init__(
        self,
        config: AppConfig,
        store: RecordStore,
        leadership: Leadership,
        *,
        replicator: Replicator | None = None,
        metrics: Metrics | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Wire the app to its store, who-is-primary state and (when it follows) replicator."""
        self.config = config
        self.store = store
        self.leadership = leadership
        self.replicator = replicator
        self.metrics = metrics or Metrics()
        self.started_at = time.time()
        self._started_monotonic = time.monotonic()
        self._sleep = sleep
        self._error_lock = threading.Lock()
        self._error_candidates = 0
        self._idle = threading.Condition()
        self._inflight = 0
        self.followers = Followers()
        self.draining = False
        self.stopping = False

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        body: bytes | None,
        *,
        follower: str | None = None,
    ) -> Response:
        """Answer one request (method, path without query, parsed query, raw body).

        ``follower`` is the request's ``sample-app-follower`` header, if any.
        """
        if follower and method == "GET" and path == "/records":
            self.followers.report(follower)
        return self._route(method, path, query, body)

    def drain(self, timeout: float) -> bool:
        """Stop taking writes; as the primary, wait for same-region followers to catch up.

        A rolling update stops the primary; a machine of its region then takes over. Waiting
        until those machines hold every record (they say how far they are on each pull) makes
        the handoff lose nothing. Returns False when the timeout ran out first.
        """
        self.draining = True
        if not self.leadership.is_leader():
            return True
        store = self.store
        return self.followers.wait_caught_up(
            self.config.region, lambda: store.last_seq, timeout=timeout
        )

    def request_started(self) -> None:
        """Count a request as in flight (from its request line to its last byte)."""
        with self._idle:
            self._inflight += 1

    def request_finished(self) -> None:
        """Count a request as done."""
        with self._idle:
            self._inflight -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is being answered; False when the timeout ran out first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout)

    def _route(
        self, method: str, path: str, query: Mapping[str, list[str]], body: bytes | None
    ) -> Response:
        """Dispatch to the endpoint, applying the latency and error-rate switches."""
        allowed = _ROUTES.get(path)
        if allowed is None:
            return _error(404, f"no route for {path}")
        if method not in allowed:
            allow = ", ".join(sorted(allowed))
            return Response(
                405,
                json.dumps({"error": f"{method} not allowed on {path}"}).encode() + b"\n",
                headers=(("Allow", allow),),
            )
        if path == "/metrics":
            return self.metrics_text()
        if self.config.latency_s > 0:
            # The switch simulates a slow release: the time shows in the latency histogram.
            self._sleep(self.config.latency_s)
        is_read = method in ("GET", "HEAD") and path in ("/", "/records")
        if is_read and self._inject_error():
            return _error(500, "injected failure (SAMPLE_APP_ERROR_RATE)")
        if path == "/":
            return self.hello()
        if path == "/status":
            return self.status()
        if method == "POST":
            return self.create_record(body)
        return self.list_records(query)

    def _inject_error(self) -> bool:
        """Say whether this read fails: exactly ``error_rate`` of them, spread evenly."""
        rate = self.config.error_rate
        if rate <= 0:
            return False
        with self._error_lock:
            self._error_candidates += 1
            n = self._error_candidates
        # Deterministic rather than random, so a gate (and a test) sees the configured share.
        return math.floor(n * rate + 1e-9) > math.floor((n - 1) * rate + 1e-9)

    @property
    def role(self) -> Role:
        """Return ``primary`` when this machine takes writes now, else ``replica``."""
        return "primary" if self.leadership.is_leader() else "replica"

    def hello(self) -> Response:
        """Answer ``GET /``: who is serving."""
        cfg = self.config
        return _json(
            200,
            {
                "message": f"hello from {cfg.app}",
                "app": cfg.app,
                "region": cfg.region,
                "release": cfg.release,
                "machine_id": cfg.machine_id,
                "role": self.role,
            },
        )

    def status(self) -> Response:
        """Answer ``GET /status``: 200 when healthy, 503 (same fields) when not."""
        cfg = self.config
        reason = cfg.health_failure
        orphaned: int | None = None
        try:
            orphaned = self.store.orphaned_count()
        except StoreError as exc:
            reason = reason or f"database: {exc}"
        leader = self.leadership
        payload: dict[str, object] = {
            "role": self.role,
            "region": cfg.region,
            "primary_region": cfg.primary_region,
            "release": cfg.release,
            "image": cfg.image_ref,
            "machine_id": cfg.machine_id,
            "app": cfg.app,
            "last_seq": self.store.last_seq,
            "last_write_at": self.store.last_write_at,
            "candidate": leader.candidate,
            "leader": leader.leader(),
            "leader_since": leader.since(),
            "term": leader.term(),
            "replication_lag_s": self._lag(),
            "replication": self._replication_state(),
            "orphaned_records": orphaned,
            "uptime_s": round(time.monotonic() - self._started_monotonic, 3),
            "healthy": reason is None,
        }
        if reason is not None:
            payload["reason"] = reason
        return _json(200 if reason is None else 503, payload)

    def _lag(self) -> float | None:
        """Return seconds since the last good pull; None on the primary or before any."""
        if self.replicator is None or self.leadership.is_leader():
            return None
        return self.replicator.lag_s()

    def _replication_state(self) -> dict[str, object] | None:
        """Return the replica's pull state, or None on the primary."""
        if self.leadership.is_leader():
            return None
        if self.replicator is None:
            return {
                "upstream": None,
                "last_pull_at": None,
                "last_error": "no upstream: LOCALFLY_PROXY_URL is not set",
                "pulls_ok": 0,
                "pulls_failed": 0,
            }
        return self.replicator.state()

    def metrics_text(self) -> Response:
        """Answer ``GET /metrics`` in the Prometheus text format."""
        cfg = self.config
        lag = self._lag()
        text = self.metrics.render(
            gauges={
                "app_last_seq": ("Highest record sequence number stored.", self.store.last_seq),
                "app_replication_lag_seconds": ("Seconds since the last successful pull.", lag),
            },
            info={
                "app": cfg.app,
                "region": cfg.region,
                "release": cfg.release,
                "role": self.role,
                "machine_id": cfg.machine_id,
            },
            start_time=self.started_at,
        )
        return Response(200, text.encode(), CONTENT_TYPE)

    def create_record(self, body: bytes | None) -> Response:
        """Answer ``POST /records``: store ``{"data": ...}`` on the primary, 409 elsewhere."""
        cfg = self.config
        # A candidate decides who is primary within milliseconds of starting; a write that
        # arrives meanwhile waits for the answer rather than failing.
        self.leadership.wait_decided(_DECIDE_TIMEOUT_S)
        if self.draining:
            return _json(
                503,
                {"error": "shutting down", "primary_region": cfg.primary_region},
                headers=(("Retry-After", "1"),),
            )
        if not self.leadership.is_leader():
            leader = self.leadership.leader()
            # fly-replay is how a Fly app asks the edge to re-run a request elsewhere.
            replay = f"instance={leader}" if leader else f"region={cfg.primary_region}"
            return _json(
                409,
                {"error": "not primary", "primary_region": cfg.primary_region, "leader": leader},
                headers=(("fly-replay", replay),),
            )
        if not body:
            return _error(400, 'send a JSON body: {"data": ...}')
        try:
            payload = json.loads(body, parse_constant=_reject_constant)
        except ValueError as exc:
            return _error(400, f"body is not valid JSON: {exc}")
        if not isinstance(payload, dict) or "data" not in payload:
            return _error(400, 'body must be a JSON object with a "data" key')
        try:
            record = self.store.append(payload["data"])
        except StoreError as exc:
            return _error(500, str(exc))
        return _json(201, {"seq": record.seq, "region": cfg.region, "at": record.at})

    def list_records(self, query: Mapping[str, list[str]]) -> Response:
        """Answer ``GET /records?after=N&limit=M``, oldest first."""
        try:
            after = _int_param(query, "after", 0, low=0, high=2**62)
            limit = _int_param(query, "limit", DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
        except ValueError as exc:
            return _error(400, str(exc))
        try:
            records = self.store.since(after, limit)
            # Read after the page, so last_seq is never below the newest record shown.
            last_seq = self.store.last_seq
        except StoreError as exc:
            return _error(500, str(exc))
        cfg = self.config
        return _json(
            200,
            {
                "records": [r.to_json() for r in records],
                "last_seq": last_seq,
                # Read after the page too: a replica trusts the page only if this says primary.
                "role": self.role,
                "region": cfg.region,
                "machine_id": cfg.machine_id,
                "primary_region": cfg.primary_region,
                "leader": self.leadership.leader(),
                "term": self.leadership.term(),
                # Tells followers to take over as soon as this machine is gone.
                "stopping": self.draining,
            },
        )


def _int_param(
    query: Mapping[str, list[str]], name: str, default: int, *, low: int, high: int
) -> int:
    """Read an integer query parameter within [low, high]."""
    values = query.get(name)
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {values[-1]!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _reject_constant(name: str) -> object:
    """Refuse NaN and Infinity, which Python's json accepts but JSON does not."""
    raise ValueError(f"{name} is not valid JSON")
