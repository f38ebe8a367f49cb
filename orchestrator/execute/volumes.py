"""Make sure each machine slot has its volume, and that replica data has caught up.

- `ensure_volume` (``volume.ensure``) settles on one volume for a slot: the unattached volume
  the plan says to reuse, a volume an earlier (killed) run of this release already created, a
  fork of a primary volume (``fork_from``, or one of ``fork_from_region``'s volumes chosen now,
  because on a first global deploy the primary's volumes did not exist when the plan was made),
  or a new empty one. It then waits until Fly reports the volume ``created`` (a fork goes
  through ``hydrating`` first).
- `replicate` (``volume.replicate``) reads the primary's ``last_seq`` from the app's ``/status``
  once, when the step starts, and waits until the region's machine reports at least that much,
  asking it directly through the proxy with ``fly-force-instance-id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from orchestrator.errors import DeployError, FlyNotFound, NoPrimary
from orchestrator.execute.context import StepContext
from orchestrator.execute.failpoints import failpoint
from orchestrator.fly.client import trace_calls
from orchestrator.fly.models import Machine, Volume
from orchestrator.fly.proxy import ProxyAnswer
from orchestrator.plan.config import META_SLOT
from orchestrator.plan.steps import Step

__all__ = ["ensure_volume", "primary_status", "replicate"]

_GONE = frozenset({"pending_destroy", "scheduling_destroy", "destroying", "destroyed"})
# Enough tries for a round-robin proxy to reach the writer among a region's machines.
_PRIMARY_ASKS = 8


async def ensure_volume(ctx: StepContext, step: Step) -> str:
    """Run ``volume.ensure`` for one slot and remember the volume for its machine."""
    if step.slot is None:
        raise DeployError("volume.ensure without a slot")
    params = step.params
    name = str(params.get("name") or "data")
    size_gb = int(params.get("size_gb") or 1)
    reuse = params.get("reuse")
    how: str
    volume: Volume | None = None

    if isinstance(reuse, str) and reuse:
        volume = await _usable(ctx, reuse, step.region, name)
        if volume is None:
            raise DeployError(f"volume {reuse} the plan reuses is gone or attached elsewhere")
        how = f"reusing volume {reuse}"
    else:
        # A restore (``snapshot_id``) reuses only a volume restored from that same snapshot: the
        # release's first deploy ran a step of the same id that made the volume being replaced.
        snapshot = params.get("snapshot_id") or None
        earlier = ctx.journal.previous_result(ctx.app, ctx.release, step.id, "volume_id")
        if snapshot and snapshot != ctx.journal.previous_result(
            ctx.app, ctx.release, step.id, "snapshot_id"
        ):
            earlier = None
        if isinstance(earlier, str):
            volume = await _usable(ctx, earlier, step.region, name)
        if volume is not None:
            how = f"reusing volume {volume.id} created by an earlier run of {ctx.release}"
        else:
            source = params.get("fork_from")
            if not source and params.get("fork_from_region"):
                source = await _fork_source(ctx, str(params["fork_from_region"]), name, step.slot)
            # Fly has no idempotency key for volumes: a create whose answer was lost and was
            # sent again can make two. The region's creates take turns, so a volume that
            # appears meanwhile and is not the one we got is such a twin.
            lock = ctx.state.volume_creates.setdefault(step.region, asyncio.Lock())
            async with lock:
                known = await _known_volumes(ctx)
                with trace_calls() as trace:
                    volume = await ctx.client.create_volume(
                        ctx.app,
                        name=name,
                        region=step.region,
                        size_gb=size_gb,
                        source_volume_id=str(source) if source else None,
                        snapshot_id=str(snapshot) if snapshot else None,
                        # As flyctl's deploy does: a volume per machine may share a zone.
                        require_unique_zone=False,
                    )
                # Recorded at once, so a run killed while the volume hydrates picks it up again.
                ctx.journal.step_result(
                    ctx.run, step.id, {"volume_id": volume.id, "snapshot_id": snapshot}
                )
                failpoint("volume_created", step.id)
                known.add(volume.id)
                if trace.ambiguous:  # an answer was lost: the create may have been done twice
                    await _drop_twins(ctx, step, name, keep=volume.id, known=known)
            how = (
                f"restored volume {volume.id} from snapshot {snapshot}"
                if snapshot
                else f"forked volume {volume.id} from {source}"
                if source
                else f"created volume {volume.id}"
            )
    ready = await _wait_created(ctx, volume.id)
    ctx.state.volumes[(step.region, step.slot)] = ready.id
    ctx.journal.step_result(ctx.run, step.id, {"volume_id": ready.id})
    return f"{how} ({ready.size_gb} GB, {ready.state})"


async def _known_volumes(ctx: StepContext) -> set[str]:
    """Return the run's set of known volume ids, listing the app's volumes the first time."""
    async with ctx.state.list_lock:
        if ctx.state.known_volumes is None:
            ctx.state.known_volumes = {v.id for v in await ctx.client.list_volumes(ctx.app)}
        return ctx.state.known_volumes


async def _drop_twins(
    ctx: StepContext, step: Step, name: str, *, keep: str, known: set[str]
) -> None:
    """Destroy the volumes a retried create made besides ``keep`` (unattached, new, same name).

    Every other volume listed joins ``known``, so a later create's check leaves it alone.
    """
    for twin in await ctx.client.list_volumes(ctx.app):
        if (
            twin.id in known
            or twin.region != step.region
            or twin.name != name
            or twin.attached_machine_id
            or twin.state in _GONE
        ):
            known.add(twin.id)
            continue
        ctx.note(
            f"volume {twin.id} duplicates {keep} (a create was sent twice); destroying it",
            level="warning",
            step_id=step.id,
            region=step.region,
        )
        with contextlib.suppress(FlyNotFound):
            await ctx.client.destroy_volume(ctx.app, twin.id)


async def _usable(ctx: StepContext, volume_id: str, region: str, name: str) -> Volume | None:
    try:
        volume = await ctx.client.get_volume(ctx.app, volume_id)
    except FlyNotFound:
        return None
    if volume.state in _GONE or volume.region != region or volume.name != name:
        return None
    if volume.attached_machine_id:
        return None
    return volume


async def _fork_candidates(
    ctx: StepContext, region: str, name: str
) -> tuple[list[Volume], str | None]:
    """Return ``region``'s volumes named ``name`` and its writer machine, listed once a run."""
    async with ctx.state.list_lock:
        cached = ctx.state.fork_sources.get((region, name))
        if cached is not None:
            return cached
        volumes = [
            v
            for v in await ctx.client.list_volumes(ctx.app)
            if v.region == region and v.name == name and v.state not in _GONE
        ]
        if not volumes:
            raise DeployError(f"no volume named {name!r} in {region} to fork from")
        try:
            writer: str | None = (await primary_status(ctx, region)).machine_id
        except DeployError:
            writer = None
        ctx.state.fork_sources[(region, name)] = (volumes, writer)
        return volumes, writer


