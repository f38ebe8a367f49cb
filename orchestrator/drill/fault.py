"""Take a region down for a drill, fence it when it comes back, and bring it back.

Two backends, one interface (`RegionFault`):

- **the local Fly** (`LocalOutage`): its control endpoint's region outage,
  ``POST /_localfly/outage/{region}``. Every machine process of the region is frozen (it stops
  answering, its checks go critical, the proxy routes around it) and the Machines API refuses
  changes to the region's machines and volumes (503) until ``DELETE`` ends it. That is what a
  region losing its hosts looks like from outside: nothing in the region can be told anything.
- **Fly.io** (`StopAndCordon`): Fly has no "take a region down" switch, so the drill does the
  closest safe thing: every machine of the region is cordoned (out of the proxy's routing) and
  stopped, each under its lease. Bringing it back starts and uncordons them.

After an outage, machines of the old primary region still believe they are the primary
(their ``PRIMARY_REGION`` never changed, because the API could not reach them). So both faults
*fence* the region as their first act, while it still answers: every machine is cordoned
(`fence`), out of the proxy's routing, before anything else can be promoted. A fenced region
that comes back takes no writes. ``clear(region, fenced=True)`` brings it back and keeps it
fenced (the old primary, once another region took over); ``fenced=False`` uncordons it too.
"""

from __future__ import annotations

import contextlib
from typing import Literal, Protocol

from orchestrator.drill.probes import live_machines
from orchestrator.errors import (
    DrillError,
    FlyAPIError,
    FlyNotFound,
    FlyWaitTimeout,
    LocalFlyError,
    OrchestratorError,
)
from orchestrator.fly.client import FlyClient
from orchestrator.fly.localcontrol import LocalFlyControl
from orchestrator.settings import Token

__all__ = ["LocalOutage", "RegionFault", "StopAndCordon", "fence"]

_LEASE_TTL = 30
_STOP_WAIT_S = 60


class RegionFault(Protocol):
    """How a drill takes a region down and brings it back."""

    kind: str

    async def inject(self, region: str) -> str:
        """Take ``region`` down; return one line saying what was done."""
        ...

    async def clear(self, region: str, *, fenced: bool = False) -> str:
        """Bring ``region`` back (still cordoned when ``fenced``); return one line."""
        ...


class LocalOutage:
    """The local Fly's region outage, through its control endpoint.

    Args:
        api_url: the local Fly's API base URL.
        token: its bearer token.
    """

    kind = "local-outage"

    def __init__(
        self,
        api_url: str,
        token: Token,
        *,
        client: FlyClient | None = None,
        app: str = "",
    ) -> None:
        self._control = LocalFlyControl(api_url, token)
        self._client = client
        self._app = app

    async def _call(self, method: Literal["POST", "DELETE"], region: str) -> dict[str, object]:
        try:
            return await self._control.outage(method, region)
        except LocalFlyError as exc:
            raise DrillError(str(exc)) from exc

    async def inject(self, region: str) -> str:
        """Fence the region, then start the outage: its machines freeze, its API calls fail."""
        fenced = await fence(self._client, self._app, region) if self._client else []
        body = await self._call("POST", region)
        frozen = body.get("machines")
        count = len(frozen) if isinstance(frozen, list) else 0
        return (
            f"local Fly region outage in {region}: {len(fenced)} machine(s) fenced "
            f"(cordoned), {count} frozen"
        )

    async def clear(self, region: str, *, fenced: bool = False) -> str:
        """End the outage: the machines run again; uncordoned unless ``fenced``."""
        body = await self._call("DELETE", region)
        thawed = body.get("machines")
        count = len(thawed) if isinstance(thawed, list) else 0
        text = f"local Fly region outage in {region} ended: {count} machine(s) running again"
        if self._client is None:
            return text
        if fenced:
            return text + ", still fenced (cordoned)"
        for m in await live_machines(self._client, self._app, region=region):
            with contextlib.suppress(FlyNotFound):
                await self._client.uncordon_machine(self._app, m.id)
        return text + " and uncordoned"


class StopAndCordon:
    """Fly.io: cordon and stop every machine of the region (and undo it).

    Args:
        client: the Machines API client.
        app: the app.
    """

    kind = "stop-and-cordon"

    def __init__(self, client: FlyClient, app: str) -> None:
        self.client = client
        self.app = app
        self.stopped: list[str] = []

    async def inject(self, region: str) -> str:
        """Cordon, then stop, every started machine of ``region``, each under its lease."""
        machines = await live_machines(self.client, self.app, region=region)
        for m in machines:
            lease = await self.client.acquire_lease(
                self.app, m.id, ttl=_LEASE_TTL, description="drill: region down"
            )
            try:
                # Out of the proxy first, so no request is sent to a machine being stopped.
                await self.client.cordon_machine(self.app, m.id, nonce=lease.nonce)
                if m.state == "started":
                    await self.client.stop_machine(self.app, m.id, nonce=lease.nonce)
                    self.stopped.append(m.id)
                    # The stop is accepted at once and done later: the region is down (and the
                    # fault in effect) only once the machine is stopped.
                    await self._until_stopped(m.id)
            finally:
                with contextlib.suppress(OrchestratorError):
                    await self.client.release_lease(self.app, m.id, lease.nonce)
        return f"cordoned {len(machines)} and stopped {len(self.stopped)} machine(s) in {region}"

    async def _until_stopped(self, machine_id: str) -> None:
        try:
            await self.client.wait_machine(
                self.app, machine_id, state="stopped", timeout=_STOP_WAIT_S
            )
        except FlyWaitTimeout:
            raise DrillError(f"machine {machine_id} did not stop within {_STOP_WAIT_S}s") from None

    async def clear(self, region: str, *, fenced: bool = False) -> str:
        """Start the machines this fault stopped and uncordon every machine of ``region``.

        With ``fenced`` (another region took the primary over) they stay stopped and cordoned:
        a re-seed replaces them.
        """
        if fenced:
            return f"{region}'s machines stay stopped and cordoned (fenced) until replaced"
        started = 0
        for m in await live_machines(self.client, self.app, region=region):
            if m.id in self.stopped and m.state == "stopping":
                await self._until_stopped(m.id)  # a start now would be refused
            if m.id in self.stopped and m.state in ("stopping", "stopped", "suspended"):
                await self.client.start_machine(self.app, m.id)
                started += 1
            with contextlib.suppress(FlyNotFound):
                await self.client.uncordon_machine(self.app, m.id)
        self.stopped.clear()
        return f"started {started} machine(s) in {region} and uncordoned them"


async def fence(client: FlyClient, app: str, region: str) -> list[str]:
    """Cordon every machine of ``region`` (the old primary, back from an outage); return ids.

    A machine that cannot be cordoned is reported, not ignored: a returning old primary that
    the proxy may route writes to is a split brain.

    Raises:
        DrillError: a machine could not be cordoned.
    """
    fenced = []
    for m in await live_machines(client, app, region=region):
        try:
            await client.cordon_machine(app, m.id)
        except FlyNotFound:
            continue
        except FlyAPIError as exc:
            raise DrillError(f"cannot fence machine {m.id} in {region}: {exc}") from exc
        fenced.append(m.id)
    return fenced
