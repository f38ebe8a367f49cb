"""Take a restore point: snapshot a machine's volume before its wave changes the machine.

``volume.snapshot`` reads the machine's ``last_seq`` from the app's ``/status`` (so a later
``rollback --restore-data`` can say how many records it loses), asks Fly for a snapshot
(``POST /volumes/{id}/snapshots`` answers with no body and snapshots in the background, so the
new snapshot is found by listing the volume's snapshots) and waits until it is ``created``.
The journal and the release ledger (`RestorePointTaken`) record which snapshot belongs to
which machine. A resumed run reuses the snapshot its killed run took.
"""

from __future__ import annotations

import asyncio
import time

from orchestrator.errors import DeployError
from orchestrator.execute.context import StepContext
from orchestrator.execute.events import RestorePointTaken
from orchestrator.fly.models import Snapshot
from orchestrator.plan.steps import Step

__all__ = ["snapshot_volume"]


async def snapshot_volume(ctx: StepContext, step: Step) -> str:
    """Run ``volume.snapshot``: snapshot the step's volume and record the restore point."""
    volume = str(step.params.get("volume") or "")
    machine = str(step.machine or "")
    if not volume or not machine:
        raise DeployError("volume.snapshot without a volume and a machine")
    earlier = ctx.journal.previous_result(ctx.app, ctx.release, step.id, "snapshot_id")
    known = await ctx.client.list_snapshots(ctx.app, volume)
    reused = next((s for s in known if s.id == earlier and s.status == "created"), None)
    last_seq = ctx.journal.previous_result(ctx.app, ctx.release, step.id, "last_seq")
    if reused is None:
        last_seq = await _last_seq(ctx, machine)
        before = {s.id for s in known}
        await ctx.client.create_snapshot(ctx.app, volume)
        reused = await _wait_new(ctx, volume, before)
    ctx.journal.step_result(
        ctx.run,
        step.id,
        {
            "snapshot_id": reused.id,
            "volume_id": volume,
            "digest": reused.digest,
            "last_seq": last_seq,
            "machine_id": machine,
        },
    )
    ctx.bus.emit(
        RestorePointTaken(
            release=ctx.release,
            region=step.region,
            slot=step.slot,
            machine=machine,
            volume=volume,
            snapshot=reused.id,
            digest=reused.digest,
            last_seq=last_seq if isinstance(last_seq, int) else None,
            release_before=_opt(step.params.get("release_before")),
        )
    )
    seq = f", last_seq {last_seq}" if isinstance(last_seq, int) else ""
    return f"snapshot {reused.id} of volume {volume} ({machine}{seq})"


async def _last_seq(ctx: StepContext, machine: str) -> int | None:
    """Return the machine's ``last_seq`` from ``/status``, or None when it does not say."""
    if not ctx.probe.reachable:
        return None
    answer = await ctx.probe.status(machine_id=machine)
    value = answer.body.get("last_seq") if answer.ok else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def _wait_new(ctx: StepContext, volume: str, before: set[str]) -> Snapshot:
    """Wait until a snapshot of ``volume`` not in ``before`` is ``created``; return it."""
    deadline = time.monotonic() + ctx.options.volume_timeout_s
    while True:
        fresh = [s for s in await ctx.client.list_snapshots(ctx.app, volume) if s.id not in before]
        done = next((s for s in fresh if s.status == "created"), None)
        if done is not None:
            return done
        failed = next((s for s in fresh if s.status == "failed"), None)
        if failed is not None:
            raise DeployError(f"snapshot {failed.id} of volume {volume} failed")
        if time.monotonic() > deadline:
            raise DeployError(
                f"no snapshot of volume {volume} completed within {ctx.options.volume_timeout_s:g}s"
            )
        await asyncio.sleep(min(ctx.options.poll_s, 0.2))


def _opt(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
