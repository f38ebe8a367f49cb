"""Decide what a Machines API answer means and whether to try again: plain functions, no I/O.

`FlyClient` sends; this module judges. `error_from_response` maps an error answer to the
`orchestrator.errors` tree once, `is_transient` is the one retry predicate, `RETRYING` the one
stamina policy built from `RETRY_POLICY`, and `decode_object`/`decode_array` read 2xx bodies.
"""

from __future__ import annotations

import email.utils
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import stamina

from orchestrator.errors import (
    FlyAPIError,
    FlyLeaseHeld,
    FlyRateLimited,
    FlyServerError,
    FlyTransportError,
    FlyWaitTimeout,
    api_error_for_status,
)

__all__ = [
    "CHECK_SCALE_HEADER",
    "NEXT_CURSOR_HEADER",
    "NONCE_HEADER",
    "REQUEST_ID_HEADER",
    "RETRYING",
    "RETRY_POLICY",
    "RetryPolicy",
    "decode_any",
    "decode_array",
    "decode_object",
    "error_from_response",
    "is_transient",
    "parse_retry_after",
    "scrub",
    "unexpected_answer",
]

NONCE_HEADER = "fly-machine-lease-nonce"
REQUEST_ID_HEADER = "fly-request-id"
NEXT_CURSOR_HEADER = "fly-next-cursor"
# Not Fly's: the embedded local Fly runs health checks at its profile's scale of the configured
# grace periods and intervals (a tenth in tests, the time factor in benchmarks) and says so
# here, so a client can time its check polls; Fly.io never sends it (the scale is 1 there).
CHECK_SCALE_HEADER = "localfly-check-scale"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient failures are retried (jittered exponential backoff, bounded twice).

    Attributes:
        attempts: tries in all, the first included.
        timeout: seconds after which no new attempt starts; a ``Retry-After`` longer than this
            is not waited for, the `FlyRateLimited` is raised instead.
        wait_initial: the first backoff, seconds.
        wait_max: the largest backoff, seconds.
        wait_jitter: up to this many random seconds added to each backoff.
    """

    attempts: int = 6
    timeout: float = 60.0
    wait_initial: float = 0.2
    wait_max: float = 5.0
    wait_jitter: float = 0.5


RETRY_POLICY = RetryPolicy()


def is_transient(exc: Exception) -> bool:
    """Say whether a failed attempt is worth another: the one retry predicate of the client.

    Transport errors, 5xx and 429 are. So is 408, except from ``/wait``: there it means the
    machine did not get there in time, which the caller must decide about. A 429 whose
    ``Retry-After`` exceeds the whole retry budget is not retried. Creates are retried too: a
    408/5xx after the request reached Fly is ambiguous, and the executor makes machine creates
    idempotent with an ``orch_launch_id`` in metadata (apps with ``idempotency_key``).
    """
    if isinstance(exc, FlyTransportError | FlyServerError):
        return True
    if isinstance(exc, FlyRateLimited):
        return exc.retry_after is None or exc.retry_after <= RETRY_POLICY.timeout
    if isinstance(exc, FlyWaitTimeout):
        return not exc.path.endswith("/wait")
    return False


RETRYING = stamina.AsyncRetryingCaller(
    attempts=RETRY_POLICY.attempts,
    timeout=RETRY_POLICY.timeout,
    wait_initial=RETRY_POLICY.wait_initial,
    wait_max=RETRY_POLICY.wait_max,
    wait_jitter=RETRY_POLICY.wait_jitter,
).on(is_transient)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Read a ``Retry-After`` header (delay seconds or an HTTP date) as seconds, or ``None``."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def error_from_response(
    method: str, path: str, response: httpx.Response, *, secret: str = ""
) -> FlyAPIError:
    """Build the `FlyAPIError` subclass for an error response.

    Reads Fly's body ``{"error", "status"}`` (and fly-go's ``message``), the ``fly-request-id``
    and, for 429, ``Retry-After``. ``secret`` is scrubbed from the message in case a server
    echoed it.
    """
    body: Any = None
    try:
        body = response.json()
    except ValueError:
        body = None
    message = ""
    fly_status: str | None = None
    if isinstance(body, Mapping):
        for key in ("error", "message"):
            if isinstance(body.get(key), str) and body[key]:
                message = body[key]
                break
        status = body.get("status")
        fly_status = status if isinstance(status, str) and status else None
    if not message:
        text = response.text.strip()
        message = text[:200] if text else response.reason_phrase or "error"
    message = " ".join(scrub(message, secret).split())
    code = response.status_code
    cls = api_error_for_status(code, fly_status, message)
    if code == 409 and method == "POST" and path.rstrip("/").endswith("/lease"):
        # Fly answers 409 to a lease request when someone else holds the lease (fly-go retries
        # exactly that status there).
        cls = FlyLeaseHeld
    common: dict[str, Any] = {
        "status_code": code,
        "fly_status": fly_status,
        "request_id": response.headers.get(REQUEST_ID_HEADER),
        "method": method,
        "path": path,
    }
    if cls is FlyRateLimited:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return FlyRateLimited(message, retry_after=retry_after, **common)
    return cls(message, **common)


def scrub(text: str, secret: str) -> str:
    """Replace a secret (and each part of a multi-part ``FlyV1 a,b`` token) in text with ``***``."""
    if not secret:
        return text
    text = text.replace(secret, "***")
    for part in re.split(r"[\s,]+", secret):
        # Short pieces ("FlyV1") are not secret and would mangle ordinary words.
        if len(part) >= 8:
            text = text.replace(part, "***")
    return text


def decode_any(resp: httpx.Response) -> Any:
    """Return a 2xx body as JSON (``None`` when empty); a non-JSON body is `FlyAPIError`."""
    if not resp.content.strip():
        return None
    try:
        return resp.json()
    except ValueError:
        raise unexpected_answer(resp, "JSON") from None


def decode_object(resp: httpx.Response) -> dict[str, Any]:
    """Return a 2xx body that must be a JSON object (``{}`` when empty)."""
    data = decode_any(resp)
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise unexpected_answer(resp, "a JSON object")
    return dict(data)


def decode_array(resp: httpx.Response) -> list[Any]:
    """Return a 2xx body that must be a JSON array (``[]`` when empty)."""
    data = decode_any(resp)
    if data is None:
        return []
    if not isinstance(data, list):
        raise unexpected_answer(resp, "a JSON array")
    return data


def unexpected_answer(resp: httpx.Response, wanted: str) -> FlyAPIError:
    """Build the error for a 2xx answer that is not what the operation returns."""
    request = resp.request
    return FlyAPIError(
        f"expected {wanted} in the answer",
        status_code=resp.status_code,
        request_id=resp.headers.get(REQUEST_ID_HEADER),
        method=request.method,
        path=request.url.path,
    )
