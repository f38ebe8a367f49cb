"""Run ``release.command``: fly.toml's ``[deploy] release_command`` on a temporary machine.

As Fly does it: a machine from the new image in the primary region, with the app's env and
secrets and no volume, runs the command once; the deploy goes on only if it exits 0 within
``release_command_timeout``. Otherwise the step fails with the command's exit and the tail of
its output, and no other step has run (every step of the plan depends on this one). The machine
is destroyed afterwards in every case. A release whose command already succeeded (a resumed
deploy, or the same release deployed again) does not run it again.

The output tail comes from `orchestrator.execute.logtail` (the local Fly's log file; on
Fly.io the step names the machine for ``fly logs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from orchestrator.errors import DeployError, FlyAPIError, FlyNotFound, FlyWaitTimeout
from orchestrator.execute.context import StepContext
from orchestrator.execute.logtail import output
from orchestrator.execute.machines import NOT_FOUND_GRACE_S
from orchestrator.fly.client import FlyClient
from orchestrator.fly.models import MachineEvent
from orchestrator.plan.config import META_PROCESS_GROUP, META_RELEASE, RELEASE_COMMAND_GROUP
from orchestrator.plan.steps import Step

__all__ = ["exit_code", "run_release_command", "wait_exit"]


def exit_code(events: list[MachineEvent]) -> int | None:
    """Return the exit code of the newest ``exit`` event (events come newest first)."""
    for event in events:
        if event.type != "exit":
            continue
        request = event.raw.get("request")
        exit_event = request.get("exit_event") if isinstance(request, dict) else None
        if isinstance(exit_event, dict) and isinstance(exit_event.get("exit_code"), int):
            return int(exit_event["exit_code"])
    return None


async def _leftovers(ctx: StepContext) -> None:
    """Destroy release machines a killed run left behind (they never serve traffic)."""
    machines = await ctx.client.list_machines(
        ctx.app, metadata={META_PROCESS_GROUP: RELEASE_COMMAND_GROUP}
    )
    for m in machines:
        if m.state in ("destroyed", "destroying"):
            continue
        with contextlib.suppress(FlyNotFound):
            await ctx.client.destroy_machine(ctx.app, m.id, force=True)


async def wait_exit(client: FlyClient, app: str, machine_id: str, deadline: float) -> bool:
    """Wait until the machine has stopped (its command exited); False at the deadline."""
    unknown_until = time.monotonic() + NOT_FOUND_GRACE_S
    pause = 0.1
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            await client.wait_machine(
                app, machine_id, state="stopped", timeout=min(60.0, max(1.0, left))
            )
            return True
        except FlyNotFound:
            # Just created: Fly may not know it where /wait is answered yet (see wait_version).
            if time.monotonic() + pause > unknown_until:
                raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)
        except FlyWaitTimeout:
            machine = await client.get_machine(app, machine_id)
            if machine.state in ("stopped", "failed"):
                return True


async def run_release_command(ctx: StepContext, step: Step) -> str:
    """Run the release command once for the release; fail the deploy if it fails."""
    params = step.params
    command = " ".join(str(a) for a in params.get("command") or [])
    done = ctx.journal.previous_result(ctx.app, ctx.release, step.id, "exit_code")
    if done == 0:
        return f"release command `{command}` already succeeded for {ctx.release}; not run again"
    await _leftovers(ctx)
    config: dict[str, Any] = dict(params.get("config") or {})
    timeout_s = float(params.get("timeout_s") or 300.0)
    secrets = (config.get("metadata") or {}).get("orch_secrets_version")
    machine = await ctx.client.create_machine(
        ctx.app,
        config,
        region=step.region,
        name=f"{ctx.app}-release-{ctx.run}",
        min_secrets_version=int(secrets)
        if isinstance(secrets, str) and secrets.isdigit()
        else None,
    )
    ctx.journal.step_result(ctx.run, step.id, {"machine_id": machine.id})
    try:
        finished = await wait_exit(ctx.client, ctx.app, machine.id, time.monotonic() + timeout_s)
        if not finished:
            raise DeployError(
                f"release command `{command}` did not finish within {timeout_s:g}s "
                f"(release_command_timeout) on machine {machine.id}; nothing else was changed; "
                f"{output(machine.id)}"
            )
        code = exit_code(await ctx.client.list_events(ctx.app, machine.id))
        if code != 0:
            said = "exited without an exit code" if code is None else f"exited {code}"
            raise DeployError(
                f"release command `{command}` {said} on machine {machine.id}; nothing else "
                f"was changed; {output(machine.id)}"
            )
    finally:
        with contextlib.suppress(FlyAPIError):
            await ctx.client.destroy_machine(ctx.app, machine.id, force=True)
    ctx.journal.step_result(ctx.run, step.id, {"exit_code": 0})
    meta = config.get("metadata") or {}
    return (
        f"release command `{command}` exited 0 on machine {machine.id} "
        f"({meta.get(META_RELEASE, ctx.release)}); machine destroyed"
    )
