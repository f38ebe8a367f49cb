"""Judge a fleet's primary: split brain, and whether anything can take writes.

Only the app knows which machine is its primary (its ``/status`` ``role``), and each machine's
config names the region it believes holds the primary (``PRIMARY_REGION``). Two things must never
pass as healthy:

- **split brain**: more than one machine says it is the primary, or machines disagree on
  ``PRIMARY_REGION``. Both sides may acknowledge writes the other never sees, so overwriting
  either side loses data; `require_single_primary` makes ``deploy``, ``scale`` and ``drill``
  refuse to start on such a fleet, and ``status`` exits 1 saying how to resolve it.
- **no writable primary**: no machine says it is the primary and answers healthy, or the one
  that does is not in the spec's primary region. A deploy, scale or rollback that ends there
  has put the service into an outage; `writable_primary_problem` is the gate that fails it.

`assess` is pure over `MachineStatus` rows; `observe_primaries` gathers them over the API.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

from orchestrator.connect import Connection
from orchestrator.errors import DeployError, ErrorKind
from orchestrator.execute.events import EventBus, ReleaseFinished
from orchestrator.execute.journal import Journal
from orchestrator.execute.results import DeployResult
from orchestrator.execute.status import PrimaryView, assess, collect_status
from orchestrator.settings import NO_APP_URL

__all__ = [
    "PRIMARY_GATE_TIMEOUT_S",
    "PrimaryView",
    "SplitBrain",
    "assess",
    "gate_writable_primary",
    "observe_primaries",
    "refuse_split",
    "settled_view",
]

class SplitBrain(DeployError):
    """The fleet has more than one primary, or its machines disagree on ``PRIMARY_REGION``.

    Attributes:
        view: what the fleet's machines said.
    """

    kind = ErrorKind.FLEET

    def __init__(self, view: PrimaryView, *, command: str) -> None:
        self.view = view
        self.command = command
        super().__init__(f"{command} refused: {view.split_description()}")


async def observe_primaries(conn: Connection, *, expected: str) -> PrimaryView:
    """Ask every machine of the app for its role and read its configured primary region."""
    status = await collect_status(conn)
    return assess((m for ms in status.regions.values() for m in ms), expected=expected)


# How long the gate waits for the app to settle its primary after the last step: a follower
# takes over a primary that died after six replicate intervals (3 s for the sample app), and
# a restarted machine needs its checks to pass.
PRIMARY_GATE_TIMEOUT_S = 30.0
# A split is re-read before a command refuses: during a hand-over two machines may both say
# ``primary`` for one election round.
SPLIT_CONFIRM_S = 3.0


async def settled_view(
    conn: Connection,
    *,
    expected: str,
    until: Callable[[PrimaryView], bool],
    timeout: float,
    poll: float = 0.5,
) -> PrimaryView:
    """Read the fleet's primaries until ``until`` holds or ``timeout`` passes; return the last."""
    deadline = time.monotonic() + timeout
    while True:
        view = await observe_primaries(conn, expected=expected)
        if until(view) or time.monotonic() >= deadline:
            return view
        await asyncio.sleep(poll)  # polling the app's roles, with a deadline


async def refuse_split(conn: Connection, *, expected: str, command: str) -> PrimaryView:
    """Refuse to start ``command`` on a split fleet (one that stays split for a few seconds).

    Returns the fleet's primaries as read, for a caller that plans around the leader.

    Raises:
        SplitBrain: more than one primary, or machines disagreeing on ``PRIMARY_REGION``.
    """
    view = await settled_view(
        conn, expected=expected, until=lambda v: not v.split, timeout=SPLIT_CONFIRM_S
    )
    if view.split:
        raise SplitBrain(view, command=command)
    return view


async def gate_writable_primary(
    conn: Connection,
    result: DeployResult,
    *,
    expected: str,
    journal: Journal | None = None,
    bus: EventBus | None = None,
    timeout: float = PRIMARY_GATE_TIMEOUT_S,
) -> DeployResult:
    """Fail a run that reports success but leaves no writable primary in ``expected``.

    A run whose steps all passed can still end in an outage: its machines are healthy, yet no
    region takes writes (the primary region frozen, the promoted one demoted). That is not a
    success. Runs that already failed, and fleets with no machine in ``expected`` (a region
    deployed before the primary region exists), are returned unchanged, and so is every run of
    an app with no public address (``FLY_APP_URL=none``): only the app can say who is primary.

    The executor has already recorded the run as succeeded by then; a failed gate records it
    again as failed, in ``journal`` and through ``bus`` (the release list on Fly that ``invoke
    releases`` reads, and notifications), so no record says the outage was a success.
    """
    if not result.ok or conn.settings.app_url == NO_APP_URL:
        # With no address to ask the app its role, the run's gates were Fly's checks alone.
        return result
    status = await collect_status(conn, region=expected)
    if not any(status.regions.get(expected, ())):
        return result
    view = await settled_view(
        conn,
        expected=expected,
        until=lambda v: v.writable_problem() is None,
        timeout=timeout,
    )
    problem = view.writable_problem()
    if problem is None:
        return result
    # ErrorKind.FLEET: the command line adds how to see and resolve the roles.
    error = f"gate.primary: {problem}; the fleet takes no writes as the spec says"
    if journal is not None and result.run is not None:
        journal.finish_run(result.run, "failed", error)
    if bus is not None:
        bus.emit(ReleaseFinished(result.release, "failed", error))
    return dataclasses.replace(
        result, outcome="failed", error=error, error_kind=ErrorKind.FLEET
    )
