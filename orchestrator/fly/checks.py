"""Name a machine config's checks as Fly lists their results in ``Machine.checks``.

A machine has two kinds of check: top-level ``checks`` (by their own names; informational on
Fly) and service checks inside ``services[].checks`` (no name in the config; Fly reports them as
``servicecheck-<index>-<type>-<internal port>``, and its proxy routes only on them). Gates wait
for both kinds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["all_checks", "service_checks"]


def service_checks(config: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Return the config's service checks by the names Fly reports them under."""
    out: dict[str, Mapping[str, Any]] = {}
    services = config.get("services")
    for service in services if isinstance(services, list) else []:
        if not isinstance(service, Mapping):
            continue
        port = service.get("internal_port")
        checks = service.get("checks")
        for index, check in enumerate(checks if isinstance(checks, list) else []):
            if isinstance(check, Mapping):
                kind = str(check.get("type") or "tcp")
                out[f"servicecheck-{index:02d}-{kind}-{port}"] = check
    return out


def all_checks(config: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Return top-level and service checks of a config, by the names Fly reports them under."""
    top = config.get("checks")
    out = {
        str(k): v
        for k, v in (top.items() if isinstance(top, Mapping) else ())
        if isinstance(v, Mapping)
    }
    out.update(service_checks(config))
    return out
