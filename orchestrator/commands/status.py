"""``invoke status``: every machine as Fly and the app report it, and what the fleet costs."""

from __future__ import annotations

from orchestrator.connect import connect
from orchestrator.cost import Cost, status_cost
from orchestrator.errors import OrchestratorError
from orchestrator.execute.status import FleetStatus, collect_status
from orchestrator.fleetconfig.load import load_spec
from orchestrator.settings import Settings

__all__ = ["fleet_status"]


async def fleet_status(settings: Settings, *, region: str | None) -> tuple[FleetStatus, Cost]:
    """Return the fleet's status (``region``'s alone when given) and its month's cost.

    Nothing is started: without a running local Fly the fleet does not exist.
    """
    async with connect(settings, start=False) as conn:
        found = await collect_status(conn, region=region, expected_primary=_spec_primary(settings))
        return found, await status_cost(conn, found, region=region)


def _spec_primary(settings: Settings) -> str | None:
    """Return the spec's primary region, or ``None`` when the spec cannot be read."""
    try:
        return load_spec(settings.root, app_override=settings.app).primary_region
    except OrchestratorError:
        return None
