"""The local Fly's shared state: records, runtimes, lookups, events and persistence.

``LocalFly`` owns everything the API handlers act on. Records live in memory and are
written through to SQLite on every change; a ``MachineRuntime`` holds what only exists
while the server runs (the process, its checks, the lock that orders lifecycle work).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from orchestrator.localfly.checks import CheckResult
from orchestrator.localfly.faults import Faults
from orchestrator.localfly.profiles import Profile
from orchestrator.localfly.prometheus import TargetFile
from orchestrator.localfly.ratelimit import RateLimiter
from orchestrator.localfly.state import (
    AppRecord,
    MachineRecord,
    SnapshotRecord,
    Store,
    VolumeRecord,
)
from orchestrator.localfly.stats import Stats
from orchestrator.localfly.supervisor import Proc, Supervisor
from orchestrator.localfly.util import ApiError, iso_now, show, ulid

__all__ = ["RUNNING", "Call", "LocalFly", "MachineRuntime", "json_response"]

# States in which a machine has (or is about to have) a process.
RUNNING = frozenset({"started", "starting", "restarting", "replacing", "updating"})
_UNSET: Any = object()


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Return a compact JSON response."""
    return Response(
        json.dumps(data, separators=(",", ":")),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


@dataclass(slots=True)
class Call:
    """One API request as a handler sees it: path parameters and the parsed body."""

    request: Request
    params: dict[str, str]
    operation: str
    _body: Any = _UNSET

    async def json(self) -> Any:
        """Return the JSON body (cached); 400 when it is not JSON."""
        if self._body is _UNSET:
            raw = await self.request.body()
            if not raw.strip():
                self._body = None
            else:
                try:
                    self._body = json.loads(raw)
                except (ValueError, UnicodeDecodeError):
                    raise ApiError(400, "request body is not valid JSON") from None
        return self._body

    async def until_disconnected(self) -> None:
        """Return once the client has closed the connection (it cancelled the call).

        It reads the request's messages, so only a handler that never reads the body may
        wait on it (``GET .../wait``).
        """
        while (await self.request.receive())["type"] != "http.disconnect":
            pass

    async def json_or_none(self) -> Any:
        """Return the JSON body, or None when it is missing or not JSON."""
        try:
            return await self.json()
        except ApiError:
            return None

    def query(self, name: str) -> str | None:
        """Return one query parameter."""
        return self.request.query_params.get(name)

    def flag(self, name: str) -> bool:
        """Return a boolean query parameter (``true``/``1``)."""
        return (self.query(name) or "").lower() in ("true", "1", "yes")

    @property
    def nonce(self) -> str | None:
        """Return the ``fly-machine-lease-nonce`` header."""
        return self.request.headers.get("fly-machine-lease-nonce") or None


@dataclass(slots=True)
class MachineRuntime:
    """What exists of a machine only while the server runs."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    proc: Proc | None = None
    pending: set[asyncio.Task[None]] = field(default_factory=set)
    checks: dict[str, CheckResult] = field(default_factory=dict)
    check_task: asyncio.Task[None] | None = None
    frozen: bool = False


class LocalFly:
    """Everything the API acts on, and the plumbing to change it safely."""

    def __init__(self, state_dir: Path, profile: Profile, *, proxy_url: str = "") -> None:
        self.state_dir = state_dir
        self.profile = profile
        self.proxy_url = proxy_url
        self.rng = random.Random()
        for sub in ("machines", "volumes", "snapshots"):
            (state_dir / sub).mkdir(mode=0o700, exist_ok=True)
        self.store = Store(state_dir / "state.db")
        self.apps = {a.name: a for a in self.store.load(AppRecord)}
        self.machines = {m.id: m for m in self.store.load(MachineRecord)}
        self.volumes = {v.id: v for v in self.store.load(VolumeRecord)}
        self.snapshots = {s.id: s for s in self.store.load(SnapshotRecord)}
        self.runtime: dict[str, MachineRuntime] = {}
        self.supervisor = Supervisor()
        self.faults = Faults()
        self.limiter = RateLimiter(profile.time_factor)
        self.outages: set[str] = set()
        self.stats = Stats()
        self.next_seq = max((m.seq for m in self.machines.values()), default=0) + 1
        # Counts machine changes (every notify), so views derived from the whole fleet (the
        # simulated primary) are recomputed only when something changed, not per request.
        self.generation = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closing = False
        # What a Prometheus scrapes (prometheus.py); simulated machines have nothing to scrape.
        self.targets = TargetFile(
            state_dir, lambda: list(self.machines.values()), enabled=not profile.simulated
        )

    # -- paths ---------------------------------------------------------------------------

    def machine_dir(self, mid: str) -> Path:
        """Return ``machines/<id>/``."""
        return self.state_dir / "machines" / mid

    def volume_data(self, vid: str) -> Path:
        """Return ``volumes/<id>/data``, the directory a mount points at."""
        return self.state_dir / "volumes" / vid / "data"

    def snapshot_path(self, sid: str) -> Path:
        """Return ``snapshots/<id>.tar``."""
        return self.state_dir / "snapshots" / f"{sid}.tar"

    # -- lookups (404 when missing) ------------------------------------------------------

    def app(self, name: str) -> AppRecord:
        """Return an app or raise 404."""
        app = self.apps.get(name)
        if app is None:
            raise ApiError(404, f"app {show(name)} not found")
        return app

    def machine(self, app: str, mid: str, *, live: bool = True) -> MachineRecord:
        """Return a machine of ``app``; 404 when missing (or destroyed, when ``live``)."""
        self.app(app)
        m = self.machines.get(mid)
        if m is None or m.app != app or (live and m.state == "destroyed"):
            raise ApiError(404, f"machine {show(mid)} not found")
        return m

    def volume(self, app: str, vid: str) -> VolumeRecord:
        """Return a volume of ``app`` or raise 404."""
        self.app(app)
        v = self.volumes.get(vid)
        if v is None or v.app != app:
            raise ApiError(404, f"volume {show(vid)} not found")
        return v

    def rt(self, mid: str) -> MachineRuntime:
        """Return (creating if needed) a machine's runtime."""
        rt = self.runtime.get(mid)
        if rt is None:
            rt = self.runtime[mid] = MachineRuntime()
        return rt

    # -- changes -------------------------------------------------------------------------

    def save(self, record: AppRecord | MachineRecord | VolumeRecord | SnapshotRecord) -> None:
        """Write a record through to the store."""
        self.store.put(record)

    def event(
        self,
        m: MachineRecord,
        type_: str,
        status: str,
        source: str = "flyd",
        request: dict[str, Any] | None = None,
    ) -> None:
        """Append an event to a machine's log (newest last, capped)."""
        ev: dict[str, Any] = {
            "id": ulid(),
            "type": type_,
            "status": status,
            "source": source,
            "timestamp": int(time.time() * 1000),
        }
        if request:
            ev["request"] = request
        m.events.append(ev)
        del m.events[:-50]

    def set_state(self, m: MachineRecord, state: str) -> None:
        """Move a machine to ``state``, persist it and wake its waiters."""
        m.state = state
        m.updated_at = iso_now()
        self.save(m)
        self.notify(m)
        self.targets.changed()

    def notify(self, m: MachineRecord) -> None:
        """Wake everything waiting on a change of ``m``."""
        self.generation += 1
        rt = self.rt(m.id)
        rt.changed.set()
        rt.changed = asyncio.Event()

    def check_lease(self, m: MachineRecord, nonce: str | None) -> None:
        """Refuse a change to a leased machine unless the caller holds the lease (409)."""
        lease = m.lease
        if lease is None:
            return
        if lease.expires_at <= time.time():
            m.lease = None
            return
        if nonce != lease.nonce:
            raise ApiError(
                409,
                f"machine {m.id} lease currently held by {lease.owner} until "
                f"{iso_now(lease.expires_at)}; send its nonce as fly-machine-lease-nonce",
            )

    def forced_check_failure(self, m: MachineRecord) -> str | None:
        """Return why a machine's checks must fail without probing, if they must."""
        if m.region in self.outages:
            return f"host unreachable: region {m.region} is down (local outage)"
        if m.id in self.faults.failing_checks:
            return "check failing (injected by the local Fly fault control)"
        return None

    def track(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a background coroutine, keeping a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def cancel_tasks(self) -> None:
        """Stop all background work (transitions, checks) before shutting down."""
        self.closing = True
        for rt in self.runtime.values():
            for t in [*rt.pending, rt.check_task]:
                if t is not None:
                    t.cancel()
        for t in list(self._tasks):
            t.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
