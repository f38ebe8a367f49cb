"""The ``sim`` profile: machines that are state only, timed like ``realistic``, no OS process.

A benchmark at thousands of machines cannot run a process per machine on a laptop, and what
it measures there is the orchestrator against Fly's API, rate limits and timings, not the
app. So under ``sim``:

- a launch records a `SimProc` (no pid, no port, no root directory) and the machine is
  ``started`` at once, after the same profile delay a real launch waits;
- a stop or destroy "signals" it: SIGTERM, SIGINT and SIGKILL end it at once, SIGSTOP and
  SIGCONT (a region outage) freeze and thaw it;
- its checks are `SimChecks`: computed when read, as if each had run after its grace period
  and every interval since (no task, no timer per machine), passing unless the machine is in
  an outage, a failure is injected, or its config asks the sample app to fail its health
  (``SAMPLE_APP_FAIL_HEALTH=1``, an image tag ending ``-unhealthy``, limited by
  ``SAMPLE_APP_FAIL_HEALTH_REGIONS``, as in the sample app);
- the edge proxy answers for it (`answer`): ``/status`` as the sample app shapes it, and
  ``/metrics`` with request counters that grow with its uptime and never fail.

The API, leases, rate limits, fault injection and the request log are the server's own and
unchanged.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import time
from collections.abc import Callable, ItemsView, Iterator, ValuesView
from typing import Any

import httpx

from orchestrator.localfly.checks import CheckResult, CheckSpec
from orchestrator.localfly.state import MachineRecord
from orchestrator.localfly.supervisor import Proc
from orchestrator.localfly.util import iso_now

__all__ = ["SimChecks", "SimProc", "answer", "fails_health"]

# The sample app's own share of its requests: a steady trickle of checks and scrapes.
_REQUESTS_PER_S = 2.0
_ENDING = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGKILL, signal.SIGQUIT})


class SimProc(Proc):
    """A machine's "process" under ``sim``: it runs until it is signalled to end."""

    __slots__ = ()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # No Popen: nothing is executed; pid 0 never names a real process to kill.
        self.pid = 0
        self.started = time.time()
        self.exited = loop.create_future()
        self.expected = False
        self._fd = None

    def signal_group(self, sig: int) -> bool:
        """Act on ``sig`` as the sample app would: end on a stopping signal."""
        if self.exited.done():
            return False
        if sig in _ENDING:
            self.exited.set_result(-int(sig) if sig == signal.SIGKILL else 0)
        return True


def fails_health(config: dict[str, Any], region: str) -> bool:
    """Say whether the sample app's health switches make this machine's ``/status`` fail."""
    env = {str(k): str(v) for k, v in (config.get("env") or {}).items()}
    image = str(config.get("image", ""))
    tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
    wanted = env.get("SAMPLE_APP_FAIL_HEALTH") == "1" or tag.endswith("-unhealthy")
    regions = {r.strip() for r in env.get("SAMPLE_APP_FAIL_HEALTH_REGIONS", "").split(",")}
    regions.discard("")
    if regions:
        return region in regions
    return wanted


class SimChecks(dict[str, CheckResult]):
    """A machine's check results under ``sim``, worked out whenever they are read.

    Each check "runs" first when its grace period is over and then every interval; a read
    returns what the latest run would have found, with that run's time.
    """

    def __init__(
        self,
        specs: list[CheckSpec],
        forced: Callable[[], str | None],
        failing: bool,
    ) -> None:
        super().__init__()
        self._specs = specs
        self._forced = forced
        self._failing = failing
        self._start = time.time()
        waiting = iso_now(self._start)
        for s in specs:
            super().__setitem__(
                s.name, CheckResult(s.name, "warning", "waiting for the first check", waiting)
            )

    def _refresh(self) -> None:
        now = time.time()
        for s in self._specs:
            first = self._start + s.grace
            if now < first:
                continue
            ran = first + math.floor((now - first) / s.interval) * s.interval
            reason = self._forced()
            if reason:
                status, output = "critical", reason
            elif self._failing:
                status, output = "critical", f"HTTP {s.method} {s.path}: 503 Service Unavailable"
            else:
                status, output = "passing", f"HTTP {s.method} {s.path}: 200 OK (simulated)"
            super().__setitem__(s.name, CheckResult(s.name, status, output, iso_now(ran)))

    def __getitem__(self, key: str) -> CheckResult:
        self._refresh()
        return super().__getitem__(key)

    def __iter__(self) -> Iterator[str]:
        self._refresh()
        return super().__iter__()

    def values(self) -> ValuesView[CheckResult]:  # type: ignore[override]
        self._refresh()
        return super().values()

    def items(self) -> ItemsView[str, CheckResult]:  # type: ignore[override]
        self._refresh()
        return super().items()


