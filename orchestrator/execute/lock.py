"""Allow one deploy, rollback, scale or drill per app at a time, from any host, and name the holder.

The lock lives on Fly, so every host that can reach the Machines API sees it: a CI runner, two
operators' laptops and a fresh checkout all meet the same lock. It is built from two Fly
primitives and nothing else:

- **a lock machine**: one small machine per app, named ``<app>-deploy-lock``, created stopped
  (``skip_launch``) with the metadata ``orch_role=deploy-lock``. It never runs, serves nothing
  and has no volume, so it costs only its root filesystem while stopped. Fly keeps machine
  names unique within an app, so two hosts creating it at once end with one machine; the loser
  gets 422 ``name_taken`` and uses the winner's. It is made on the first locked command, so a
  first deploy of an app with no machines is covered.
- **its lease**: holding the lock is holding that machine's lease. Fly grants a lease to one
  holder at a time (409 to the others), so the API itself arbitrates; nothing here compares
  and then writes. The lease has a TTL (``lock_ttl``, default 30 s) and a heartbeat thread
  renews it every third of that. The lease description names the holder in one line and the
  machine's metadata ``orch_lock_holder`` carries the whole record (host, pid, user, the CI
  run's URL, command, release, started), tied to the lease by a random ``id``.

Failure modes, and what each does:

- the holder exits normally or fails: the lease is released and the metadata cleared;
- the holder is killed (``kill -9``, a lost CI runner): its heartbeat stops and the lease
  expires within the TTL; until then others are refused with the holder named and the time
  left. On the holder's own host a dead pid is noticed at once and its lease is broken
  (the process start time guards against a reused pid);
- the holder is alive but cannot renew (a network partition, a stopped process): once the
  TTL may have run out it considers the lock lost and cancels its run, which the executor
  journals as interrupted (`invoke deploy --resume` finishes it). A renewal that comes back
  with a new nonce means the lease lapsed in between: lost too;
- ``invoke unlock --force`` (`force_unlock`) reads the lease and releases it with its nonce
  (Fly returns the nonce to any caller with the app's token, as ``fly machine leases clear``
  relies on); a live holder notices at its next renewal and stops;
- the API restarts or is unreachable: the lease is Fly's state and survives; a holder that
  could not renew within the TTL stops, so there are never two holders;
- the lock machine is destroyed by hand: the next locked command makes a new one; a holder's
  renewal then fails and it stops.

The window that remains is the one every lease lock has: a request the holder sent just
before it noticed the loss may still land. Each machine the executor changes is also leased
for the change itself, so two runs never update one machine at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import getpass
import json
import os
import secrets
import socket
import threading
import time
import tomllib
from collections.abc import Coroutine, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import psutil

from orchestrator.errors import (
    ConfigError,
    DeployError,
    DeployLocked,
    FlyAPIError,
    FlyConflict,
    FlyLeaseHeld,
    FlyNotFound,
    FlyServerError,
    OrchestratorError,
)
from orchestrator.execute.events import utcnow
from orchestrator.execute.journal import iso
from orchestrator.fleetconfig.load import REGIONS_DIR, primary_roles
from orchestrator.fleetconfig.regions import REGIONS, RETIRED, nearest_region
from orchestrator.fly.client import CONTROL_ROLE_KEY, LOCK_ROLE, FlyClient
from orchestrator.fly.models import Lease, Machine
from orchestrator.localfly.statedir import read_server_info
from orchestrator.settings import Settings

__all__ = [
    "DEFAULT_LOCK_TTL_S",
    "DeployLock",
    "DeployLockLost",
    "LockHolder",
    "LockState",
    "ci_run_url",
    "current_user",
    "find_lock_machine",
    "force_unlock",
    "lock_machine_name",
    "read_lock",
]

T = TypeVar("T")

DEFAULT_LOCK_TTL_S = 30.0
HOLDER_KEY = "orch_lock_holder"
_CI_URLS = ("CI_JOB_URL", "BUILDKITE_BUILD_URL", "CIRCLE_BUILD_URL", "BUILD_URL")
_LOCK_GUEST = {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256}


def lock_machine_name(app: str) -> str:
    """Return the name of ``app``'s lock machine."""
    return f"{app}-deploy-lock"


