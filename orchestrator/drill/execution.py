"""Run the drill's plans through the deploy executor and report what they did.

`PlanRunner.run` hands one plan from ``orchestrator.drill.plans`` to the same `Executor` that
runs ``invoke deploy`` (leases, journal, expected versions, health checks, gates), journaled
as a ``drill`` run, and turns its events into drill notes. A failed plan raises `DrillError`
with the executor's first error, so the drill stops where a deploy would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from orchestrator.drill.events import DrillBus
from orchestrator.errors import DrillError
from orchestrator.execute.context import ExecuteOptions
from orchestrator.execute.events import Event, EventBus, GateResult, Note, StepFinished
from orchestrator.execute.executor import DeployResult
from orchestrator.execute.journal import Journal
from orchestrator.execute.run import RunContext
from orchestrator.fly.client import FlyClient
from orchestrator.fly.proxy import ProxyClient
from orchestrator.plan.model import Plan
from orchestrator.plan.steps import StepKind

__all__ = ["GateListener", "PlanRunner"]

GateListener = Callable[[str, float], None]


class PlanRunner:
    """Run drill plans with the deploy executor.

    Args:
        client: the Machines API client.
        probe: the app through the proxy (the executor's gates and replication checks).
        journal: the journal (each plan is one ``drill`` run in it).
        bus: the drill's bus, for notes.
        image: the spec's image.
        spec_digest: the spec's digest.
        max_unavailable: region → machines that may be down at once.
        options: the executor's timeouts.
    """

    def __init__(
        self,
        client: FlyClient,
        probe: ProxyClient,
        journal: Journal,
        bus: DrillBus,
        *,
        image: str,
        spec_digest: str,
        max_unavailable: Mapping[str, int],
        options: ExecuteOptions | None = None,
    ) -> None:
        self.client = client
        self.probe = probe
        self.journal = journal
        self.bus = bus
        self.image = image
        self.spec_digest = spec_digest
        self.max_unavailable = dict(max_unavailable)
        self.options = options or ExecuteOptions()
        self.runs: list[int] = []

    async def run(
        self, plan: Plan, what: str, *, on_gate: GateListener | None = None
    ) -> DeployResult | None:
        """Run ``plan`` (``what`` names it in notes); ``None`` when it had nothing to do.

        Args:
            on_gate: called with (region, time) when a region's health gate passes.

        Raises:
            DrillError: a step failed (the message names it and why).
        """
        if not plan.steps():
            return None
        events = EventBus(self._bridge(what, on_gate))
        executor = RunContext(
            client=self.client,
            probe=self.probe,
            journal=self.journal,
            bus=events,
            app=plan.app,
            image=self.image,
            spec_digest=self.spec_digest,
            max_unavailable=self.max_unavailable,
            options=self.options,
        ).executor(plan, command="drill")
        result = await executor.run()
        if result.run is not None:
            self.runs.append(result.run)
        if not result.ok:
            raise DrillError(f"{what} failed: {result.error or result.outcome}")
        return result

    def _bridge(self, what: str, on_gate: GateListener | None) -> Callable[[Event], None]:
        def forward(event: Event) -> None:
            if isinstance(event, StepFinished) and event.step.mutating:
                if event.outcome == "failed":
                    self.bus.note(f"{what}: {event.step.id}: {event.error}", "error")
                elif event.outcome == "succeeded" and event.detail:
                    self.bus.note(f"{what}: {event.detail}")
            elif isinstance(event, GateResult) and event.step.kind is StepKind.GATE_HEALTH:
                if event.passed and on_gate is not None:
                    on_gate(event.step.region, event.at.timestamp())
            elif isinstance(event, Note) and event.level != "info":
                self.bus.note(f"{what}: {event.message}", event.level)

        return forward
