"""Ask a Prometheus-compatible query API for one value: Fly's managed Prometheus or any URL."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

__all__ = ["PromEndpoint", "PromQueryError", "PrometheusAPI", "read_value"]

_TRIES = 3


@dataclass(frozen=True, slots=True)
class PromEndpoint:
    """A Prometheus query API: its base URL and the headers it needs (never printed)."""

    base_url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


class PromQueryError(Exception):
    """Prometheus could not be asked, refused the query, or gave an unusable answer."""


def read_value(body: Mapping[str, Any]) -> float | None:
    """Read one value from a ``/api/v1/query`` answer (``None``: no series yet).

    Raises:
        ValueError: not a success, or more than one series.
    """
    if body.get("status") != "success":
        raise ValueError(str(body.get("error") or "the answer is not a success"))
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        raw = result[1]
    elif kind == "vector" and isinstance(result, list):
        if not result:
            return None
        if len(result) > 1:
            raise ValueError(
                f"{len(result)} series came back; aggregate the query to one value (sum, avg, max)"
            )
        raw = result[0].get("value", [None, None])[1]
    else:
        raise ValueError(f"expected a scalar or a vector, got {kind!r}")
    value = float(raw)
    return None if math.isnan(value) else value


class PrometheusAPI:
    """An open connection to one Prometheus query API (``async with``)."""

    def __init__(self, endpoint: PromEndpoint, *, timeout: float = 10.0) -> None:
        self._http = httpx.AsyncClient(
            base_url=endpoint.base_url, headers=dict(endpoint.headers), timeout=timeout
        )

    async def __aenter__(self) -> PrometheusAPI:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.aclose()

    async def query(self, promql: str, at: float) -> float | None:
        """Evaluate ``promql`` at ``at`` (Unix seconds), asking again on a transient failure.

        Raises:
            PromQueryError: Prometheus could not be asked, or refused the query.
        """
        problem = ""
        for attempt in range(_TRIES):
            try:
                answer = await self._http.get(
                    "api/v1/query", params={"query": promql, "time": f"{at:.3f}"}
                )
                if answer.status_code in (400, 422):
                    raise PromQueryError(f"Prometheus refused the query: {_error(answer)}")
                if answer.status_code == 200:
                    return read_value(answer.json())
                problem = f"HTTP {answer.status_code}"
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
            except ValueError as exc:
                raise PromQueryError(f"unusable answer from Prometheus: {exc}") from exc
            if attempt + 1 < _TRIES:
                await asyncio.sleep(0.5)  # a short back-off before asking again
        raise PromQueryError(f"could not query Prometheus: {problem}")


def _error(answer: httpx.Response) -> str:
    with contextlib.suppress(ValueError):
        body = answer.json()
        if isinstance(body, dict) and body.get("error"):
            return str(body["error"])[:300]
    return f"HTTP {answer.status_code}"
