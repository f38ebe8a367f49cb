"""The ASGI application: the Machines API routes, auth, and the per-call pipeline.

Every ``/v1`` call goes: bearer token (401) → route (404/405) → the profile's API latency
for its region → region outage (503 for calls that change or wait) → Fly's rate limits
(429 + Retry-After) → injected faults → the handler. Errors become Fly's body
``{"error": ..., "status": ...}``; an unexpected exception becomes a 500 with that body
and its traceback goes to the server log, never to the client. A client that closes the
connection before its answer (a cancelled call) is not an error: nothing is sent, nothing is
logged, and the call counts as :data:`CLIENT_CLOSED` (499, nginx's "client closed request").
Each call is counted in ``/_localfly/stats`` and written to ``requests.log``.

One server listens on two sockets; calls to the proxy's socket go to the edge proxy.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from orchestrator.localfly import actions, admin, apps, leases, machines, procs, secrets, volumes
from orchestrator.localfly.core import Call, LocalFly, json_response
from orchestrator.localfly.proxy import EdgeProxy
from orchestrator.localfly.ratelimit import RateLimiter
from orchestrator.localfly.regions import NEAREST
from orchestrator.localfly.stats import RequestLog
from orchestrator.localfly.util import ApiError, ulid

__all__ = ["CLIENT_CLOSED", "IMPLEMENTED_OPERATIONS", "ROUTES", "LocalFlyApp", "Route"]

log = logging.getLogger("orchestrator.localfly")
Handler = Callable[[LocalFly, Call], Awaitable[Response]]
MAX_BODY = 1 << 20
# The status counted (stats, requests.log) for a call whose client went away before its
# answer: nginx's "client closed request". Never sent: there is nobody to send it to.
CLIENT_CLOSED = 499
# Not a Fly header: health checks here run at the profile's scale of the configured grace
# period and interval (a tenth in `fast`, the time factor in `realistic`); a client times its
# check polls by it (`orchestrator.fly.wire.CHECK_SCALE_HEADER`; Fly.io's scale is 1).
CHECK_SCALE_HEADER = "localfly-check-scale"


@dataclass(frozen=True, slots=True)
class Route:
    """One API route.

    Attributes:
        method: the HTTP method.
        template: the path with ``{param}`` placeholders.
        operation: Fly's OpenAPI operation id (the name in stats, logs and fault rules).
        handler: the coroutine that answers it.
        pattern: the compiled template.
        control: a ``/_localfly`` route (no latency, limits or faults).
    """

    method: str
    template: str
    operation: str
    handler: Handler
    pattern: re.Pattern[str]
    control: bool = False


def _r(
    method: str, template: str, operation: str, handler: Handler, control: bool = False
) -> Route:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
    return Route(method, template, operation, handler, re.compile(f"^{regex}$"), control)


_M = "/v1/apps/{app_name}/machines/{machine_id}"
_V = "/v1/apps/{app_name}/volumes/{volume_id}"
_S = "/v1/apps/{app_name}/secrets/{secret_name}"
ROUTES: tuple[Route, ...] = (
    _r("GET", "/v1/apps", "Apps_list", apps.list_apps),
    _r("POST", "/v1/apps", "Apps_create", apps.create_app),
    _r("GET", "/v1/apps/{app_name}", "Apps_show", apps.get_app),
    _r("DELETE", "/v1/apps/{app_name}", "Apps_delete", apps.delete_app),
    _r("GET", "/v1/apps/{app_name}/machines", "Machines_list", machines.list_machines),
    _r("POST", "/v1/apps/{app_name}/machines", "Machines_create", machines.create_machine),
    _r("GET", _M, "Machines_show", machines.get_machine),
    _r("POST", _M, "Machines_update", machines.update_machine),
    _r("DELETE", _M, "Machines_delete", machines.destroy_machine),
    _r("POST", _M + "/start", "Machines_start", actions.start_machine),
    _r("POST", _M + "/stop", "Machines_stop", actions.stop_machine),
    _r("POST", _M + "/restart", "Machines_restart", actions.restart_machine),
    _r("POST", _M + "/suspend", "Machines_suspend", actions.suspend_machine),
    _r("POST", _M + "/signal", "Machines_signal", actions.signal_machine),
    _r("POST", _M + "/cordon", "Machines_cordon", actions.cordon),
    _r("POST", _M + "/uncordon", "Machines_uncordon", actions.uncordon),
    _r("GET", _M + "/wait", "Machines_wait", actions.wait_machine),
    _r("POST", _M + "/exec", "Machines_exec", actions.exec_machine),
    _r("GET", _M + "/ps", "Machines_list_processes", procs.list_processes),
    _r("GET", _M + "/lease", "Machines_show_lease", leases.get_lease),
    _r("POST", _M + "/lease", "Machines_create_lease", leases.acquire_lease),
    _r("DELETE", _M + "/lease", "Machines_release_lease", leases.release_lease),
    _r("GET", _M + "/metadata", "Machines_show_metadata", leases.get_metadata),
    _r("PATCH", _M + "/metadata", "Machines_update_metadata", leases.update_metadata),
    _r("PUT", _M + "/metadata", "Machines_update_metadata_deprecated", leases.update_metadata),
    _r("GET", _M + "/metadata/{key}", "Machines_get_metadata_key", leases.get_metadata_key),
    _r("POST", _M + "/metadata/{key}", "Machines_upsert_metadata", leases.set_metadata_key),
    _r("DELETE", _M + "/metadata/{key}", "Machines_delete_metadata", leases.delete_metadata_key),
    _r("GET", _M + "/events", "Machines_list_events", leases.list_events),
    _r("GET", _M + "/versions", "Machines_list_versions", leases.list_versions),
    _r("GET", "/v1/apps/{app_name}/volumes", "Volumes_list", volumes.list_volumes),
    _r("POST", "/v1/apps/{app_name}/volumes", "Volumes_create", volumes.create_volume),
    _r("GET", _V, "Volumes_get_by_id", volumes.get_volume),
    _r("PUT", _V, "Volumes_update", volumes.update_volume),
    _r("DELETE", _V, "Volume_delete", volumes.destroy_volume),
    _r("PUT", _V + "/extend", "Volumes_extend", volumes.extend_volume),
    _r("GET", _V + "/snapshots", "Volumes_list_snapshots", volumes.list_snapshots),
    _r("POST", _V + "/snapshots", "createVolumeSnapshot", volumes.create_snapshot),
    _r("GET", "/v1/apps/{app_name}/secrets", "Secrets_list", secrets.list_secrets),
    _r("POST", "/v1/apps/{app_name}/secrets", "Secrets_update", secrets.update_secrets),
    _r("GET", _S, "Secret_get", secrets.get_secret),
    _r("POST", _S, "Secret_create", secrets.set_secret),
    _r("DELETE", _S, "Secret_delete", secrets.delete_secret),
    _r("GET", "/v1/platform/regions", "Platform_regions_get", apps.list_regions),
    _r("GET", "/_localfly/faults", "localfly_faults_get", admin.get_faults, True),
    _r("PUT", "/_localfly/faults", "localfly_faults_put", admin.put_faults, True),
    _r("DELETE", "/_localfly/faults", "localfly_faults_delete", admin.clear_faults, True),
    _r("POST", "/_localfly/outage/{region}", "localfly_outage_start", admin.start_outage, True),
    _r("DELETE", "/_localfly/outage/{region}", "localfly_outage_end", admin.end_outage, True),
    _r("GET", "/_localfly/stats", "localfly_stats_get", admin.get_stats, True),
    _r("DELETE", "/_localfly/stats", "localfly_stats_reset", admin.reset_stats, True),
    _r("GET", "/_localfly/info", "localfly_info", admin.get_info, True),
)
IMPLEMENTED_OPERATIONS: tuple[str, ...] = tuple(
    sorted(r.operation for r in ROUTES if not r.control)
)


class _Dropped(Exception):
    """The fault control asked to drop this call's connection."""


