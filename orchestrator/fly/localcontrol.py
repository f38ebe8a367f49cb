"""Ask the local Fly's control endpoints (not part of Fly's API) to take a region down."""

from __future__ import annotations

from typing import Literal

import httpx

from orchestrator.errors import LocalFlyError
from orchestrator.settings import Token

__all__ = ["LocalFlyControl"]


class LocalFlyControl:
    """The local Fly's region-outage switch, ``/_localfly/outage/{region}``.

    Fly.io has no such switch; a drill against Fly cordons and stops machines through the
    Machines API instead (``orchestrator.drill.fault.StopAndCordon``).

    Args:
        api_url: the local Fly's API base URL.
        token: its bearer token.
        transport: an httpx transport, for tests of this client.
    """

    def __init__(
        self, api_url: str, token: Token, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._api_url = api_url.rstrip("/")
        self._token = token
        self._transport = transport

    async def outage(self, method: Literal["POST", "DELETE"], region: str) -> dict[str, object]:
        """Start (``POST``) or end (``DELETE``) ``region``'s outage; return the answer's body.

        Raises:
            LocalFlyError: the local Fly did not answer, or refused (the status and its words).
        """
        headers = {"Authorization": f"Bearer {self._token.reveal()}"}
        try:
            async with httpx.AsyncClient(
                timeout=10.0, transport=self._transport, trust_env=False
            ) as http:
                resp = await http.request(
                    method, f"{self._api_url}/_localfly/outage/{region}", headers=headers
                )
        except httpx.HTTPError as exc:
            raise LocalFlyError(f"the local Fly's outage control did not answer: {exc}") from exc
        if resp.status_code >= 400:
            said = resp.text[:200]
            raise LocalFlyError(
                f"{method} /_localfly/outage/{region} answered {resp.status_code}: {said}"
            )
        body = resp.json()
        return body if isinstance(body, dict) else {}