async def _fork_source(ctx: StepContext, region: str, name: str, slot: int) -> str:
    """Pick the primary-region volume to fork for ``slot``.

    The writer's volume when the app says which machine that is (it has the newest data);
    else the attached volumes in turn, by id (an unattached one may be stale).
    """
    volumes, writer = await _fork_candidates(ctx, region, name)
    for volume in volumes:
        if writer is not None and volume.attached_machine_id == writer:
            return volume.id
    volumes.sort(key=lambda v: (v.attached_machine_id is None, v.id))
    attached = [v for v in volumes if v.attached_machine_id] or volumes
    return attached[(slot - 1) % len(attached)].id


async def _wait_created(ctx: StepContext, volume_id: str) -> Volume:
    deadline = time.monotonic() + ctx.options.volume_timeout_s
    while True:
        volume = await ctx.client.get_volume(ctx.app, volume_id)
        if volume.state == "created":
            return volume
        if volume.state in _GONE:
            raise DeployError(f"volume {volume_id} is {volume.state}")
        if time.monotonic() > deadline:
            raise DeployError(
                f"volume {volume_id} is still {volume.state} after "
                f"{ctx.options.volume_timeout_s:g}s"
            )
        await asyncio.sleep(min(ctx.options.poll_s, 0.5))


async def replicate(ctx: StepContext, step: Step) -> str:
    """Run ``volume.replicate``: the region's machine(s) catch up with the primary."""
    primary_region = str(step.params.get("primary_region") or "")
    if not primary_region:
        raise DeployError("volume.replicate without a primary_region")
    if not ctx.probe.reachable:
        # The catch-up is read from the app's /status, through its address, and it has none.
        return f"{step.region}: not verified: the app has no public address (FLY_APP_URL=none)"
    primary = await primary_status(ctx, primary_region)
    target = _seq(primary.body.get("last_seq"))
    if target is None:
        raise DeployError(f"the primary's /status in {primary_region} has no last_seq")
    machines = await _machines(ctx, step)
    if not machines:
        raise DeployError(f"no machine in {step.region} to check replication on")
    deadline = time.monotonic() + ctx.options.replicate_timeout_s
    for machine in machines:
        seen: Any = None
        while True:
            answer = await ctx.probe.status(machine_id=machine.id)
            seen = _seq(answer.body.get("last_seq")) if answer.ok else None
            if seen is not None and seen >= target:
                break
            if time.monotonic() > deadline:
                said = f"last_seq {seen}" if seen is not None else answer.describe()
                raise DeployError(
                    f"machine {machine.id} in {step.region} did not catch up with the primary "
                    f"(last_seq {target}) within {ctx.options.replicate_timeout_s:g}s: {said}"
                )
            await asyncio.sleep(min(ctx.options.poll_s, 0.5))
    ids = ", ".join(m.id for m in machines)
    return f"{ids} caught up with {primary_region} (last_seq {target})"