class LocalFlyApp:
    """The ASGI entry point for both the API socket and the proxy socket."""

    def __init__(
        self, fly: LocalFly, token: str, request_log: RequestLog, proxy_port: int | None = None
    ) -> None:
        self.fly = fly
        self.request_log = request_log
        self.proxy = EdgeProxy(fly)
        self.proxy_port = proxy_port
        self._accepted = [f"Bearer {token}".encode(), f"FlyV1 {token}".encode()]
        self._check_scale = f"{fly.profile.check_scale:g}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope."""
        if scope["type"] != "http":
            return
        server = scope.get("server") or (None, None)
        if self.proxy_port is not None and server[1] == self.proxy_port:
            await self.proxy(scope, receive, send)
            return
        await self._api(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        for key, value in scope.get("headers") or []:
            if key.lower() == b"authorization":
                return any(hmac.compare_digest(value, ok) for ok in self._accepted)
        return False

    @staticmethod
    def match(method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """Return (route, path params, whether the path matched another method)."""
        seen = False
        for route in ROUTES:
            found = route.pattern.match(path)
            if found is None:
                continue
            if route.method == method:
                return route, found.groupdict(), True
            seen = True
        return None, {}, seen

    async def _api(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method, path = scope["method"], scope["path"]
        route, params, seen = self.match(method, path)
        operation = route.operation if route else "unmatched"
        dropped = closed = False
        response: Response | None = None
        request = Request(scope, receive)
        try:
            if not self._authorized(scope):
                raise ApiError(401, "unauthorized: send Authorization: Bearer <token>")
            if route is None:
                if seen:
                    raise ApiError(405, f"method {method} not allowed on {path}")
                raise ApiError(404, f"no such endpoint: {method} {path}")
            length = request.headers.get("content-length", "0")
            if length.isdigit() and int(length) > MAX_BODY:
                raise ApiError(413, "request body too large")
            response = await self._dispatch(route, Call(request, params, operation))
        except ApiError as exc:
            response = json_response(exc.body(), exc.status_code, exc.headers)
        except _Dropped:
            dropped = True
        except ClientDisconnect:
            # The client closed the connection (it cancelled the call) before the handler
            # read its body or finished waiting: not a server error.
            closed = True
        except Exception:
            log.exception("%s %s failed", method, path)
            response = json_response({"error": "internal error", "status": "unknown"}, 500)
        if response is not None and await request.is_disconnected():
            # Gone while the handler ran: the answer would go nowhere.
            closed, response = True, None
        status = CLIENT_CLOSED if closed else 0
        if dropped:
            # Headers go out, the body never does: the client sees a broken connection.
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
        elif response is not None:
            status = response.status_code
            response.headers["fly-request-id"] = ulid()
            response.headers[CHECK_SCALE_HEADER] = self._check_scale
            await response(scope, receive, send)
        self.fly.stats.record(operation, status)
        self.request_log.write(
            method=method,
            path=path,
            status=status,
            operation=operation,
            mutating=method not in ("GET", "HEAD", "OPTIONS"),
            duration_ms=(time.perf_counter() - started) * 1000,
            dropped=dropped,
        )

    async def _region(self, route: Route, call: Call) -> str | None:
        fly = self.fly
        if "machine_id" in call.params:
            m = fly.machines.get(call.params["machine_id"])
            return m.region if m else None
        if "volume_id" in call.params:
            v = fly.volumes.get(call.params["volume_id"])
            return v.region if v else None
        if route.operation in ("Machines_create", "Volumes_create"):
            body = await call.json_or_none()
            if isinstance(body, dict):
                if isinstance(body.get("region"), str) and body["region"]:
                    return str(body["region"])
                source = fly.volumes.get(str(body.get("source_volume_id") or ""))
                if source is not None:
                    return source.region
            return NEAREST if route.operation == "Machines_create" else None
        return None

    async def _dispatch(self, route: Route, call: Call) -> Response:
        fly = self.fly
        if route.control:
            return await route.handler(fly, call)
        region = await self._region(route, call)
        latency = fly.profile.api_latency(region, fly.rng)
        if latency > 0:
            await asyncio.sleep(latency)
        reads = route.method == "GET" and route.operation != "Machines_wait"
        if region in fly.outages and not reads:
            raise ApiError(503, f"region {region} is unavailable (local outage)")
        limit = RateLimiter.limit_for(route.operation, route.method)
        if limit is not None:
            p = call.params
            scope = p.get("machine_id") or p.get("volume_id") or p.get("app_name") or "-"
            wait = fly.limiter.take(scope, route.operation, limit)
            if wait is not None:
                raise ApiError(
                    429,
                    f"rate limit exceeded for {route.operation} on {scope}; retry later",
                    headers={"Retry-After": RateLimiter.retry_after_header(wait)},
                )
        decision = fly.faults.decide(route.operation, region)
        if decision.delay_s > 0:
            await asyncio.sleep(decision.delay_s)
        if decision.drop == "before":
            raise _Dropped
        if decision.status is not None:
            raise ApiError(decision.status, f"injected fault on {route.operation}")
        response = await route.handler(fly, call)
        if decision.drop == "after":
            raise _Dropped
        return response
