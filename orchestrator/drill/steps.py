"""What the fail-over and fail-back steps work with: the drill's parts and its phase boundaries.

The runner hands each step itself as a `Drill` (read-only: the steps change no runner field)
and the drill's `DrillState`, which is where they write what they did and measured.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from orchestrator.connect import Connection
from orchestrator.drill.canary import CanaryWriter
from orchestrator.drill.events import DrillBus
from orchestrator.drill.execution import PlanRunner
from orchestrator.drill.fault import RegionFault
from orchestrator.drill.phases import Phase, PhaseSpan
from orchestrator.drill.probes import ProbeLoop
from orchestrator.drill.state import DrillRequest
from orchestrator.fleetconfig.model import DeploySpec
from orchestrator.fly.proxy import ProxyClient

__all__ = ["Drill", "Probe"]

Probe = Callable[[], Awaitable[float | None] | float | None]


class Drill(Protocol):
    """The running drill as its steps see it."""

    @property
    def conn(self) -> Connection:
        """Return the connection to the Machines API and the app."""

    @property
    def spec(self) -> DeploySpec:
        """Return the deploy spec."""

    @property
    def request(self) -> DrillRequest:
        """Return what the operator asked for."""

    @property
    def region(self) -> str:
        """Return the region taken down."""

    @property
    def primary(self) -> str:
        """Return the primary region before the drill."""

    @property
    def survivors(self) -> list[str]:
        """Return the regions with machines other than the one taken down."""

    @property
    def bus(self) -> DrillBus:
        """Return the drill's bus."""

    @property
    def canary(self) -> CanaryWriter:
        """Return the sequenced writer."""

    @property
    def probes(self) -> ProbeLoop:
        """Return the per-region readers."""

    @property
    def traffic(self) -> ProxyClient:
        """Return the app through the proxy, for the drill's own requests."""

    @property
    def fault(self) -> RegionFault:
        """Return what takes the region down and brings it back."""

    @property
    def plans(self) -> PlanRunner:
        """Return the runner of the drill's plans (the deploy executor)."""

    @property
    def now(self) -> Callable[[], float]:
        """Return the clock (epoch seconds)."""

    def phase(self, phase: Phase) -> AbstractAsyncContextManager[PhaseSpan]:
        """Run a block as ``phase``: a safe point on the way in and out."""

    async def skip(self, phase: Phase, detail: str) -> None:
        """Record that ``phase`` does not apply."""

    def done(self, phase: Phase) -> bool:
        """Tell whether a stopped run of this drill already finished ``phase``."""

    async def until(self, what: str, probe: Probe) -> float:
        """Poll ``probe`` until it returns a time, or fail with a timeout."""

    def save_state(self) -> None:
        """Save the drill's state now (before a change a resumed drill must know about)."""
