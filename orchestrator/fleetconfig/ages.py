"""Ages on the command line: ``--since 10m``, ``--older-than 7d``.

Go durations (`orchestrator.fleetconfig.values.parse_duration`) stop at hours; an operator pruning
volumes thinks in days, so ages also take ``d`` (24 h) and ``w`` (7 days).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from orchestrator.errors import ConfigError

__all__ = ["parse_age", "parse_since"]

_UNITS = {"w": 7 * 86400.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(w|d|h|m|s)")
_ALLOWED = "an age such as 30s, 10m, 2h, 7d or 1h30m"


def parse_age(value: object, where: str) -> float:
    """Return the seconds an age such as ``7d`` or ``1h30m`` stands for.

    Raises:
        ConfigError: not an age (names ``where``).
    """
    text = str(value).strip() if isinstance(value, str | int) else ""
    if text == "0":
        return 0.0
    total, pos = 0.0, 0
    while pos < len(text):
        part = _PART.match(text, pos)
        if part is None:
            break
        total += float(part.group(1)) * _UNITS[part.group(2)]
        pos = part.end()
    if not text or pos != len(text):
        raise ConfigError(f"expected {_ALLOWED}, got {value!r}", where=where)
    return total


def parse_since(value: object, where: str, now: datetime) -> datetime:
    """Return the moment ``--since`` names: an age before ``now``, or an ISO 8601 time.

    A time without a zone is taken as UTC.

    Raises:
        ConfigError: neither an age nor a time.
    """
    text = str(value).strip()
    try:
        return now - timedelta(seconds=parse_age(text, where))
    except ConfigError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"expected {_ALLOWED}, or a time such as 2026-01-31T14:00:00Z, got {value!r}",
            where=where,
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