class DeployLockLost(DeployError):
    """The run lost the app's deploy lock while it ran and stopped at once.

    Attributes:
        reason: why (a renewal refused, the TTL ran out unrenewed, the lease broken).
    """

    def __init__(self, message: str, *, reason: str = "") -> None:
        self.reason = reason
        super().__init__(message)


def ci_run_url(environ: Mapping[str, str]) -> str:
    """Return the URL of the CI run this process belongs to, when the CI's environment says."""
    server, repo, run = (
        environ.get("GITHUB_SERVER_URL", ""),
        environ.get("GITHUB_REPOSITORY", ""),
        environ.get("GITHUB_RUN_ID", ""),
    )
    if server and repo and run:
        return f"{server.rstrip('/')}/{repo}/actions/runs/{run}"
    for name in _CI_URLS:
        if environ.get(name, "").startswith(("https://", "http://")):
            return environ[name]
    return ""


def current_user(environ: Mapping[str, str]) -> str:
    """Return who runs this process: the CI's actor in GitHub Actions, else the login name."""
    if environ.get("GITHUB_ACTOR"):
        return environ["GITHUB_ACTOR"]
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _process_started(pid: int) -> float:
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return 0.0


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds (or last held) an app's deploy lock.

    Attributes:
        id: a random id tying the lease to this record.
        host: the holder's host name.
        pid: its process id.
        user: who ran it (the CI's actor in CI).
        command: ``deploy``, ``rollback``, ``scale``, ``drill``.
        release: the release it works on (or ``""``).
        started_at: ISO timestamp of when it took the lock.
        ci_url: the CI run's URL, when there is one.
        process_started: the process's start time (epoch seconds), to tell a reused pid apart.
        ttl_s: its lease's TTL (its heartbeat renews it every third of that).
    """

    id: str
    host: str
    pid: int
    user: str
    command: str
    release: str
    started_at: str
    ci_url: str = ""
    process_started: float = 0.0
    ttl_s: float = 0.0

    def describe(self) -> str:
        """Return one line naming the holder."""
        what = f"{self.command} of {self.release}" if self.release else self.command
        who = ", ".join(x for x in (f"user {self.user}", self.ci_url) if x)
        return f"{what} by pid {self.pid} on {self.host} ({who}) since {self.started_at}"

    def to_text(self) -> str:
        """Return the record as compact JSON (the metadata value)."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_text(cls, text: str | None) -> LockHolder | None:
        """Read a record written by `to_text`; ``None`` when it is missing or not one."""
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(
                id=str(data["id"]),
                host=str(data["host"]),
                pid=int(data["pid"]),
                user=str(data.get("user", "")),
                command=str(data.get("command", "deploy")),
                release=str(data.get("release", "")),
                started_at=str(data.get("started_at", "")),
                ci_url=str(data.get("ci_url", "")),
                process_started=float(data.get("process_started", 0.0)),
                ttl_s=float(data.get("ttl_s", 0.0)),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    def lease_description(self) -> str:
        """Return the lease's one-line description (it carries the id first)."""
        return f"{self.id} {self.describe()}"

    def dead_here(self) -> bool:
        """Tell whether the holder ran on this host and its process is gone."""
        if self.host != socket.gethostname():
            return False
        if not psutil.pid_exists(self.pid):
            return True
        if self.process_started:
            started = _process_started(self.pid)
            return started == 0.0 or abs(started - self.process_started) >= 1.0
        return False


@dataclass(frozen=True, slots=True)
class LockState:
    """The lock as Fly has it now.

    Attributes:
        machine_id: the lock machine's id (``None``: no locked command ran yet).
        holder: the holder, when the lease is held (from the metadata, else from the lease).
        lease: the lease itself, when held.
        last_holder: a holder recorded in the metadata whose lease is gone (it ended without
            releasing: killed, or its heartbeat stopped).
    """

    machine_id: str | None
    holder: LockHolder | None
    lease: Lease | None
    last_holder: LockHolder | None = None

    @property
    def held(self) -> bool:
        """Tell whether someone holds the lock."""
        return self.lease is not None

    def expires_in(self, now: float | None = None) -> float:
        """Return the seconds until the holder's lease lapses unless renewed."""
        if self.lease is None:
            return 0.0
        return max(0.0, self.lease.expires_at - (time.time() if now is None else now))

    def heartbeat_age(self, now: float | None = None) -> float | None:
        """Return the seconds since the holder's last heartbeat, when its TTL is known."""
        if self.lease is None or self.holder is None or not self.holder.ttl_s:
            return None
        return max(0.0, self.holder.ttl_s - self.expires_in(now))

    def to_json(self) -> dict[str, Any]:
        """Return the state as JSON-ready data (never a nonce)."""
        age = self.heartbeat_age()
        return {
            "machine_id": self.machine_id,
            "held": self.held,
            "holder": asdict(self.holder) if self.holder else None,
            "expires_at": self.lease.expires_at if self.lease else None,
            "expires_in_s": round(self.expires_in(), 1) if self.lease else None,
            "heartbeat_age_s": None if age is None else round(age, 1),
            "last_holder": asdict(self.last_holder) if self.last_holder else None,
        }


def _holder_from_lease(lease: Lease) -> LockHolder:
    # A lease without our record (another tool took it, or the metadata write was lost).
    return LockHolder(
        id=lease.description.split(" ", 1)[0],
        host="?",
        pid=0,
        user=lease.owner or "?",
        command="lock",
        release="",
        started_at="?",
    )


async def find_lock_machine(client: FlyClient, app: str) -> Machine | None:
    """Return the app's lock machine, or ``None`` before the first locked command."""
    machines = await client.list_machines(app, metadata={CONTROL_ROLE_KEY: LOCK_ROLE})
    live = [m for m in machines if m.state not in ("destroyed", "destroying")]
    # Names are unique, so there is one; should a platform ever allow two, every host picks
    # the same one.
    return min(live, key=lambda m: m.id) if live else None


async def _state(client: FlyClient, app: str) -> LockState:
    try:
        machine = await find_lock_machine(client, app)
    except FlyNotFound:
        return LockState(None, None, None)
    if machine is None:
        return LockState(None, None, None)
    lease = await client.get_lease(app, machine.id)
    recorded = LockHolder.from_text((await client.get_metadata(app, machine.id)).get(HOLDER_KEY))
    if lease is None:
        return LockState(machine.id, None, None, last_holder=recorded)
    if recorded is not None and lease.description.startswith(recorded.id + " "):
        return LockState(machine.id, recorded, lease)
    return LockState(machine.id, _holder_from_lease(lease), lease, last_holder=recorded)


class _Loop:
    """An event loop on its own thread, so the heartbeat runs whatever the caller's loop does."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="deploy-lock", daemon=True
        )
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


def _call_sync(settings: Settings, work: Any) -> Any:
    """Run ``work(client)`` with a fresh client on a private loop (for one-off reads)."""

    async def go() -> Any:
        async with _client(settings) as client:
            return await work(client)

    loop = _Loop()
    try:
        return loop.run(go())
    finally:
        loop.close()


def _client(settings: Settings) -> FlyClient:
    if settings.base_url is None or settings.token is None:
        raise DeployError("the deploy lock needs the API's URL and token (connect first)")
    return FlyClient(settings.base_url, settings.token, timeout=15.0)


def read_lock(settings: Settings, app: str) -> LockState:
    """Return the app's lock as Fly has it now (reads only)."""
    result: LockState = _call_sync(settings, lambda client: _state(client, app))
    return result


def force_unlock(settings: Settings, app: str) -> LockState:
    """Break the app's lock, whoever holds it, and return what it was.

    A live holder notices at its next renewal and stops at once (its run is journaled as
    interrupted); the record of a holder that died is cleared too.
    """

    async def work(client: FlyClient) -> LockState:
        state = await _state(client, app)
        if state.machine_id is None:
            return state
        if state.lease is not None:
            with contextlib.suppress(FlyNotFound, FlyConflict):
                await client.release_lease(app, state.machine_id, state.lease.nonce)
        if state.holder is not None or state.last_holder is not None:
            # The lease is gone now, so the metadata takes no nonce; a new holder that slipped
            # in between keeps its own record (its lease makes this call fail).
            with contextlib.suppress(FlyConflict, FlyNotFound):
                await client.delete_metadata(app, state.machine_id, HOLDER_KEY)
        return state

    result: LockState = _call_sync(settings, work)
    return result


class DeployLock:
    """The deploy lock of one app, held on Fly (see the module docstring for the design).

    Use as a context manager inside the command's coroutine, after connecting::

        with DeployLock(conn.settings, conn.app, release="v2-3f9a2c1b", command="deploy") as lock:
            ...

    A lost lock cancels the coroutine that took it; ``__exit__`` then raises `DeployLockLost`.

    Attributes:
        app: the app.
        holder: our record once held.
        stale: a holder whose lease this acquire found lapsed or broke (it had died), else
            ``None``.
        lost: why the lock was lost while held, else ``None``.
    """

    def __init__(
        self,
        settings: Settings,
        app: str,
        *,
        release: str = "",
        command: str = "deploy",
        ttl_s: float | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.app = app
        self.release_id = release
        self.command = command
        self.ttl_s = float(ttl_s if ttl_s is not None else settings.lock_ttl_s)
        self.environ = dict(os.environ if environ is None else environ)
        self.holder: LockHolder | None = None
        self.stale: LockHolder | None = None
        self.lost: str | None = None
        self._loop: _Loop | None = None
        self._client: FlyClient | None = None
        self._machine_id: str | None = None
        self._nonce: str | None = None
        self._renewed_at = 0.0  # monotonic time the last good renewal was sent
        self._stop = threading.Event()
        self._beat: concurrent.futures.Future[None] | None = None
        self._owner: tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None = None
        self.metadata: dict[str, str] = {}
        self._writes: list[concurrent.futures.Future[None]] = []
        self._write_lock: asyncio.Lock | None = None

    # -- acquiring --------------------------------------------------------------------------

    def acquire(self) -> LockHolder:
        """Take the lock or raise at once; start the heartbeat.

        Raises:
            DeployLocked: another run holds it; the message names it and when it lapses.
            ConfigError: the app does not exist on Fly.io.
            OrchestratorError: the API could not be reached.
        """
        if self._loop is not None:
            raise DeployError(f"the deploy lock of {self.app!r} is already held by this object")
        holder = LockHolder(
            id=secrets.token_hex(8),
            host=socket.gethostname(),
            pid=os.getpid(),
            user=current_user(self.environ),
            command=self.command,
            release=self.release_id,
            started_at=iso(utcnow()),
            ci_url=ci_run_url(self.environ),
            process_started=_process_started(os.getpid()),
            ttl_s=self.ttl_s,
        )
        loop = _Loop()
        try:
            loop.run(self._acquire(holder))
        except BaseException:
            with contextlib.suppress(Exception):
                loop.run(self._close_client(), timeout=10)
            loop.close()
            raise
        self._loop = loop
        self.holder = holder
        with contextlib.suppress(RuntimeError):
            task = asyncio.current_task()
            if task is not None:
                self._owner = (asyncio.get_running_loop(), task)
        self._beat = asyncio.run_coroutine_threadsafe(self._heartbeat(), loop.loop)
        return holder

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _acquire(self, holder: LockHolder) -> None:
        self._client = client = _client(self.settings)
        await self._ensure_app(client)
        ttl = max(1, round(self.ttl_s))
        for _ in range(3):
            machine = await find_lock_machine(client, self.app)
            if machine is None:
                created = await self._create_machine(client, holder, ttl)
                if created is None:
                    continue  # another host made it first: lease theirs
                self._machine_id, nonce = created
                sent = time.monotonic()
                # Renew it at once, so its TTL counts from when the lock is taken.
                lease = await client.acquire_lease(
                    self.app,
                    created[0],
                    ttl=ttl,
                    description=holder.lease_description(),
                    nonce=nonce,
                )
                await self._took(client, holder, lease, sent)
                return
            self._machine_id = machine.id
            sent = time.monotonic()
            try:
                lease = await client.acquire_lease(
                    self.app, machine.id, ttl=ttl, description=holder.lease_description()
                )
            except FlyLeaseHeld:
                state = await _state(client, self.app)
                if state.lease is None:
                    continue  # it lapsed just now: try again
                if state.holder is not None and state.holder.dead_here():
                    # Its process is gone from this host: break its lease rather than wait.
                    with contextlib.suppress(FlyConflict, FlyNotFound):
                        await client.release_lease(self.app, machine.id, state.lease.nonce)
                    self.stale = state.holder
                    continue
                raise self._locked(state) from None
            except FlyNotFound:
                continue  # the lock machine was destroyed in between: make a new one
            await self._took(client, holder, lease, sent)
            return
        raise DeployLocked(f"app {self.app!r}: could not take the deploy lock (it kept changing)")

    async def _took(self, client: FlyClient, holder: LockHolder, lease: Lease, sent: float) -> None:
        assert self._machine_id is not None
        self._nonce = lease.nonce
        self._renewed_at = sent
        meta = await client.get_metadata(self.app, self._machine_id)
        self.metadata = dict(meta)
        self._write_lock = asyncio.Lock()
        previous = LockHolder.from_text(meta.get(HOLDER_KEY))
        if previous is not None and self.stale is None and previous.id != holder.id:
            self.stale = previous  # it never released: killed, or its heartbeat stopped
        await client.update_metadata(
            self.app, self._machine_id, {HOLDER_KEY: holder.to_text()}, nonce=lease.nonce
        )

    async def _ensure_app(self, client: FlyClient) -> None:
        try:
            await client.get_app(self.app)
        except FlyNotFound:
            if self.settings.backend != "local":
                raise ConfigError(
                    f"app {self.app!r} does not exist on Fly.io; create it with "
                    f"`fly apps create {self.app}`",
                    where="fly.toml: app",
                ) from None
            await client.create_app(self.app, idempotency_key=f"orchestrator-{self.app}")

    async def _create_machine(
        self, client: FlyClient, holder: LockHolder, ttl: int
    ) -> tuple[str, str] | None:
        region, image = _placement(self.settings.root)
        config = {
            "image": image,
            "guest": dict(_LOCK_GUEST),
            "restart": {"policy": "no"},
            "auto_destroy": False,
            "metadata": {CONTROL_ROLE_KEY: LOCK_ROLE},
        }
        try:
            # Not leased from birth: a create whose answer was lost comes back `name_taken`,
            # and a lease taken at birth would then be nobody's (it has no description to know
            # it by) until it lapsed. The lease POST below is as atomic as the create.
            machine = await client.create_machine(
                self.app,
                config,
                region=region,
                name=lock_machine_name(self.app),
                skip_launch=True,
            )
        except FlyAPIError as exc:
            if exc.fly_status == "name_taken" or exc.status_code in (409, 422):
                return None
            raise
        try:
            lease = await client.acquire_lease(
                self.app, machine.id, ttl=ttl, description=holder.lease_description()
            )
        except FlyLeaseHeld:
            return None  # another host leased it first: the caller reads who
        return machine.id, lease.nonce

    def _locked(self, state: LockState) -> DeployLocked:
        holder = state.holder
        left = state.expires_in()
        who = holder.describe() if holder is not None else "another run"
        return DeployLocked(
            f"app {self.app!r} is locked: {who}; its lease lapses in {left:.0f} s unless its "
            "heartbeat renews it",
            holder=asdict(holder) if holder is not None else None,
            lapses_in_s=left,
        )

    # -- holding ----------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        client = self._client
        assert client is not None
        assert self._machine_id is not None
        assert self.holder is not None
        every = max(0.2, self.ttl_s / 3)
        # The lease may lapse ttl after the last renewal Fly saw; stop a little before that.
        limit = self.ttl_s * 0.9
        frozen = False  # the API answers, but the lock machine's host cannot take the renewal
        while not self._stop.is_set():
            # The heartbeat's period (every second while frozen), not a synchronisation.
            await asyncio.sleep(min(every, 1.0) if frozen else every)
            if self._stop.is_set():
                return
            sent = time.monotonic()
            try:
                lease = await client.acquire_lease(
                    self.app,
                    self._machine_id,
                    ttl=max(1, round(self.ttl_s)),
                    description=self.holder.lease_description(),
                    nonce=self._nonce,
                )
            except FlyLeaseHeld:
                self._lose("another run holds the lock now (it was broken or it lapsed)")
                return
            except FlyNotFound:
                self._lose("the lock machine is gone")
                return
            except FlyServerError:
                # Fly answered that the machine's host cannot act (a region outage, as a drill
                # makes): nobody can take the lease meanwhile either, so the lock is frozen, not
                # lost. Whether anyone used a lapse is checked once a renewal goes through.
                frozen = True
                continue
            except OrchestratorError:
                client = await self._relocate() or client
                if not frozen and time.monotonic() - self._renewed_at >= limit:
                    self._lose(f"the lease could not be renewed for {self.ttl_s:.0f} s")
                    return
                continue
            if lease.nonce != self._nonce and not await self._unused_lapse(client, lease):
                with contextlib.suppress(OrchestratorError):
                    await client.release_lease(self.app, self._machine_id, lease.nonce)
                self._lose("the lease lapsed and another run held the lock meanwhile")
                return
            self._nonce = lease.nonce
            self._renewed_at = sent
            frozen = False

    async def _unused_lapse(self, client: FlyClient, lease: Lease) -> bool:
        """Tell whether a lease that lapsed and came back new was taken by nobody meanwhile.

        Every holder writes its record into the metadata when it takes the lock and clears it
        when it releases, so our own record still there means no other run held the lock.
        """
        assert self._machine_id is not None
        assert self.holder is not None
        try:
            meta = await client.get_metadata(self.app, self._machine_id)
        except OrchestratorError:
            return False
        recorded = LockHolder.from_text(meta.get(HOLDER_KEY))
        return recorded is not None and recorded.id == self.holder.id

    def _lose(self, reason: str) -> None:
        if self._stop.is_set():
            return
        self.lost = reason
        if self._owner is not None:
            loop, task = self._owner
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)

    @property
    def machine_id(self) -> str | None:
        """Return the lock machine's id once the lock was taken."""
        return self._machine_id

    @property
    def held(self) -> bool:
        """Tell whether this object holds the lock (and has not lost it)."""
        if self._loop is None or self.lost is not None:
            return False
        return time.monotonic() - self._renewed_at < self.ttl_s * 0.9

    def record(self, values: Mapping[str, str | None]) -> None:
        """Write ``values`` into the lock machine's metadata in the background, in order.

        Only the holder can (the lease guards the machine). A write that fails is dropped: a
        record is never worth failing a deploy for. `release` waits for pending writes.
        """
        loop = self._loop
        if loop is None or self.lost is not None:
            return
        self.metadata.update({k: v for k, v in values.items() if v is not None})
        for key in [k for k, v in values.items() if v is None]:
            self.metadata.pop(key, None)
        self._writes.append(asyncio.run_coroutine_threadsafe(self._record(dict(values)), loop.loop))

    async def _record(self, values: dict[str, str | None]) -> None:
        client, lock = self._client, self._write_lock
        if client is None or lock is None or self._machine_id is None:
            return
        async with lock:
            with contextlib.suppress(OrchestratorError):
                await client.update_metadata(self.app, self._machine_id, values, nonce=self._nonce)

    # -- releasing --------------------------------------------------------------------------

    def release(self) -> None:
        """Stop the heartbeat and release the lease (a no-op when not held)."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        for write in self._writes:
            with contextlib.suppress(Exception):
                write.result(timeout=15)
        self._writes.clear()
        self._stop.set()
        try:
            if self._beat is not None:
                self._beat.cancel()
            if self.lost is None:
                with contextlib.suppress(OrchestratorError, concurrent.futures.TimeoutError):
                    loop.run(self._release(), timeout=20)
        finally:
            with contextlib.suppress(Exception):
                loop.run(self._close_client(), timeout=10)
            loop.close()

    async def _relocate(self) -> FlyClient | None:
        """Follow the local Fly to its new address after a restart; return the new client.

        A restarted local Fly listens on new ports (its leases are kept); Fly.io does not move.
        """
        if self.settings.backend != "local":
            return None
        info = read_server_info(self.settings.local_state_dir) or {}
        url = info.get("api_url")
        if not isinstance(url, str) or url == self.settings.base_url:
            return None
        self.settings = replace(self.settings, base_url=url)
        old, self._client = self._client, _client(self.settings)
        if old is not None:
            with contextlib.suppress(Exception):
                await old.aclose()
        return self._client

    async def _release(self) -> None:
        try:
            await self._release_once()
        except OrchestratorError:
            if await self._relocate() is None:
                raise
            await self._release_once()

    async def _release_once(self) -> None:
        client = self._client
        assert client is not None
        assert self._machine_id is not None
        assert self._nonce is not None
        # Clear the record first, while the lease still guards it, so nobody reads a released
        # lock as one whose holder died.
        with contextlib.suppress(FlyConflict, FlyNotFound):
            await client.update_metadata(
                self.app, self._machine_id, {HOLDER_KEY: None}, nonce=self._nonce
            )
        with contextlib.suppress(FlyConflict, FlyNotFound):
            await client.release_lease(self.app, self._machine_id, self._nonce)

    def __enter__(self) -> DeployLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
        if self.lost is not None and (exc is None or isinstance(exc, asyncio.CancelledError)):
            raise DeployLockLost(
                f"lost the deploy lock of {self.app!r} ({self.lost}); stopped at once",
                reason=self.lost,
            )


def _placement(root: Path) -> tuple[str, str]:
    """Return the region and image of the lock machine.

    The region is the one nearest fly.toml's primary region that holds none of the fleet's
    machines (no ``regions/<code>.toml``): the lock then never shares a region's fate with the
    fleet, so a drill or an outage that takes a fleet region down (its Machines API answering
    503) leaves the lock to be taken, renewed and broken, above all by the ``drill --resume``
    or ``--abort`` that brings the region back. Only the create uses it: an existing lock
    machine is found by name wherever it is. The image is never run; Fly only needs one it can
    resolve.
    """
    try:
        data = tomllib.loads((root / "fly.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read it: {exc}", where="fly.toml") from exc
    region = data.get("primary_region")
    build = data.get("build") if isinstance(data.get("build"), dict) else {}
    image = build.get("image") if isinstance(build, dict) else None
    if not isinstance(region, str) or not region:
        region = _primary_from_region_files(root)
    if region is None or region not in REGIONS:
        raise ConfigError("the deploy lock machine needs primary_region", where="fly.toml")
    if not isinstance(image, str) or not image:
        raise ConfigError("the deploy lock machine needs [build] image", where="fly.toml")
    fleet = {p.stem for p in (root / REGIONS_DIR).glob("*.toml")}
    elsewhere = [code for code in REGIONS if code not in fleet and code not in RETIRED]
    return nearest_region(region, elsewhere) or region, image


def _primary_from_region_files(root: Path) -> str | None:
    """Return the one region whose file says ``role = "primary"`` (fly.toml left it out)."""
    found = primary_roles(root, sorted(p.stem for p in (root / REGIONS_DIR).glob("*.toml")))
    return found[0] if len(found) == 1 else None


def with_ttl(settings: Settings, ttl_s: float) -> Settings:
    """Return ``settings`` with another lock TTL (tests and ``invoke.yaml``)."""
    return replace(settings, lock_ttl_s=ttl_s)
