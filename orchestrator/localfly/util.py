"""Small helpers the local Fly shares: ids, clocks, Go durations and the API error.

Ids look like Fly's so nothing downstream can tell them apart: machine ids are 14 hex
characters, volume ids ``vol_`` + 16, snapshot ids ``vs_`` + 16, versions and event ids
26-character ULIDs (Crockford base32, time-ordered).
"""

from __future__ import annotations

import json
import re
import secrets
import string
import threading
import time
from datetime import UTC, datetime

from orchestrator.errors import LocalFlyError

__all__ = [
    "ApiError",
    "app_id",
    "iso_now",
    "machine_id",
    "nonce",
    "parse_duration",
    "show",
    "snapshot_id",
    "ulid",
    "volume_id",
]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_LOWER_ALNUM = string.ascii_lowercase + string.digits
_ALNUM = string.ascii_letters + string.digits
_ulid_lock = threading.Lock()
_ulid_last = 0


def show(value: object, limit: int = 60) -> str:
    """Return a value as an API message shows it: JSON (``"abc"``, ``null``), never a repr."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except ValueError:
        text = json.dumps(str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ApiError(LocalFlyError):
    """An API call failed; becomes ``{"error": message, "status": fly_status}`` with the code.

    Attributes:
        status_code: the HTTP status to answer with.
        message: Fly's ``error`` text.
        fly_status: Fly's ``status`` (``unknown``, ``name_taken``...).
        headers: extra response headers (``Retry-After``).
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        fly_status: str = "unknown",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status_code = status_code
        self.message = message
        self.fly_status = fly_status
        self.headers = headers or {}
        super().__init__(f"{status_code} {message}")

    def body(self) -> dict[str, str]:
        """Return the JSON error body Fly sends."""
        return {"error": self.message, "status": self.fly_status}


def ulid() -> str:
    """Return a new 26-character ULID, strictly increasing within this process."""
    global _ulid_last
    with _ulid_lock:
        value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
        # Two ids in the same millisecond must still sort in creation order.
        value = max(value, _ulid_last + 1)
        _ulid_last = value
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def _token(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def machine_id() -> str:
    """Return a new machine id (14 hex characters, like Fly's)."""
    return secrets.token_hex(7)


def volume_id() -> str:
    """Return a new volume id (``vol_`` + 16 lowercase alphanumerics)."""
    return "vol_" + _token(_LOWER_ALNUM, 16)


def snapshot_id() -> str:
    """Return a new snapshot id (``vs_`` + 16 alphanumerics)."""
    return "vs_" + _token(_ALNUM, 16)


def app_id() -> str:
    """Return a new app id."""
    return _token(_LOWER_ALNUM, 14)


def nonce() -> str:
    """Return a new lease nonce (12 hex characters, like Fly's)."""
    return secrets.token_hex(6)


def iso_now(ts: float | None = None) -> str:
    """Return an ISO 8601 UTC timestamp with a ``Z`` suffix, as Fly writes them."""
    dt = datetime.fromtimestamp(time.time() if ts is None else ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(value: str | int | float) -> float:
    """Parse a Go duration (``"15s"``, ``"500ms"``, ``"1m30s"``) into seconds.

    Bare numbers are taken as seconds, which Fly also accepts for stop timeouts.
    Raises ValueError for anything else, including negative durations.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"negative duration: {value!r}")
        return float(value)
    text = value.strip()
    if text in ("0", ""):
        if text == "":
            raise ValueError("empty duration")
        return 0.0
    pos = 0
    total = 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"not a Go duration: {value!r}")
    return total