def _response(
    status: int, content: bytes, content_type: str, request: httpx.Request
) -> httpx.Response:
    # A stream, not ``content=``: the proxy relays the raw stream, which ``content=`` consumes.
    return httpx.Response(
        status,
        headers={"content-type": content_type, "content-length": str(len(content))},
        stream=httpx.ByteStream(content),
        request=request,
    )


def answer(
    m: MachineRecord,
    method: str,
    path: str,
    request: httpx.Request,
    healthy: bool,
    leader: str | None,
) -> httpx.Response:
    """Return what the sample app on ``m`` would answer to ``method path`` (no process).

    ``leader`` is the machine that holds the primary role in the primary region; the region's
    other machines answer as its replicas, as the sample app's election leaves them.
    """
    route = path.split("?", 1)[0]
    env = {str(k): str(v) for k, v in (m.config.get("env") or {}).items()}
    image = str(m.config.get("image", ""))
    release = image.rsplit(":", 1)[-1] if ":" in image else "latest"
    primary = env.get("PRIMARY_REGION", m.region)
    started = _started(m)
    uptime = max(0.0, time.time() - started)
    if method == "GET" and route == "/status":
        body = {
            "role": "primary" if m.id == leader else "replica",
            "region": m.region,
            "primary_region": primary,
            "release": release,
            "image": image,
            "machine_id": m.id,
            "app": m.app,
            "last_seq": 0,
            "last_write_at": None,
            "candidate": m.region == primary,
            "leader": leader,
            "leader_since": None,
            "term": 1,
            "replication_lag_s": None if m.id == leader else 0.0,
            "replication": None,
            "orphaned_records": 0,
            "uptime_s": round(uptime, 3),
            "healthy": healthy,
            "simulated": True,
        }
        if not healthy:
            body["reason"] = "health failure requested (simulated)"
        return _response(
            200 if healthy else 503, json.dumps(body).encode(), "application/json", request
        )
    if method == "GET" and route == "/metrics":
        text = _metrics(m, release, started, uptime)
        return _response(200, text.encode(), "text/plain; version=0.0.4; charset=utf-8", request)
    body = {"error": f"{route} is not simulated", "simulated": True}
    return _response(
        404 if route != "/" else 200, json.dumps(body).encode(), "application/json", request
    )


def _started(m: MachineRecord) -> float:
    for ev in reversed(m.events):
        if ev.get("type") == "start" and ev.get("status") == "started":
            return float(ev.get("timestamp", 0)) / 1000.0
    return time.time()


def _metrics(m: MachineRecord, release: str, started: float, uptime: float) -> str:
    n = math.floor(uptime * _REQUESTS_PER_S)
    labels = f'app="{m.app}",region="{m.region}",release="{release}",machine_id="{m.id}"'
    lines = [
        "# TYPE http_requests_total counter",
        f'http_requests_total{{status="200",path="/status"}} {n}',
        "# TYPE http_request_duration_seconds histogram",
        *(
            f'http_request_duration_seconds_bucket{{path="/status",le="{le}"}} {n}'
            for le in ("0.005", "0.01", "0.1", "1.0", "10.0", "+Inf")
        ),
        f'http_request_duration_seconds_count{{path="/status"}} {n}',
        f'http_request_duration_seconds_sum{{path="/status"}} {n * 0.002:.3f}',
        "# TYPE process_start_time_seconds gauge",
        f"process_start_time_seconds {started:.3f}",
        "# TYPE app_info gauge",
        f'app_info{{{labels},role="sim"}} 1',
        "",
    ]
    return "\n".join(lines)
