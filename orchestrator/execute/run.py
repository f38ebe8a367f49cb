"""The run seam: what one run needs, the one place an executor is built, and its lock."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from orchestrator.connect import Connection
from orchestrator.execute.context import ExecuteOptions
from orchestrator.execute.control import RunControl
from orchestrator.execute.events import EventBus, Note
from orchestrator.execute.executor import Executor, PlanLike
from orchestrator.execute.journal import Journal
from orchestrator.execute.lock import DeployLock
from orchestrator.execute.results import Restoring, RollbackAction
from orchestrator.fleetconfig.model import DeploySpec, WaveSpec
from orchestrator.fly.client import FlyClient
from orchestrator.fly.proxy import ProxyClient
from orchestrator.plan.fleet import Fleet
from orchestrator.plan.graph import spec_waves

__all__ = ["RunContext", "open_run"]


@dataclass(frozen=True, slots=True)
class RunContext:
    """What a run needs: the connection's client and probe, the journal, the spec's settings.

    Attributes:
        client: the Machines API client.
        probe: the app through the proxy.
        journal: the journal.
        bus: where events go (the view).
        app: the app.
        image: the spec's image (for the journal).
        spec_digest: the spec's digest (for the journal).
        max_unavailable: region → machines that may be down at once.
        options: timeouts and lease settings.
        wave_specs: the rollout waves (a restore's order).
    """

    client: FlyClient
    probe: ProxyClient
    journal: Journal
    bus: EventBus
    app: str
    image: str = ""
    spec_digest: str = ""
    max_unavailable: Mapping[str, int] = field(default_factory=dict)
    options: ExecuteOptions | None = None
    wave_specs: Sequence[WaveSpec] = ()

    @classmethod
    def of(
        cls,
        conn: Connection,
        journal: Journal,
        spec: DeploySpec,
        bus: EventBus,
        options: ExecuteOptions | None,
    ) -> RunContext:
        """Return the context of a run of ``spec`` through ``conn``."""
        return cls(
            client=conn.client,
            probe=conn.probe,
            journal=journal,
            bus=bus,
            app=conn.app,
            image=spec.image,
            spec_digest=spec.digest,
            max_unavailable={code: r.max_unavailable for code, r in spec.regions.items()},
            options=options,
            wave_specs=spec_waves(spec),
        )

    def executor(
        self,
        plan: PlanLike,
        *,
        command: str,
        image: str | None = None,
        bus: EventBus | None = None,
        resumed_from: int | None = None,
        rollback: RollbackAction | None = None,
        restoring: Restoring | None = None,
        fleet: Fleet | None = None,
        control: RunControl | None = None,
    ) -> Executor:
        """Return the executor of ``plan`` in this context (``image``/``bus`` override it)."""
        return Executor(
            self.client,
            plan,
            journal=self.journal,
            probe=self.probe,
            bus=bus or self.bus,
            image=self.image if image is None else image,
            spec_digest=self.spec_digest,
            max_unavailable=self.max_unavailable,
            options=self.options,
            command=command,
            resumed_from=resumed_from,
            rollback=rollback,
            restoring=restoring,
            fleet=fleet,
            control=control,
        )


@contextlib.contextmanager
def open_run(
    conn: Connection,
    spec: DeploySpec,
    *,
    bus: EventBus,
    options: ExecuteOptions | None,
    release: str,
    command: str,
) -> Iterator[tuple[RunContext, DeployLock]]:
    """Open the journal and take the deploy lock for ``command``; say once if it was stale.

    Raises:
        DeployLocked: another deploy, rollback or scale of the app runs.
    """
    with (
        Journal.open(conn.settings.root) as journal,
        DeployLock(conn.settings, conn.app, release=release, command=command) as lock,
    ):
        if lock.stale is not None:
            bus.emit(
                Note(
                    f"took over a stale lock: {lock.stale.describe()} (no longer running)",
                    level="warning",
                )
            )
        yield RunContext.of(conn, journal, spec, bus, options), lock
