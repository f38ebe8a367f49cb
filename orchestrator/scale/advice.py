"""Warnings about a scale change that is allowed but risky, said before it runs."""

from __future__ import annotations

from orchestrator.errors import ConfigError
from orchestrator.fleetconfig.load import load_spec
from orchestrator.scale.request import ScaleRequest
from orchestrator.settings import Settings

__all__ = ["scale_warnings"]


def scale_warnings(settings: Settings, request: ScaleRequest) -> list[str]:
    """Return what to warn about before ``request`` runs (one line each; may be empty).

    Scaling the primary region to one machine leaves no spare there: every rollout or restart
    of that machine stops the writes until it is back.
    """
    if request.count != 1:
        return []
    try:
        primary = load_spec(settings.root).primary_region
    except ConfigError:
        return []  # the scale itself reports what is wrong with the files
    if primary not in request.regions:
        return []
    return [
        f"{primary} is the primary region: with 1 machine there, every rollout and restart "
        "leaves it with no spare, and writes stop until that machine is back; keep 2 or more "
        f"(`invoke scale --region {primary} --count 2`)"
    ]
