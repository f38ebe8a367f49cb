"""Hand the primary role over before the machine holding it is updated.

The planner puts the leader's ``machine.update`` last in the primary region (``"leader": true``
in its params), after every other machine there runs the new release. Before updating it, the
executor stops it (``SIGTERM``): an app that elects its writer, like the sample app, refuses new
writes, waits until its followers hold every record, and exits; a follower takes the role at its
next pull. The executor waits until another machine of the region answers ``/status`` with
``role: primary`` and only then sends the update. Were the update sent at once, the machine
would stop and come back so fast that it could take its role back from a follower that had
not yet noticed, and writes would pause twice (once for the stop, once for the new hand-off).

An app that does not answer with a role (or has no public address) is updated as any machine:
the stop then simply happens inside the update.
"""

from __future__ import annotations

import asyncio
import time

from orchestrator.execute.context import StepContext
from orchestrator.execute.events import StepProgress
from orchestrator.plan.config import META_SLOT
from orchestrator.plan.steps import Step

__all__ = ["HAND_OFF_TIMEOUT_S", "hand_off"]

# The sample app waits at most 3 s for its followers, then a follower takes over within a
# pull or two; a slower app is updated anyway once this has passed.
HAND_OFF_TIMEOUT_S = 15.0
_POLL_S = 0.1


async def hand_off(ctx: StepContext, step: Step, machine_id: str, nonce: str | None) -> str:
    """Stop the leader and wait until another machine of its region takes the writes.

    Returns one phrase for the step's detail: who took over and how long it took, or why the
    update goes on without a hand-off.
    """
    if not ctx.probe.reachable:
        return "no hand-off: the app has no public address to ask who is primary"
    region = step.region
    machines = await ctx.client.list_machines(ctx.app, region=region)
    others = sorted(
        m.id
        for m in machines
        if m.id != machine_id and m.state == "started" and m.metadata.get(META_SLOT, "").isdigit()
    )
    if not others:
        return "no hand-off: no other started machine in the region"
    ctx.bus.emit(StepProgress(step, f"handing the primary role over: stopping {machine_id}"))
    began = time.monotonic()
    await ctx.client.stop_machine(ctx.app, machine_id, nonce=nonce)
    deadline = began + HAND_OFF_TIMEOUT_S
    while True:
        for other in others:
            answer = await ctx.probe.status(machine_id=other)
            if answer.status_code == 200 and answer.body.get("role") == "primary":
                took = time.monotonic() - began
                return f"handed the primary role to {other} in {took:.1f}s"
        if time.monotonic() >= deadline:
            return (
                f"no machine took the primary role within {HAND_OFF_TIMEOUT_S:g}s of stopping "
                f"{machine_id}; updating it anyway"
            )
        await asyncio.sleep(_POLL_S)  # polling the app's roles, with a deadline
