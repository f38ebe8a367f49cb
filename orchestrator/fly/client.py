"""Talk to the Fly Machines REST API (Fly.io or the embedded local Fly) over one httpx client.

Every method is ``async`` and maps Fly's answers once, here (the judging lives in
`orchestrator.fly.wire`):

- a 2xx body becomes a typed model from `orchestrator.fly.models`;
- an error status becomes a `FlyAPIError` subclass (`api_error_for_status`) carrying Fly's
  ``error``/``message`` text, its ``status`` string and the ``fly-request-id`` header;
- an httpx transport failure becomes `FlyTransportError` ``from`` the httpx error.

Transient failures are retried by one stamina policy (`is_transient` says which): transport
errors, 429 (after waiting at least ``Retry-After``), 5xx, and 408 except the 408 of ``/wait``,
which means "not yet" and is raised at once as `FlyWaitTimeout`. Every attempt first takes a
token from the client-side `RateLimiter`, which keeps to Fly's documented limits.

Paths carry the ``/v1`` prefix; the base URL does not. The token only ever travels in the
``Authorization`` header: it is kept in a `Token` and scrubbed from every error message.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import httpx

from orchestrator.errors import (
    FlyAPIError,
    FlyConflict,
    FlyLeaseHeld,
    FlyNotFound,
    FlyRateLimited,
    FlyTransportError,
)
from orchestrator.fly.models import (
    App,
    AppSecret,
    ExecResult,
    ExtendResult,
    Guest,
    Lease,
    Machine,
    MachineConfig,
    MachineEvent,
    ProcessStat,
    Region,
    Snapshot,
    Volume,
    WaitResult,
)
from orchestrator.fly.ratelimit import SYSTEM_CLOCK, Clock, RateLimiter
from orchestrator.fly.wire import (
    CHECK_SCALE_HEADER,
    NEXT_CURSOR_HEADER,
    NONCE_HEADER,
    REQUEST_ID_HEADER,
    RETRYING,
    decode_any,
    decode_array,
    decode_object,
    error_from_response,
    scrub,
    unexpected_answer,
)
from orchestrator.settings import Token

__all__ = ["CONTROL_ROLE_KEY", "LOCK_ROLE", "CallTrace", "FlyClient", "trace_calls"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CallTrace:
    """What the calls made inside `trace_calls` went through.

    Attributes:
        ambiguous: some call may have been carried out by Fly without us seeing its answer
            (a dropped connection, a timeout, a 5xx), and was sent again or failed: a
            non-idempotent call (a volume create) may then have been done twice.
    """

    ambiguous: bool = False


_TRACE: ContextVar[CallTrace | None] = ContextVar("fly_call_trace", default=None)


@contextlib.contextmanager
def trace_calls() -> Iterator[CallTrace]:
    """Trace the calls this task makes in the ``with`` block (tasks' traces stay apart)."""
    trace = CallTrace()
    token = _TRACE.set(trace)
    try:
        yield trace
    finally:
        _TRACE.reset(token)


_USER_AGENT = "fly-orchestrator/0.1"
# The metadata key that marks the orchestrator's own control machines, and the deploy lock's role.
CONTROL_ROLE_KEY = "orch_role"
LOCK_ROLE = "deploy-lock"
# Room on top of a long poll's own timeout, so httpx does not give up before Fly answers.
_LONG_POLL_MARGIN_S = 15.0

_Query = list[tuple[str, str | int | float | bool | None]]


@dataclass(slots=True)
class _Call:
    """One logical API call, possibly sent several times."""

    method: str
    path: str
    action: str
    app: str
    scope: str
    params: _Query | None
    body: Any
    headers: dict[str, str]
    timeout: float | None
    # Set by a 429 attempt; the next attempt waits this long before going.
    retry_after: float = 0.0
    # Set once an attempt may have been carried out by Fly without us seeing the answer (a
    # timeout, a dropped connection, a 5xx or 408): a later attempt's 404/409 may then be the
    # echo of our own earlier success, which the non-idempotent calls check for.
    ambiguous: bool = False


class FlyClient:
    """Call the Fly Machines API: apps, machines, leases, metadata, volumes and regions.

    Args:
        base_url: the API's base URL without ``/v1`` (``https://api.machines.dev``, or the local
            Fly's loopback URL). Validate user input with `settings.validate_base_url` first.
        token: the API token (a `Token` or a plain string). A token starting ``FlyV1 `` (a
            macaroon) is sent as is, any other as ``Bearer <token>``, as fly-go does.
        timeout: seconds for connect/read/write of ordinary requests; long polls (``/wait``,
            ``exec``) get their own timeout plus a margin.
        transport: an httpx transport (tests pass ``httpx.MockTransport``).
        rate_limit: ``True`` for Fly's limits, ``False`` to send as fast as asked, or a
            `RateLimiter` to share between clients or to drive with a test clock.
        clock: where time comes from for rate limiting and ``Retry-After`` waits (tests inject
            one so nothing really sleeps); defaults to the limiter's clock, else real time.
    """

    def __init__(
        self,
        base_url: str,
        token: Token | str,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        rate_limit: bool | RateLimiter = True,
        clock: Clock | None = None,
    ) -> None:
        self._token = token if isinstance(token, Token) else Token(token)
        self._base_url = base_url.rstrip("/")
        if isinstance(rate_limit, RateLimiter):
            self._limiter = rate_limit
            self._clock = clock or rate_limit.clock
        else:
            self._clock = clock or SYSTEM_CLOCK
            self._limiter = RateLimiter(clock=self._clock, enabled=rate_limit)
        secret = self._token.reveal()
        auth = secret if secret.startswith("FlyV1 ") else f"Bearer {secret}"
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            headers={"Authorization": auth, "User-Agent": _USER_AGENT},
            timeout=timeout,
            transport=transport,
            # A wave's 64 steps each hold a /wait long poll while the next ones' leases,
            # refreshes and releases go out: httpx's 100 connections ran out on a starved host
            # and a call timed out waiting for one (PoolTimeout). Idle ones kept: the default 20
            # (httpcore scans every connection it keeps on each request).
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=20),
        )
        self._api_calls = 0
        self._check_scale = 1.0

    def __repr__(self) -> str:
        return f"FlyClient(base_url={self._base_url!r}, token={self._token!r})"

    @property
    def base_url(self) -> str:
        """Return the API's base URL (without ``/v1``)."""
        return self._base_url

    @property
    def api_calls(self) -> int:
        """Return the number of HTTP requests sent so far, retries included (for benchmarks)."""
        return self._api_calls

    @property
    def check_scale(self) -> float:
        """Return how the backend scales configured check grace periods and intervals.

        1 on Fly.io; the embedded local Fly runs checks at its profile's scale (a tenth in
        tests, the time factor in benchmarks) and says so on every answer.
        """
        return self._check_scale

    @property
    def rate_limiter(self) -> RateLimiter:
        """Return the limiter spacing this client's requests."""
        return self._limiter

    async def __aenter__(self) -> FlyClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # -- apps -------------------------------------------------------------------------------

    async def create_app(
        self, name: str, *, org_slug: str = "personal", idempotency_key: str | None = None
    ) -> App:
        """Create an app; ``idempotency_key`` makes a retried create return the same app.

        Fly answers 201 with only ``{id, created_at}``; the returned `App` carries the name and
        organization that were asked for.
        """
        body: dict[str, Any] = {"name": name, "org_slug": org_slug}
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        resp = await self._call("POST", "/v1/apps", "apps.create", name, body=body)
        data = {"name": name, "organization": {"slug": org_slug}, **decode_object(resp)}
        return App.from_api(data)

    async def get_app(self, name: str) -> App:
        """Return an app (`FlyNotFound` when it does not exist)."""
        resp = await self._call("GET", f"/v1/apps/{_seg(name)}", "apps.get", name)
        return App.from_api(decode_object(resp))

    # -- machines ---------------------------------------------------------------------------

    async def list_machines(
        self,
        app: str,
        *,
        region: str | None = None,
        state: str | Sequence[str] | None = None,
        metadata: Mapping[str, str] | None = None,
        include_deleted: bool = False,
        summary: bool = False,
        limit: int | None = None,
    ) -> list[Machine]:
        """List an app's machines, following ``fly-next-cursor`` pages to the end.

        Args:
            region: only machines in this region.
            state: only machines in this state or these states (sent comma-joined).
            metadata: only machines whose metadata has every ``key=value`` given (sent as
                repeated ``metadata.KEY=VALUE`` filters, which Fly ANDs).
            include_deleted: include destroyed machines.
            summary: omit config, checks and events (cheaper for large fleets).
            limit: page size (1-1000); enables pagination on Fly's side.
        """
        params: _Query = []
        if region:
            params.append(("region", region))
        if state:
            params.append(("state", state if isinstance(state, str) else ",".join(state)))
        for key, value in (metadata or {}).items():
            params.append((f"metadata.{key}", value))
        if include_deleted:
            params.append(("include_deleted", "true"))
        if summary:
            params.append(("summary", "true"))
        if limit is not None:
            params.append(("limit", limit))
        path = f"/v1/apps/{_seg(app)}/machines"
        machines: list[Machine] = []
        seen: set[str] = set()
        # The orchestrator's own control machines (the deploy lock) are not the app's fleet:
        # only a caller that asks for them by their role sees them.
        hide_control = CONTROL_ROLE_KEY not in (metadata or {})
        cursor: str | None = None
        while True:
            page = [*params, ("cursor", cursor)] if cursor else params
            resp = await self._call("GET", path, "machines.list", app, params=page)
            machines.extend(
                Machine.from_api(m) for m in decode_array(resp) if isinstance(m, Mapping)
            )
            cursor = resp.headers.get(NEXT_CURSOR_HEADER) or None
            # A repeated cursor would loop forever; treat it as the end.
            if cursor is None or cursor in seen:
                if hide_control:
                    return [m for m in machines if CONTROL_ROLE_KEY not in m.config.metadata]
                return machines
            seen.add(cursor)

    async def create_machine(
        self,
        app: str,
        config: MachineConfig | Mapping[str, Any],
        *,
        region: str,
        name: str | None = None,
        lease_ttl: int | None = None,
        skip_launch: bool = False,
        min_secrets_version: int | None = None,
    ) -> Machine:
        """Create a machine; with ``lease_ttl`` it is leased from birth (``Machine.nonce``).

        ``min_secrets_version`` (as flyctl sends it) makes Fly boot the machine with at least
        that version of the app's secrets, so a secret set just before is not missed.

        Retried on 408/429/5xx like every call. A 408 or 5xx may come after Fly made the
        machine, so callers tag creates with a launch id in metadata and look it up before
        creating again (the executor does).
        """
        body: dict[str, Any] = {"config": _config(config), "region": region}
        if name is not None:
            body["name"] = name
        if lease_ttl is not None:
            body["lease_ttl"] = int(lease_ttl)
        if skip_launch:
            body["skip_launch"] = True
        if min_secrets_version is not None:
            body["min_secrets_version"] = int(min_secrets_version)
        resp = await self._call(
            "POST", f"/v1/apps/{_seg(app)}/machines", "machines.create", app, body=body
        )
        return Machine.from_api(decode_object(resp))

    async def get_machine(self, app: str, machine_id: str) -> Machine:
        """Return a machine (rate limited at Fly's 5/s, burst 10)."""
        resp = await self._call("GET", _m(app, machine_id), "machine.get", app, machine_id)
        return Machine.from_api(decode_object(resp))

    async def update_machine(
        self,
        app: str,
        machine_id: str,
        config: MachineConfig | Mapping[str, Any],
        *,
        current_version: str | None = None,
        nonce: str | None = None,
        skip_launch: bool = False,
        min_secrets_version: int | None = None,
    ) -> Machine:
        """Replace a machine's config (send the FULL config); Fly makes a new version.

        ``current_version`` guards against a concurrent change: a stale one is `FlyConflict`.
        ``min_secrets_version``: as for `create_machine`.
        """
        body: dict[str, Any] = {"config": _config(config)}
        if current_version is not None:
            body["current_version"] = current_version
        if skip_launch:
            body["skip_launch"] = True
        if min_secrets_version is not None:
            body["min_secrets_version"] = int(min_secrets_version)
        call = _new_call("POST", _m(app, machine_id), "machine.update", app, machine_id, body=body)
        call.headers = {NONCE_HEADER: nonce} if nonce else {}
        try:
            resp = await self._send(call)
        except FlyConflict as exc:
            # Our first attempt may have been applied before its answer was lost; the retry
            # then meets the version it made. That machine is the answer we never got.
            if call.ambiguous and current_version is not None:
                machine = await self.get_machine(app, machine_id)
                if machine.version != current_version and _same_config(machine, body["config"]):
                    return machine
            if current_version is None and not isinstance(exc, FlyLeaseHeld):
                # Without a version guard the only conflict an update can meet is the lease
                # (the shape of the request says so, not the wording of the answer).
                raise _lease_held(exc) from exc
            raise
        return Machine.from_api(decode_object(resp))

    async def destroy_machine(
        self, app: str, machine_id: str, *, force: bool = False, nonce: str | None = None
    ) -> None:
        """Destroy a machine; ``force`` kills it even when it is running.

        Sends ``force=true`` as the OpenAPI spec names the parameter and ``kill=true`` as
        fly-go's ``Destroy`` (flaps_machines.go) does, which is what Fly acts on.
        """
        params: _Query | None = [("force", "true"), ("kill", "true")] if force else None
        call = _new_call(
            "DELETE",
            _m(app, machine_id),
            "machine.destroy",
            app,
            machine_id,
            params=params,
            nonce=nonce,
        )
        try:
            await self._send(call)
        except FlyNotFound:
            if not call.ambiguous:
                raise
            # An earlier attempt destroyed it and its answer was lost: done.

    async def start_machine(self, app: str, machine_id: str, *, nonce: str | None = None) -> None:
        """Start a stopped machine."""
        await self._action(app, machine_id, "start", nonce=nonce)

    async def stop_machine(
        self,
        app: str,
        machine_id: str,
        *,
        signal: str | None = None,
        timeout: float | str | None = None,
        nonce: str | None = None,
    ) -> None:
        """Stop a machine, optionally with a signal and a grace ``timeout`` (seconds or "10s")."""
        body: dict[str, Any] = {}
        if signal is not None:
            body["signal"] = signal
        if timeout is not None:
            body["timeout"] = timeout if isinstance(timeout, str) else f"{timeout:g}s"
        await self._action(app, machine_id, "stop", nonce=nonce, body=body or None)

    async def restart_machine(self, app: str, machine_id: str, *, nonce: str | None = None) -> None:
        """Restart a machine in place."""
        await self._action(app, machine_id, "restart", nonce=nonce)

    async def cordon_machine(self, app: str, machine_id: str, *, nonce: str | None = None) -> None:
        """Take a machine out of proxy routing (``Machine.cordoned``) without stopping it."""
        await self._action(app, machine_id, "cordon", nonce=nonce)

    async def uncordon_machine(
        self, app: str, machine_id: str, *, nonce: str | None = None
    ) -> None:
        """Put a cordoned machine back into proxy routing."""
        await self._action(app, machine_id, "uncordon", nonce=nonce)

    async def wait_machine(
        self,
        app: str,
        machine_id: str,
        *,
        state: str = "started",
        version: str | None = None,
        timeout: float = 60,
    ) -> WaitResult:
        """Long-poll until a machine reaches ``state`` (at ``version``, when given).

        ``timeout`` is clamped to 1-60 seconds, as fly-go does. When it runs out Fly answers 408,
        raised at once (not retried) as `FlyWaitTimeout`; call again to keep waiting.
        """
        seconds = max(1, min(60, math.ceil(timeout)))
        params: _Query = [("state", state), ("timeout", seconds)]
        if version is not None:
            params.append(("version", version))
        resp = await self._call(
            "GET",
            f"{_m(app, machine_id)}/wait",
            "machine.wait",
            app,
            machine_id,
            params=params,
            timeout=seconds + _LONG_POLL_MARGIN_S,
        )
        return WaitResult.from_api(decode_object(resp))

    async def list_versions(self, app: str, machine_id: str) -> list[tuple[str, dict[str, Any]]]:
        """Return a machine's versions, newest first, each as ``(version, user_config)``.

        Fly keeps the config of every version a machine had, which is what lets a rollback
        find a release's configs from any host.
        """
        resp = await self._call(
            "GET", f"{_m(app, machine_id)}/versions", "machine.versions", app, machine_id
        )
        out: list[tuple[str, dict[str, Any]]] = []
        for item in decode_array(resp):
            if not isinstance(item, Mapping):
                continue
            config = item.get("user_config")
            if isinstance(config, Mapping):
                out.append((str(item.get("version") or ""), dict(config)))
        return out

    # -- leases -----------------------------------------------------------------------------

    async def get_lease(self, app: str, machine_id: str) -> Lease | None:
        """Return the machine's current lease, or ``None`` when it has none."""
        try:
            resp = await self._call(
                "GET", f"{_m(app, machine_id)}/lease", "machine.lease.get", app, machine_id
            )
        except FlyNotFound:
            return None
        lease = Lease.from_api(decode_object(resp))
        if not (lease.nonce or lease.owner or lease.expires_at):
            return None
        return lease

    async def acquire_lease(
        self,
        app: str,
        machine_id: str,
        *,
        ttl: int = 13,
        description: str | None = None,
        nonce: str | None = None,
    ) -> Lease:
        """Take the machine's lease for ``ttl`` seconds, or refresh ours by passing its ``nonce``.

        Sends the TTL as ``?ttl=N`` as fly-go does (what Fly reads) and, with the description,
        in the JSON body as the OpenAPI spec says. Reads both the documented
        ``{"status", "data": {...}}`` answer and the spec's flat ``Lease``. Any 409 is
        `FlyLeaseHeld`: someone else holds it.
        """
        body: dict[str, Any] = {"ttl": int(ttl)}
        if description is not None:
            body["description"] = description
        path = f"{_m(app, machine_id)}/lease"
        call = _new_call(
            "POST",
            path,
            "machine.lease.acquire",
            app,
            machine_id,
            params=[("ttl", int(ttl))],
            body=body,
            nonce=nonce,
        )
        try:
            resp = await self._send(call)
        except FlyConflict as exc:
            if call.ambiguous and nonce is None and description:
                # The lease may be the one our lost attempt took: same description, so ours.
                held = await self.get_lease(app, machine_id)
                if held is not None and held.nonce and held.description == description:
                    return held
            if isinstance(exc, FlyLeaseHeld):
                raise
            raise _lease_held(exc) from exc
        lease = Lease.from_api(decode_object(resp))
        if not lease.nonce:
            raise FlyAPIError(
                "lease answer carried no nonce",
                status_code=resp.status_code,
                request_id=resp.headers.get(REQUEST_ID_HEADER),
                method="POST",
                path=path,
            )
        return lease

    async def release_lease(self, app: str, machine_id: str, nonce: str) -> None:
        """Release our lease on a machine."""
        path = f"{_m(app, machine_id)}/lease"
        call = _new_call("DELETE", path, "machine.lease.release", app, machine_id, nonce=nonce)
        try:
            await self._send(call)
        except (FlyNotFound, FlyConflict):
            if not call.ambiguous:
                raise
            # An earlier attempt released it (its answer was lost); the lease is gone or new.

    # -- metadata ---------------------------------------------------------------------------

    async def get_metadata(self, app: str, machine_id: str) -> dict[str, str]:
        """Return a machine's metadata."""
        resp = await self._call(
            "GET", f"{_m(app, machine_id)}/metadata", "machine.metadata.get", app, machine_id
        )
        return {str(k): str(v) for k, v in decode_object(resp).items() if v is not None}

    async def update_metadata(
        self,
        app: str,
        machine_id: str,
        values: Mapping[str, str | None],
        *,
        machine_version: str | None = None,
        nonce: str | None = None,
    ) -> None:
        """Set several keys at once (``PATCH``); ``None`` deletes a key, others are left alone.

        A stale ``machine_version`` is `FlyPreconditionFailed` (412).
        """
        body: dict[str, Any] = {"metadata": dict(values)}
        if machine_version is not None:
            body["machine_version"] = machine_version
        await self._call(
            "PATCH",
            f"{_m(app, machine_id)}/metadata",
            "machine.metadata.update",
            app,
            machine_id,
            body=body,
            nonce=nonce,
        )

    async def set_metadata(
        self, app: str, machine_id: str, key: str, value: str, *, nonce: str | None = None
    ) -> None:
        """Set one metadata key."""
        await self._call(
            "POST",
            f"{_m(app, machine_id)}/metadata/{_seg(key)}",
            "machine.metadata.set",
            app,
            machine_id,
            body={"value": value},
            nonce=nonce,
        )

    async def delete_metadata(
        self, app: str, machine_id: str, key: str, *, nonce: str | None = None
    ) -> None:
        """Delete one metadata key."""
        await self._call(
            "DELETE",
            f"{_m(app, machine_id)}/metadata/{_seg(key)}",
            "machine.metadata.delete",
            app,
            machine_id,
            nonce=nonce,
        )

    # -- inspection -------------------------------------------------------------------------

    async def exec_machine(
        self, app: str, machine_id: str, command: Sequence[str], *, timeout: int = 30
    ) -> ExecResult:
        """Run a command inside a machine and return its exit code and output."""
        body = {"command": list(command), "timeout": int(timeout)}
        resp = await self._call(
            "POST",
            f"{_m(app, machine_id)}/exec",
            "machine.exec",
            app,
            machine_id,
            body=body,
            timeout=timeout + _LONG_POLL_MARGIN_S,
        )
        return ExecResult.from_api(decode_object(resp))

    async def list_processes(self, app: str, machine_id: str) -> list[ProcessStat]:
        """Return the processes running in a machine (``GET .../ps``), by pid."""
        resp = await self._call("GET", f"{_m(app, machine_id)}/ps", "machine.ps", app, machine_id)
        rows = [ProcessStat.from_api(p) for p in decode_array(resp) if isinstance(p, Mapping)]
        return sorted(rows, key=lambda p: p.pid)

    async def list_events(
        self, app: str, machine_id: str, *, limit: int | None = None
    ) -> list[MachineEvent]:
        """Return a machine's latest events, newest first (Fly's default 20, at most 50)."""
        params: _Query | None = [("limit", limit)] if limit is not None else None
        resp = await self._call(
            "GET",
            f"{_m(app, machine_id)}/events",
            "machine.events",
            app,
            machine_id,
            params=params,
        )
        return [MachineEvent.from_api(e) for e in decode_array(resp) if isinstance(e, Mapping)]

    # -- volumes ----------------------------------------------------------------------------

    async def list_volumes(self, app: str, *, summary: bool = False) -> list[Volume]:
        """List an app's volumes (destroyed ones stay listed as ``pending_destroy`` for a while)."""
        params: _Query | None = [("summary", "true")] if summary else None
        resp = await self._call(
            "GET", f"/v1/apps/{_seg(app)}/volumes", "volumes.list", app, params=params
        )
        return [Volume.from_api(v) for v in decode_array(resp) if isinstance(v, Mapping)]

    async def create_volume(
        self,
        app: str,
        *,
        name: str,
        region: str,
        size_gb: int,
        source_volume_id: str | None = None,
        snapshot_id: str | None = None,
        require_unique_zone: bool | None = None,
        snapshot_retention: int | None = None,
        encrypted: bool | None = None,
        compute: Guest | None = None,
    ) -> Volume:
        """Create a volume: empty, forked from ``source_volume_id``, or restored from a snapshot.

        ``compute`` is a placement hint (the machine's guest) so the volume lands on a host with
        room for the machine.
        """
        body: dict[str, Any] = {"name": name, "region": region, "size_gb": int(size_gb)}
        optional: dict[str, Any] = {
            "source_volume_id": source_volume_id,
            "snapshot_id": snapshot_id,
            "require_unique_zone": require_unique_zone,
            "snapshot_retention": snapshot_retention,
            "encrypted": encrypted,
            "compute": compute.to_api() if compute is not None else None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        resp = await self._call(
            "POST", f"/v1/apps/{_seg(app)}/volumes", "volumes.create", app, body=body
        )
        return Volume.from_api(decode_object(resp))

    async def get_volume(self, app: str, volume_id: str) -> Volume:
        """Return a volume."""
        resp = await self._call("GET", _v(app, volume_id), "volume.get", app, volume_id)
        return Volume.from_api(decode_object(resp))

    async def update_volume(
        self,
        app: str,
        volume_id: str,
        *,
        snapshot_retention: int | None = None,
        auto_backup_enabled: bool | None = None,
    ) -> Volume:
        """Change a volume's snapshot settings."""
        body: dict[str, Any] = {}
        if snapshot_retention is not None:
            body["snapshot_retention"] = int(snapshot_retention)
        if auto_backup_enabled is not None:
            body["auto_backup_enabled"] = auto_backup_enabled
        resp = await self._call(
            "PUT", _v(app, volume_id), "volume.update", app, volume_id, body=body
        )
        return Volume.from_api(decode_object(resp))

    async def destroy_volume(self, app: str, volume_id: str) -> Volume:
        """Destroy a volume; Fly soft-deletes it (``pending_destroy``) and returns it."""
        resp = await self._call("DELETE", _v(app, volume_id), "volume.destroy", app, volume_id)
        return Volume.from_api(decode_object(resp))

    async def extend_volume(self, app: str, volume_id: str, size_gb: int) -> ExtendResult:
        """Grow a volume to ``size_gb``; ``needs_restart`` says if its machine must restart.

        When an attempt's answer was lost and the retry is refused (the volume already has the
        size), the volume is read back: at ``size_gb`` or more, that is the answer
        (``needs_restart`` then false: Fly did not say).
        """
        call = _new_call(
            "PUT",
            f"{_v(app, volume_id)}/extend",
            "volume.extend",
            app,
            volume_id,
            body={"size_gb": int(size_gb)},
        )
        try:
            resp = await self._send(call)
        except FlyAPIError as exc:
            if not call.ambiguous or not 400 <= exc.status_code < 500:
                raise
            now = await self.get_volume(app, volume_id)
            if now.size_gb < int(size_gb):
                raise
            return ExtendResult(volume=now, needs_restart=False)
        data = decode_object(resp)
        volume = data.get("volume")
        return ExtendResult(
            volume=Volume.from_api(volume if isinstance(volume, Mapping) else {}),
            needs_restart=bool(data.get("needs_restart", False)),
        )

    async def list_snapshots(self, app: str, volume_id: str) -> list[Snapshot]:
        """List a volume's snapshots."""
        resp = await self._call(
            "GET", f"{_v(app, volume_id)}/snapshots", "volume.snapshots.list", app, volume_id
        )
        return [Snapshot.from_api(s) for s in decode_array(resp) if isinstance(s, Mapping)]

    async def create_snapshot(self, app: str, volume_id: str) -> None:
        """Start a snapshot of a volume; it is asynchronous, so poll `list_snapshots`."""
        await self._call(
            "POST", f"{_v(app, volume_id)}/snapshots", "volume.snapshots.create", app, volume_id
        )

    # -- secrets ----------------------------------------------------------------------------

    async def list_secrets(self, app: str) -> list[AppSecret]:
        """Return the app's secrets: names and digests (values are never asked for)."""
        resp = await self._call("GET", f"/v1/apps/{_seg(app)}/secrets", "secrets.list", app)
        data = decode_object(resp)
        rows = data.get("secrets")
        if not isinstance(rows, list):
            raise unexpected_answer(resp, "a {secrets: [...]} object")
        return sorted(
            (AppSecret.from_api(s) for s in rows if isinstance(s, Mapping)), key=lambda s: s.name
        )

    async def reveal_secrets(self, app: str, names: Sequence[str]) -> dict[str, str]:
        """Return the current values of ``names`` that exist (``show_secrets=true``).

        Only for putting values back after a failed rollout; the caller keeps them in memory.
        A token without the permission to read values gets `FlyAuthError` or `FlyBadRequest`.
        """
        resp = await self._call(
            "GET",
            f"/v1/apps/{_seg(app)}/secrets",
            "secrets.list",
            app,
            params=[("show_secrets", "true")],
        )
        rows = decode_object(resp).get("secrets")
        wanted = set(names)
        found: dict[str, str] = {}
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, Mapping) and row.get("name") in wanted:
                value = row.get("value")
                if isinstance(value, str):
                    found[str(row["name"])] = value
        return found

    async def set_secrets(self, app: str, values: Mapping[str, str]) -> int:
        """Set several secrets as one change and return the app's new secrets version.

        Machines get the change only when they are next created or updated (pass the
        version as ``min_secrets_version``). A retry after a lost answer sets the same
        values again, which is harmless.
        """
        body = {"values": {str(k): str(v) for k, v in values.items()}}
        resp = await self._call(
            "POST", f"/v1/apps/{_seg(app)}/secrets", "secrets.update", app, body=body
        )
        return _secrets_version(resp)

    async def unset_secret(self, app: str, name: str) -> int | None:
        """Remove one secret; return the new secrets version (``None``: it did not exist).

        One call per name: the document types ``values`` as strings only, so a null (unset)
        in a batch update is not something it allows.
        """
        path = f"/v1/apps/{_seg(app)}/secrets/{_seg(name)}"
        call = _new_call("DELETE", path, "secrets.delete", app, name)
        try:
            resp = await self._send(call)
        except FlyNotFound:
            return None
        return _secrets_version(resp)

    # -- platform ---------------------------------------------------------------------------

    async def list_regions(self) -> list[Region]:
        """Return the platform's regions (``GET /v1/platform/regions``)."""
        resp = await self._call("GET", "/v1/platform/regions", "platform.regions", "")
        data = decode_any(resp)
        rows = data.get("regions") if isinstance(data, Mapping) else data
        if not isinstance(rows, list):
            raise unexpected_answer(resp, "a {nearest, regions} object")
        return [Region.from_api(r) for r in rows if isinstance(r, Mapping)]

    # -- plumbing ---------------------------------------------------------------------------

    async def _action(
        self,
        app: str,
        machine_id: str,
        verb: Literal["start", "stop", "restart", "cordon", "uncordon"],
        *,
        nonce: str | None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        await self._call(
            "POST",
            f"{_m(app, machine_id)}/{verb}",
            f"machine.{verb}",
            app,
            machine_id,
            body=body,
            nonce=nonce,
        )

    async def _call(
        self,
        method: str,
        path: str,
        action: str,
        app: str,
        scope: str = "",
        *,
        params: _Query | None = None,
        body: Any = None,
        nonce: str | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send one logical call with retries; return the 2xx response or raise mapped."""
        call = _new_call(
            method, path, action, app, scope, params=params, body=body, nonce=nonce, timeout=timeout
        )
        return await self._send(call)

    async def _send(self, call: _Call) -> httpx.Response:
        """Send ``call`` with retries (``call.ambiguous`` then says if an answer was lost)."""
        try:
            return await RETRYING(self._attempt, call)
        finally:
            trace = _TRACE.get()
            if trace is not None and call.ambiguous:
                trace.ambiguous = True

    async def _attempt(self, call: _Call) -> httpx.Response:
        if call.retry_after > 0:
            # stamina's own backoff comes on top, so the wait is at least Retry-After.
            wait, call.retry_after = call.retry_after, 0.0
            await self._clock.sleep(wait)
        await self._limiter.acquire(call.action, call.app, call.scope)
        self._api_calls += 1
        extra: dict[str, Any] = {}
        if call.timeout is not None:
            extra["timeout"] = call.timeout
        if call.body is not None:
            extra["json"] = call.body
        try:
            resp = await self._http.request(
                call.method, call.path, params=call.params, headers=call.headers, **extra
            )
        except httpx.HTTPError as exc:
            # A refused connection never reached Fly; anything later might have been acted on.
            if not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
                call.ambiguous = True
            detail = scrub(str(exc), self._token.reveal()) or "no detail"
            log.debug("%s %s failed: %s", call.method, call.path, type(exc).__name__)
            raise FlyTransportError(
                f"{call.method} {call.path}: {type(exc).__name__}: {detail}"
            ) from exc
        log.debug(
            "%s %s -> %d (fly-request-id %s)",
            call.method,
            call.path,
            resp.status_code,
            resp.headers.get(REQUEST_ID_HEADER, "-"),
        )
        scale = resp.headers.get(CHECK_SCALE_HEADER)
        if scale is not None:
            self._check_scale = _positive(scale, self._check_scale)
        if resp.is_success:
            return resp
        if resp.status_code >= 500 or resp.status_code == 408:
            call.ambiguous = True
        error = error_from_response(call.method, call.path, resp, secret=self._token.reveal())
        if isinstance(error, FlyRateLimited) and error.retry_after:
            call.retry_after = error.retry_after
        raise error


def _new_call(
    method: str,
    path: str,
    action: str,
    app: str,
    scope: str = "",
    *,
    params: _Query | None = None,
    body: Any = None,
    nonce: str | None = None,
    timeout: float | None = None,
) -> _Call:
    return _Call(
        method=method,
        path=path,
        action=action,
        app=app,
        scope=scope,
        params=params,
        body=body,
        headers={NONCE_HEADER: nonce} if nonce else {},
        timeout=timeout,
    )


def _lease_held(exc: FlyAPIError) -> FlyLeaseHeld:
    return FlyLeaseHeld(
        exc.message,
        status_code=exc.status_code,
        fly_status=exc.fly_status,
        request_id=exc.request_id,
        method=exc.method,
        path=exc.path,
    )


def _secrets_version(resp: httpx.Response) -> int:
    data = decode_object(resp)
    # "Version" is the deprecated spelling older answers carry.
    version = data.get("version", data.get("Version"))
    if not isinstance(version, int) or isinstance(version, bool):
        raise unexpected_answer(resp, "a secrets version")
    return version


def _positive(text: str, default: float) -> float:
    try:
        value = float(text)
    except ValueError:
        return default
    return value if 0 < value < float("inf") else default


def _same_config(machine: Machine, sent: Mapping[str, Any]) -> bool:
    """Tell whether a machine runs the config we sent (the parts Fly keeps as sent)."""
    raw = machine.config.raw
    return all(raw.get(key) == sent.get(key) for key in ("image", "env", "metadata"))


def _seg(value: str) -> str:
    """Quote a value for use as one path segment."""
    return quote(value, safe="")


def _m(app: str, machine_id: str) -> str:
    return f"/v1/apps/{_seg(app)}/machines/{_seg(machine_id)}"


def _v(app: str, volume_id: str) -> str:
    return f"/v1/apps/{_seg(app)}/volumes/{_seg(volume_id)}"


def _config(config: MachineConfig | Mapping[str, Any]) -> dict[str, Any]:
    return config.to_api() if isinstance(config, MachineConfig) else dict(config)
