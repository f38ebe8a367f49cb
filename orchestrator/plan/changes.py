"""Say what an update changes in a machine's env beyond its release (pure).

Two configs of one release differ when only app settings outside the release id change: after a
drill moved the primary, ``PRIMARY_REGION`` differs and nothing else. The plan says so, instead
of ``v1-92d1226d → v1-92d1226d``. Only ``env`` is compared key by key: Fly echoes other parts
of a config back with its own defaults filled in, which would read as changes nobody made.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["env_changes"]

_VALUE_WIDTH = 24


def _short(value: object) -> str:
    text = "unset" if value is None else str(value)
    return text if len(text) <= _VALUE_WIDTH else text[: _VALUE_WIDTH - 1] + "…"


def env_changes(observed: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, list[str]]:
    """Return ``{"changes": ["env KEY old → new", ...]}`` when the env differs, else ``{}``."""
    old_env = observed.get("env") or {}
    new_env = desired.get("env") or {}
    if not isinstance(old_env, Mapping) or not isinstance(new_env, Mapping):
        return {}
    changes = [
        f"env {key} {_short(old_env.get(key))} → {_short(new_env.get(key))}"
        for key in sorted(set(old_env) | set(new_env))
        if old_env.get(key) != new_env.get(key)
    ]
    return {"changes": changes} if changes else {}
