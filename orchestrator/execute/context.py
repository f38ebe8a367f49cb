"""What every step handler is given: the client, the journal, the knobs and the run's memory."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from orchestrator.errors import ConfigError
from orchestrator.execute.events import EventBus, NextStep, Note, NoteLevel
from orchestrator.execute.journal import Journal
from orchestrator.fly.client import FlyClient
from orchestrator.fly.models import Volume
from orchestrator.fly.proxy import ProxyClient
from orchestrator.plan.fleet import ObservedMachine

__all__ = ["ExecuteOptions", "RunState", "StepContext"]


@dataclass(frozen=True, slots=True)
class ExecuteOptions:
    """Timeouts and lease settings of a run (flyctl's defaults where it has one).

    Attributes:
        lease_ttl_s: lease length while a machine changes (flyctl's 13 s); refreshed two
            thirds into it (8 s of 13, so a typical update needs no refresh; flyctl refreshes
            every ``(ttl - 1) / 3`` s), every second for a lease of 6 s or less.
        machine_timeout_s: how long a machine may take to reach the expected version and
            ``started`` (flyctl's ``--wait-timeout``: 5 min).
        health_timeout_s: how long a machine's checks may take to pass, at most; a check still
            failing after its grace period and five intervals (at least 10 s) fails sooner.
        gate_timeout_s: how long a health gate keeps trying before it fails.
        replicate_timeout_s: how long a replica may take to catch up with the primary.
        volume_timeout_s: how long a volume may take to become ``created`` (a fork hydrates).
        poll_s: seconds between polls where Fly has no long poll (checks, volume state).
        lease_wait_s: how long to wait for a lease someone else holds before failing. 0 (fail
            at once, as flyctl does) except on ``--resume``, where the holder is usually the
            killed run, whose leases lapse within their TTL.
        bake_rps: requests per second a metrics gate sends to its region through the proxy
            during the bake, so there is traffic to measure (0: measure real traffic only).
        api_timeout_s: how long one Machines API request may take before it counts as lost
            and is retried (long polls such as ``/wait`` get their own timeout plus a margin).
        lag_timeout_s: how long a wave's data-health gate holds while a replica region lags
            the primary beyond the RPO budget, before it fails.
    """

    lease_ttl_s: int = 13
    machine_timeout_s: float = 300.0
    health_timeout_s: float = 300.0
    gate_timeout_s: float = 120.0
    replicate_timeout_s: float = 120.0
    volume_timeout_s: float = 300.0
    poll_s: float = 1.0
    lease_wait_s: float = 0.0
    bake_rps: float = 20.0
    api_timeout_s: float = 30.0
    lag_timeout_s: float = 60.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> ExecuteOptions:
        """Read the ``orchestrator`` section of ``invoke.yaml`` (``health_timeout: 120``...).

        Keys are the attribute names without ``_s``; values are seconds.

        Raises:
            ConfigError: an unknown key or a value that is not a positive number.
        """
        values: dict[str, Any] = {}
        known = {f.name.removesuffix("_s"): f.name for f in fields(cls)}
        for key, value in (config or {}).items():
            where = f"invoke.yaml: orchestrator.{key}"
            if key not in known:
                raise ConfigError(f"unknown key; known: {', '.join(sorted(known))}", where=where)
            # Only the lease wait (fail at once) and the bake traffic (none) may be 0; a zero
            # timeout would fail everything.
            floor_ok = value >= 0 if key in ("lease_wait", "bake_rps") else value > 0
            if isinstance(value, bool) or not isinstance(value, int | float) or not floor_ok:
                raise ConfigError(
                    f"must be a positive number of seconds, got {value!r}", where=where
                )
            values[known[key]] = int(value) if known[key] == "lease_ttl_s" else float(value)
        return cls(**values)


@dataclass(slots=True)
class RunState:
    """What steps of one run learn and later steps read (mutable, one per run).

    Attributes:
        volumes: ``(region, slot)`` → the volume id its ``volume.ensure`` settled on.
        machines: ``(region, slot)`` → the machine id a create or update acted on.
        versions: machine id → the version this run put it at (what gates expect).
        gate_figures: gate step id → what a metrics gate measured (for its `GateResult`).
        volume_creates: region → the lock its volume creates take turns on, so the volumes a
            lost answer's retry made twice can be told from a sibling step's.
        observed: machine id → the machine as observed before the plan was made (its version
            and full config), so a step need not read it again; empty when the caller did
            not pass the fleet.
        background: work a step handed off instead of waiting for it (lease releases); the
            executor waits for it with `settle`.
        known_volumes: the app's volume ids listed before this run's first volume create,
            plus those it created since: a volume outside it that shows up after a create
            whose answer was lost is that create's twin. None until the first create.
        fork_sources: ``(region, name)`` → that region's volumes to fork from and the writer
            machine, listed once per run (a list per forked volume would meet Fly's limit of
            one list per second at a few hundred machines).
        list_lock: taken while ``known_volumes`` or ``fork_sources`` is filled, so steps that
            start together list once.
        early_leases: machine id → its lease, taken while its update waited for its turn
            (`orchestrator.execute.machines.EarlyLease`); the update claims it.
        region_began: region → when (Unix time) this run began to update its first machine
            there: a PromQL gate's baseline is the old release just before it.
    """

    volumes: dict[tuple[str, int], str] = field(default_factory=dict)
    machines: dict[tuple[str, int], str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    gate_figures: dict[str, dict[str, Any]] = field(default_factory=dict)
    volume_creates: dict[str, asyncio.Lock] = field(default_factory=dict)
    observed: Mapping[str, ObservedMachine] = field(default_factory=dict)
    background: set[asyncio.Task[None]] = field(default_factory=set)
    known_volumes: set[str] | None = None
    fork_sources: dict[tuple[str, str], tuple[list[Volume], str | None]] = field(
        default_factory=dict
    )
    list_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    early_leases: dict[str, Any] = field(default_factory=dict)
    region_began: dict[str, float] = field(default_factory=dict)

    def in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` without waiting for it; `settle` waits for it."""
        task = asyncio.ensure_future(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def settle(self) -> None:
        """Wait for the work handed to `in_background` (its failures are its own business)."""
        while self.background:
            await asyncio.gather(*tuple(self.background), return_exceptions=True)


@dataclass(frozen=True, slots=True)
class StepContext:
    """Everything a step handler needs.

    Attributes:
        client: the Machines API client.
        app: the app name.
        release: the release id being rolled out.
        run: the journal's run number.
        journal: the journal.
        bus: where events go.
        probe: the app, through the edge proxy.
        options: timeouts and lease settings.
        state: the run's memory.
    """

    client: FlyClient
    app: str
    release: str
    run: int
    journal: Journal
    bus: EventBus
    probe: ProxyClient
    options: ExecuteOptions
    state: RunState

    def note(
        self,
        message: str,
        *,
        level: NoteLevel = "info",
        step_id: str | None = None,
        region: str | None = None,
        next_step: NextStep | None = None,
    ) -> None:
        """Tell the operator something (through the event bus)."""
        self.bus.emit(
            Note(message, level=level, step_id=step_id, region=region, next_step=next_step)
        )
