"""The edge proxy: one loopback port that plays ``https://<app>.fly.dev``.

The app comes from the ``Host`` header (``<app>.fly.dev`` or ``<app>.localhost``) or, when
it names none, the only app there is. Requests go to started, uncordoned machines with a
TCP service (a machine without one, such as a worker, gets no traffic), whose service checks
all pass (a machine without service checks passes; top-level checks do not
route, as on Fly), outside regions that are down,
picked at random (Fly picks by load and distance); ``fly-prefer-region`` narrows to a
region when it has one, and ``fly-force-instance-id`` picks one machine (started and
reachable, checks aside; also while it is stopping, until its process exits).
A machine that refuses the connection is skipped for the next one. An answer with a
``fly-replay`` header (``instance=<id>``, ``region=<code>`` or ``elsewhere=true``) is
replayed once to that target, with ``fly-replay-src``, as Fly's proxy does; a target that
cannot be reached leaves the original answer. Request bodies up to 1 MiB are held for
that; larger ones stream straight through, as responses always do. Responses carry
``fly-region`` and ``fly-machine-id`` (local only) so tests and drills can see who
answered; 503 ``{"error": "no machine available"}`` when nobody can.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import AsyncIterator

import httpx
from starlette.types import Receive, Scope, Send

from orchestrator.localfly import sim
from orchestrator.localfly.checks import service_check_names
from orchestrator.localfly.core import LocalFly
from orchestrator.localfly.state import MachineRecord
from orchestrator.localfly.util import ulid

__all__ = ["EdgeProxy"]

_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"trailers",
    b"transfer-encoding",
    b"upgrade",
}
MAX_ATTEMPTS = 3
# States in which a machine's process may still run, finishing what it was doing.
_STOPPING = frozenset({"stopping", "replacing"})
# Bodies up to this size are held, so a refused connection or a fly-replay can resend them.
REPLAY_LIMIT = 1 << 20


def _serves(m: MachineRecord) -> bool:
    """Tell whether Fly's proxy sends the app's traffic to ``m``: it has a TCP service.

    A machine without services (a worker process group) gets no traffic on Fly.
    """
    return any(
        isinstance(svc, dict) and str(svc.get("protocol") or "tcp") == "tcp"
        for svc in m.config.get("services") or []
    )


class EdgeProxy:
    """An ASGI app that forwards app traffic to machine processes."""

    def __init__(self, fly: LocalFly) -> None:
        self.fly = fly
        self._client: httpx.AsyncClient | None = None
        self._rng = random.Random()
        # (app, primary region) -> (the fleet's generation, its simulated leader)
        self._leaders: dict[tuple[str, str], tuple[int, str | None]] = {}

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(60.0, connect=2.0),
                limits=httpx.Limits(
                    max_connections=2000, max_keepalive_connections=200, keepalive_expiry=5.0
                ),
                trust_env=False,
                follow_redirects=False,
            )
        return self._client

    async def aclose(self) -> None:
        """Close upstream connections."""
        if self._client is not None:
            await self._client.aclose()

    def app_for(self, host: str) -> str | None:
        """Return the app a ``Host`` header names, or the only app."""
        name = host.split(":", 1)[0].lower()
        for suffix in (".fly.dev", ".localhost", ".internal"):
            if name.endswith(suffix) and name[: -len(suffix)] in self.fly.apps:
                return name[: -len(suffix)]
        return next(iter(self.fly.apps)) if len(self.fly.apps) == 1 else None

    def _reachable(self, m: MachineRecord, *, stopping: bool = False) -> bool:
        rt = self.fly.runtime.get(m.id)
        return (
            (m.state == "started" or (stopping and m.state in _STOPPING))
            and m.region not in self.fly.outages
            and rt is not None
            and rt.proc is not None
            and rt.proc.running
            and not rt.frozen
            and (m.port is not None or self.fly.profile.simulated)
        )

    def _healthy(self, m: MachineRecord) -> bool:
        # Fly's proxy routes on service checks only; top-level checks are informational.
        names = service_check_names(m.config)
        if not names:
            return True
        rt = self.fly.runtime.get(m.id)
        if rt is None:
            return False
        results = [rt.checks.get(name) for name in names]
        return all(r is not None and r.status == "passing" for r in results)

    def _sim_leader(self, m: MachineRecord) -> str | None:
        """Return the simulated machine that answers as its app's primary, as the app elects one.

        The first started machine (by id) in the configured primary region leads, so a simulated
        fleet, like a real one, never has two machines claiming the primary role.
        """
        env = m.config.get("env") or {}
        primary = str(env.get("PRIMARY_REGION", m.region))
        key = (m.app, primary)
        cached = self._leaders.get(key)
        if cached is not None and cached[0] == self.fly.generation:
            return cached[1]
        leader = min(
            (
                other.id
                for other in self.fly.machines.values()
                if other.app == m.app and other.region == primary and other.state == "started"
            ),
            default=None,
        )
        self._leaders[key] = (self.fly.generation, leader)
        return leader

    def candidates(self, app: str, headers: dict[str, str]) -> list[MachineRecord]:
        """Return the machines to try, in order."""
        forced = headers.get("fly-force-instance-id")
        if forced:
            m = self.fly.machines.get(forced)
            # Asked by id, a machine is reachable until its process exits, as over Fly's
            # private network: a primary draining on SIGTERM still serves its followers.
            reachable = m is not None and m.app == app and self._reachable(m, stopping=True)
            return [m] if m is not None and reachable else []
        pool = [
            m
            for m in self.fly.machines.values()
            if m.app == app
            and not m.cordoned
            and _serves(m)
            and self._reachable(m)
            and self._healthy(m)
        ]
        prefer = headers.get("fly-prefer-region")
        if prefer:
            local = [m for m in pool if m.region == prefer]
            pool = local or pool
        pool.sort(key=lambda m: m.seq)
        if not pool:
            return []
        # A random first pick, not a shared round-robin counter: two machines probing each
        # other in lockstep through a counter would each always be sent to themselves.
        k = self._rng.randrange(len(pool))
        return pool[k:] + pool[:k]

    def replay_targets(self, app: str, replay: str, source: MachineRecord) -> list[MachineRecord]:
        """Return where a ``fly-replay`` answer asks the request to go instead."""
        fields = dict(
            part.strip().split("=", 1)
            for part in replay.replace(",", ";").split(";")
            if "=" in part
        )
        if fields.get("instance"):
            m = self.fly.machines.get(fields["instance"])
            ok = m is not None and m.app == app and m.id != source.id and self._reachable(m)
            return [m] if ok and m is not None else []
        pool = [m for m in self.candidates(app, {}) if m.id != source.id]
        if fields.get("region"):
            return [m for m in pool if m.region == fields["region"]]
        return pool if fields.get("elsewhere") == "true" else []

    async def _read_body(self, receive: Receive) -> tuple[bytes, AsyncIterator[bytes] | None]:
        """Read up to REPLAY_LIMIT bytes of the body; return them and a stream of the rest."""
        chunks: list[bytes] = []
        size = 0
        while size <= REPLAY_LIMIT:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks), None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if not message.get("more_body"):
                return b"".join(chunks), None

        async def rest() -> AsyncIterator[bytes]:
            yield b"".join(chunks)
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return
                yield message.get("body", b"")
                if not message.get("more_body"):
                    return

        return b"", rest()

    async def _first_answer(
        self,
        machines: list[MachineRecord],
        method: str,
        path: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterator[bytes] | None,
    ) -> tuple[httpx.Response, MachineRecord] | None:
        """Send to the first machine that takes the connection; None if nobody does."""
        for m in machines[:MAX_ATTEMPTS]:
            if self.fly.profile.simulated:
                request = httpx.Request(method, f"http://sim.invalid{path}")
                healthy = not sim.fails_health(m.config, m.region)
                return sim.answer(m, method, path, request, healthy, self._sim_leader(m)), m
            request = self._http().build_request(
                method, f"http://127.0.0.1:{m.port}{path}", headers=headers, content=body
            )
            try:
                return await self._http().send(request, stream=True), m
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if not isinstance(body, bytes | None):
                    return None  # a streamed body cannot be sent twice
                continue
            except httpx.HTTPError:
                return None
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Forward one request (replaying it once when the app answers ``fly-replay``)."""
        raw: list[tuple[bytes, bytes]] = list(scope.get("headers") or [])
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}
        app = self.app_for(headers.get("host", ""))
        request_id = ulid()
        if app is None:
            await _error(send, 404, "unknown app: send Host: <app>.fly.dev", request_id)
            self.fly.stats.record("proxy", 404)
            return
        method: str = scope["method"]
        query = scope.get("query_string", b"").decode("latin-1")
        target = scope.get("raw_path") or scope["path"].encode()
        path = target.decode("latin-1") + (f"?{query}" if query else "")
        client = scope.get("client") or ("127.0.0.1", 0)
        forward = [(k, v) for k, v in raw if k.lower() not in _HOP]
        forward += [
            (b"fly-client-ip", str(client[0]).encode()),
            (b"x-forwarded-for", str(client[0]).encode()),
            (b"x-forwarded-proto", b"http"),
            (b"fly-request-id", request_id.encode()),
            (b"via", b"1.1 fly.io"),
        ]
        body: bytes | AsyncIterator[bytes] | None = None
        if "content-length" in headers or "transfer-encoding" in headers:
            head, rest = await self._read_body(receive)
            body = rest if rest is not None else head
        answer = await self._first_answer(
            self.candidates(app, headers), method, path, forward, body
        )
        if answer is not None and isinstance(body, bytes | None):
            upstream, m = answer
            replay = upstream.headers.get("fly-replay")
            targets = self.replay_targets(app, replay, m) if replay else []
            if targets:
                source = f"instance={m.id};region={m.region};t={int(time.time() * 1e6)}"
                again = await self._first_answer(
                    targets, method, path, [*forward, (b"fly-replay-src", source.encode())], body
                )
                if again is not None:
                    await upstream.aclose()
                    answer = again
        if answer is None:
            self.fly.stats.record("proxy", 503)
            await _error(send, 503, "no machine available", request_id)
            return
        await self._relay(send, *answer, request_id)

    async def _relay(
        self, send: Send, upstream: httpx.Response, m: MachineRecord, request_id: str
    ) -> None:
        try:
            out = [(k, v) for k, v in upstream.headers.raw if k.lower() not in _HOP]
            out += [
                (b"fly-region", m.region.encode()),
                (b"fly-machine-id", m.id.encode()),
                (b"fly-request-id", request_id.encode()),
                (b"via", b"1.1 fly.io"),
            ]
            await send(
                {"type": "http.response.start", "status": upstream.status_code, "headers": out}
            )
            async for chunk in upstream.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            self.fly.stats.record("proxy", upstream.status_code)
        except httpx.HTTPError:
            # The machine died mid-response; returning unfinished closes the connection.
            self.fly.stats.record("proxy", 0)
        finally:
            await upstream.aclose()


async def _error(send: Send, status: int, message: str, request_id: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"fly-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
