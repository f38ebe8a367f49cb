"""Ask the deployed app itself how it is, through Fly's edge proxy.

Health gates, replication checks and ``invoke status`` read the app's ``GET /status`` the way a
user's request would reach it: through the proxy (``https://<app>.fly.dev`` on Fly.io, the local
Fly's proxy port on loopback), steered with Fly's own headers:

- ``fly-prefer-region: <code>``: answer from that region if it has a healthy machine;
- ``fly-force-instance-id: <machine id>``: answer from exactly that machine.

A probe never raises for an unhealthy answer: it returns a `ProxyAnswer` saying what came back
(or why nothing did), and the caller decides.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

__all__ = ["ProxyAnswer", "ProxyClient"]

FORCE_INSTANCE_HEADER = "fly-force-instance-id"
PREFER_REGION_HEADER = "fly-prefer-region"


@dataclass(frozen=True, slots=True)
class ProxyAnswer:
    """What the app said (or why it said nothing).

    Attributes:
        status_code: the HTTP status, or ``None`` when no answer came.
        body: the JSON body when it was a JSON object, else an empty mapping.
        error: why there was no usable answer (connection refused, timeout, not JSON), or
            ``None``.
        machine_id: the machine that answered (``fly-machine-id`` header or the body), if known.
        region: the region that answered (``fly-region`` header or the body), if known.
        text: the body as text, for answers that are not JSON (``/metrics``); else ``""``.
        elapsed_s: seconds from sending the request to the end of the answer.
    """

    status_code: int | None
    body: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    machine_id: str | None = None
    region: str | None = None
    text: str = ""
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        """Tell whether the app answered 200."""
        return self.status_code == 200

    def describe(self) -> str:
        """Return one line saying what came back."""
        if self.status_code is None:
            return f"no answer ({self.error})"
        text = f"HTTP {self.status_code}"
        if self.error:
            text += f" ({self.error})"
        return text


class ProxyClient:
    """Call the app through the edge proxy.

    Args:
        proxy_url: the proxy's base URL (``https://<app>.fly.dev`` or the local Fly's proxy).
        app: the app name; sent as ``Host: <app>.fly.dev`` when ``host_header`` is true (the
            local proxy picks the app from it).
        host_header: send the ``Host`` header (for the local proxy on a loopback address).
        timeout: seconds per request.
        transport: an httpx transport, for tests of callers.
        reachable: ``False`` for an app with no public address (``FLY_APP_URL=none``): gates
            then rely on Fly's checks alone and nothing is sent to ``proxy_url``.
    """

    def __init__(
        self,
        proxy_url: str,
        app: str,
        *,
        host_header: bool = False,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        reachable: bool = True,
    ) -> None:
        self.reachable = reachable
        headers = {"Host": f"{app}.fly.dev"} if host_header else {}
        self.proxy_url = proxy_url.rstrip("/")
        self.app = app
        self._http = httpx.AsyncClient(
            base_url=self.proxy_url, headers=headers, timeout=timeout, transport=transport
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> ProxyClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        region: str | None = None,
        machine_id: str | None = None,
        json_body: Any = None,
    ) -> ProxyAnswer:
        """Send one request to the app, steered to ``region`` or to ``machine_id``."""
        return await self._send(method, path, region, machine_id, json_body, text=False)

    async def _send(
        self,
        method: str,
        path: str,
        region: str | None,
        machine_id: str | None,
        json_body: Any,
        *,
        text: bool,
    ) -> ProxyAnswer:
        headers: dict[str, str] = {}
        if region is not None:
            headers[PREFER_REGION_HEADER] = region
        if machine_id is not None:
            headers[FORCE_INSTANCE_HEADER] = machine_id
        began = time.monotonic()
        try:
            resp = await self._http.request(method, path, headers=headers, json=json_body)
        except httpx.HTTPError as exc:
            return ProxyAnswer(
                None,
                error=f"{type(exc).__name__}: {exc}".rstrip(": "),
                elapsed_s=time.monotonic() - began,
            )
        elapsed = time.monotonic() - began
        body: Mapping[str, Any] = {}
        error: str | None = None
        if text:
            return ProxyAnswer(
                resp.status_code,
                machine_id=resp.headers.get("fly-machine-id"),
                region=resp.headers.get("fly-region"),
                text=resp.text,
                elapsed_s=elapsed,
            )
        try:
            data = resp.json()
            if isinstance(data, Mapping):
                body = data
        except (json.JSONDecodeError, UnicodeDecodeError):
            error = "not JSON"
        answered_by = resp.headers.get("fly-machine-id") or _opt(body.get("machine_id"))
        answered_in = resp.headers.get("fly-region") or _opt(body.get("region"))
        return ProxyAnswer(
            resp.status_code,
            body=body,
            error=error,
            machine_id=answered_by,
            region=answered_in,
            elapsed_s=elapsed,
        )

    async def status(
        self, *, region: str | None = None, machine_id: str | None = None
    ) -> ProxyAnswer:
        """Return the app's ``GET /status``, steered to ``region`` or to ``machine_id``."""
        return await self.request("GET", "/status", region=region, machine_id=machine_id)

    async def metrics(self, machine_id: str) -> ProxyAnswer:
        """Return one machine's ``GET /metrics`` (Prometheus text in ``ProxyAnswer.text``)."""
        return await self._send("GET", "/metrics", None, machine_id, None, text=True)


def _opt(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