async def primary_status(ctx: StepContext, region: str) -> ProxyAnswer:
    """Return ``/status`` of the machine that takes writes in ``region``.

    The primary region may hold followers too (one writer per region, like LiteFS): the proxy
    spreads requests over them, so ask a few times, and ask the machine a follower names as its
    ``leader`` directly.
    """
    answer = ProxyAnswer(None, error="not asked")
    for _ in range(_PRIMARY_ASKS):
        answer = await ctx.probe.status(region=region)
        if answer.ok and answer.body.get("role") == "primary":
            return answer
        leader = answer.body.get("leader")
        if isinstance(leader, str) and leader:
            direct = await ctx.probe.status(machine_id=leader)
            if direct.ok and direct.body.get("role") == "primary":
                return direct
    said = f"role {answer.body.get('role')}" if answer.ok else answer.describe()
    raise NoPrimary(
        f"no machine in {region} answers /status as the primary ({said}): no region takes writes"
    )


async def _machines(ctx: StepContext, step: Step) -> list[Machine]:
    if step.slot is not None:
        known = ctx.state.machines.get((step.region, step.slot))
        if known is not None:
            return [await ctx.client.get_machine(ctx.app, known)]
        if step.machine:
            return [await ctx.client.get_machine(ctx.app, step.machine)]
        found = await ctx.client.list_machines(
            ctx.app, region=step.region, metadata={META_SLOT: str(step.slot)}
        )
    else:
        found = await ctx.client.list_machines(ctx.app, region=step.region)
    live = [m for m in found if m.state not in ("destroyed", "destroying")]
    return sorted((m for m in live if m.metadata.get(META_SLOT)), key=lambda m: m.id)


def _seq(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
