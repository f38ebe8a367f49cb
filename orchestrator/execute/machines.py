"""Create, update and destroy one machine each, leased, journaled and verified.

Every handler follows the same order, because a crash can come between any two calls:

1. take the machine's lease (13 s, refreshed in the background when a change outlasts two
   thirds of it);
2. write the machine's version and full config to the journal (for a create: the launch id);
3. send the change;
4. wait for the *expected* result: the new version started (flyctl PR #4921: an update can be
   reported done while the machine silently went back to its old version), checks passing;
5. write the after-state to the journal, release the lease (in the background: the executor
   waits for every release before it schedules a rollback or returns).

An update takes the machine's version and config from the fleet observed before planning, and
reads the machine only once its checks can have a result (or when that fleet is missing).

A create carries ``orch_launch_id`` (a uuid4 journaled before the request). Whenever a create
may have happened without us seeing the answer (a 408 or 5xx after Fly received it, a crash, a
retry of the whole run), the machine is looked up by that metadata instead of created again.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import random
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from orchestrator.errors import (
    DeployError,
    FlyAPIError,
    FlyConflict,
    FlyLeaseHeld,
    FlyNotFound,
    FlyTransportError,
    FlyWaitTimeout,
    GateFailed,
    OrchestratorError,
)
from orchestrator.execute.context import StepContext
from orchestrator.execute.failpoints import failpoint
from orchestrator.execute.gates import wait_healthy
from orchestrator.execute.handoff import hand_off
from orchestrator.execute.history import with_predecessor
from orchestrator.fly.checks import all_checks
from orchestrator.fly.models import Machine, MachineConfig
from orchestrator.plan.config import META_CONFIG_DIGEST, META_LAUNCH_ID, META_SECRETS_VERSION
from orchestrator.plan.steps import Step

__all__ = [
    "NOT_FOUND_GRACE_S",
    "EarlyLease",
    "create_machine",
    "destroy_machine",
    "leased",
    "update_machine",
    "wait_version",
]

_GONE = frozenset({"destroyed", "destroying"})
# How long an interrupted create waits for Fly's answer, to release the lease it names.
_CREATE_ANSWER_WAIT_S = 10.0
# How long /wait may answer 404 for a machine just created (flyctl retries it too).
NOT_FOUND_GRACE_S = 10.0


@contextlib.asynccontextmanager
async def leased(
    ctx: StepContext,
    machine_id: str,
    *,
    description: str,
    nonce: str | None = None,
    held_since: float | None = None,
    wait_s: float = 0.0,
) -> AsyncIterator[str]:
    """Hold the machine's lease for the block and yield its nonce.

    Args:
        nonce: a lease already held (a create with ``lease_ttl`` returns one, an `EarlyLease`
            another); it is refreshed and released like one taken here.
        held_since: when that lease was last taken or refreshed (``time.monotonic()``), so its
            first refresh comes in time.
        wait_s: keep trying this long when the lease is held (one we lost the nonce of, which
            expires by itself); 0 fails at once.

    Raises:
        DeployError: someone else holds the lease (the message names them).
    """
    ttl = ctx.options.lease_ttl_s
    first = refresh_every(ttl)
    if nonce is not None and held_since is not None:
        first = max(0.0, first - (time.monotonic() - held_since))
    if nonce is None:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                lease = await ctx.client.acquire_lease(
                    ctx.app, machine_id, ttl=ttl, description=description
                )
                break
            except FlyLeaseHeld as exc:
                if time.monotonic() < deadline:
                    await asyncio.sleep(ctx.options.poll_s)
                    continue
                holder = await _lease_holder(ctx, machine_id)
                raise DeployError(
                    f"machine {machine_id} is leased by {holder}: {exc.message}"
                ) from exc
        nonce = lease.nonce
    refresher = asyncio.create_task(_refresh(ctx, machine_id, nonce, ttl, first=first))
    try:
        yield nonce
    finally:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
        # The change is over: the release need not hold up the step (nor the region's
        # max_unavailable slot). The executor waits for every release before it schedules
        # anything else that could lease the same machine (a rollback) and before it returns.
        ctx.state.in_background(_release(ctx, machine_id, nonce))


async def _release(ctx: StepContext, machine_id: str, nonce: str) -> None:
    # A lease left behind blocks the next deploy until it expires (13 s); worth one call,
    # but never worth failing the step over, nor hiding why it failed: when Fly is
    # unreachable the release times out (TimeoutError) and the lease simply expires.
    with contextlib.suppress(OrchestratorError, TimeoutError):
        await asyncio.wait_for(ctx.client.release_lease(ctx.app, machine_id, nonce), 5.0)


async def _lease_holder(ctx: StepContext, machine_id: str) -> str:
    try:
        lease = await ctx.client.get_lease(ctx.app, machine_id)
    except OrchestratorError:
        return "another holder"
    if lease is None:
        return "another holder"
    who = lease.owner or "another holder"
    return f"{who} ({lease.description})" if lease.description else who


class EarlyLease:
    """A machine's lease, taken while its update still waits for its turn.

    The executor takes it for the next updates in line (at most half as many as may run at once), so
    the lease's round trip and journal write come off the critical path: when a slot frees, the
    update sends its change at once. It is refreshed while it waits, handed to `leased` by
    `claim`, or released by `abandon` when the update never runs. Taking it is best effort: on
    any failure, or when it may have lapsed, the update takes its lease itself, as before, and
    fails the same way.
    """

    def __init__(self, ctx: StepContext, machine_id: str, description: str) -> None:
        self._ctx = ctx
        self._machine = machine_id
        self._since = time.monotonic()
        self._nonce: str | None = None
        self._claimed = False
        self._taken = asyncio.Event()
        # Held while a lease call is in flight: cancelling one could leave a lease granted
        # (a lapsed one renewed under a new nonce) that nobody knows the nonce of.
        self._calling = asyncio.Lock()
        self._task = asyncio.ensure_future(self._hold(description))

    async def _hold(self, description: str) -> None:
        """Take the lease, then refresh it until it is claimed or abandoned (cancelled)."""
        ctx = self._ctx
        ttl = ctx.options.lease_ttl_s
        try:
            async with self._calling:
                lease = await ctx.client.acquire_lease(
                    ctx.app, self._machine, ttl=ttl, description=description
                )
        except OrchestratorError:
            return
        finally:
            self._taken.set()
        self._nonce, self._since = lease.nonce, time.monotonic()
        every = refresh_every(ttl)
        wait = every
        while True:
            await asyncio.sleep(wait)
            try:
                async with self._calling:
                    lease = await ctx.client.acquire_lease(
                        ctx.app, self._machine, ttl=ttl, nonce=self._nonce
                    )
            except OrchestratorError:
                wait = min(every, 1.0)
                continue
            # A lease that lapsed before this refresh comes back as a new one, new nonce.
            self._nonce, self._since, wait = lease.nonce or self._nonce, time.monotonic(), every

    async def _stop(self) -> None:
        async with self._calling:  # never mid-call (see __init__)
            if not self._task.done():
                self._task.cancel()
        # Best effort: whatever ended it, the update can take its own lease.
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task

    async def claim(self) -> tuple[str | None, float]:
        """Return the nonce (``None``: none held) and when it was last taken or refreshed."""
        self._claimed = True
        # Still being taken: let that call finish (it has its own timeout) rather than cancel
        # it, which could leave a lease granted whose nonce nobody knows.
        await self._taken.wait()
        await self._stop()
        nonce, since = self._nonce, self._since
        ctx, ttl = self._ctx, self._ctx.options.lease_ttl_s
        if nonce is not None and time.monotonic() - since > ttl / 4:
            # A quarter of its TTL gone: refresh it now, so that the update (after its journal
            # write, on an event loop that may lag) goes out well within it. A lease that
            # lapsed meanwhile comes back under a new nonce; one that cannot be refreshed is
            # given back, and the update takes its own.
            try:
                lease = await ctx.client.acquire_lease(ctx.app, self._machine, ttl=ttl, nonce=nonce)
            except OrchestratorError:
                await _release(ctx, self._machine, nonce)
                return None, since
            nonce, since = lease.nonce or nonce, time.monotonic()
        return nonce, since

    def abandon(self) -> None:
        """Release the lease in the background unless the update claimed it."""
        if self._claimed:
            return
        self._claimed = True
        self._ctx.state.in_background(self._give_back())

    async def _give_back(self) -> None:
        await self._stop()
        if self._nonce is not None:
            await _release(self._ctx, self._machine, self._nonce)


def refresh_every(ttl: int) -> float:
    """Return the seconds between refreshes of a lease of ``ttl`` seconds.

    flyctl refreshes every ``(ttl - 1) / 3`` s: with its 13 s lease, once during a typical
    6-8 s update, for nothing. Here a refresh comes two thirds into the lease (8 s of 13),
    which leaves 5 s, ample for one call and a retry, before it would lapse; most updates are
    over by then and need none. A lease of 6 s or less is refreshed every second.
    """
    return max(1.0, min(ttl - 5.0, 2 * (ttl - 1) / 3))


async def _refresh(
    ctx: StepContext,
    machine_id: str,
    nonce: str,
    ttl: int,
    *,
    first: float | None = None,
) -> None:
    every = refresh_every(ttl)
    wait = every if first is None else first
    while True:
        await asyncio.sleep(max(0.0, wait + random.uniform(-0.02, 0.02)))
        try:
            lease = await ctx.client.acquire_lease(ctx.app, machine_id, ttl=ttl, nonce=nonce)
            wait = every
            if lease.nonce and lease.nonce != nonce:
                # It lapsed before this refresh (an event loop seconds behind) and came back as
                # a new lease under a nonce the block does not send: give that one back, or the
                # block's own calls would be refused (409). The machine is unleased from here.
                await _release(ctx, machine_id, lease.nonce)
                ctx.note(
                    f"machine {machine_id}: its lease lapsed before it could be refreshed",
                    level="warning",
                )
                return
        except FlyNotFound:
            return  # the machine is gone (destroyed): nothing left to hold
        except OrchestratorError as exc:
            ctx.note(
                f"machine {machine_id}: lease refresh failed: {exc}",
                level="warning",
            )
            # Try again soon: the lease has less left than a full refresh period.
            wait = min(every, 1.0)


async def wait_version(
    ctx: StepContext,
    machine_id: str,
    *,
    version: str | None,
    state: str = "started",
    read: bool = True,
    fresh: bool = False,
) -> Machine | None:
    """Long-poll ``/wait`` until the machine is in ``state`` at ``version``, then verify it.

    ``fresh``: the machine was just created. Fly may not know it on the host that answers
    ``/wait`` for a moment, and answers 404; as flyctl does, that is retried for
    `NOT_FOUND_GRACE_S` before it counts.

    Args:
        read: read the machine once ``/wait`` answered and return it. A caller that waited
            for a known ``version`` and reads the machine next anyway (`wait_healthy`, which
            checks the version on every read) passes ``False``: ``/wait`` answers only once
            the machine is in ``state`` at ``version``, and ``None`` is returned.

    Raises:
        DeployError: the deadline passed, or the machine is at another version than expected
            (it reverted), or it ended in a state it will not leave.
    """
    deadline = time.monotonic() + ctx.options.machine_timeout_s
    unknown_until = time.monotonic() + NOT_FOUND_GRACE_S if fresh else 0.0
    pause = 0.1
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            current = await ctx.client.get_machine(ctx.app, machine_id)
            raise DeployError(
                f"machine {machine_id} did not reach {state} at version {version} within "
                f"{ctx.options.machine_timeout_s:g}s (it is {current.state} at {current.version})"
            )
        try:
            waited = await ctx.client.wait_machine(
                ctx.app, machine_id, state=state, version=version, timeout=min(60.0, left)
            )
            break
        except FlyNotFound:
            if time.monotonic() + pause > min(unknown_until, deadline):
                raise
            # Not known yet where /wait is answered (just created): back off, ask again.
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)
        except FlyWaitTimeout:
            current = await ctx.client.get_machine(ctx.app, machine_id)
            if current.state in ("failed", "destroyed") and state != current.state:
                message = f"machine {machine_id} is {current.state} (waiting for {state})"
                if current.state == "failed":
                    # The new config cannot run: that is the release's failure (it rolls back).
                    raise GateFailed(message) from None
                raise DeployError(message) from None
    if version is not None and waited.version and waited.version != version:
        raise _not_stuck(machine_id, waited.version, version)
    if not read and version is not None:
        return None
    machine = await ctx.client.get_machine(ctx.app, machine_id)
    if version is not None and machine.version != version:
        raise _not_stuck(machine_id, machine.version, version)
    return machine


def _not_stuck(machine_id: str, actual: str, expected: str) -> DeployError:
    return DeployError(
        f"machine {machine_id} is at version {actual}, not the expected {expected} "
        "(the change did not stick)"
    )


def _with_volume(config: Mapping[str, Any], volume_id: str | None) -> dict[str, Any]:
    out = copy.deepcopy(dict(config))
    mounts = out.get("mounts")
    if isinstance(mounts, list) and mounts:
        if volume_id is None:
            raise DeployError("the config mounts a volume but no volume was resolved for it")
        first = dict(mounts[0])
        first["volume"] = volume_id
        out["mounts"] = [first, *mounts[1:]]
    return out


def _digest(config: Mapping[str, Any]) -> str | None:
    meta = config.get("metadata")
    if isinstance(meta, Mapping):
        value = meta.get(META_CONFIG_DIGEST)
        return str(value) if value is not None else None
    return None


async def _find_launch(ctx: StepContext, launch_id: str) -> list[Machine]:
    machines = await ctx.client.list_machines(ctx.app, metadata={META_LAUNCH_ID: launch_id})
    return sorted(
        (
            m
            for m in machines
            if m.state not in _GONE and m.metadata.get(META_LAUNCH_ID) == launch_id
        ),
        key=lambda m: (m.created_at or "", m.id),
    )


async def create_machine(ctx: StepContext, step: Step) -> str:
    """Run ``machine.create``: launch the slot's machine once, even across retries and crashes."""
    params = step.params
    slot = step.slot
    if slot is None:
        raise DeployError("machine.create without a slot")
    volume_id = ctx.state.volumes.get((step.region, slot))
    config = _with_volume(params.get("config") or {}, volume_id)
    digest = _digest(config)
    launch_id = ctx.journal.launch_for(ctx.app, ctx.release, step.id, digest)
    reused = launch_id is not None
    if launch_id is None:
        launch_id = str(uuid.uuid4())
    row = ctx.journal.record_launch(
        ctx.run,
        app=ctx.app,
        release=ctx.release,
        step=step,
        launch_id=launch_id,
        config_digest=digest,
    )
    config.setdefault("metadata", {})[META_LAUNCH_ID] = launch_id
    failpoint("launch_recorded", step.id)

    machine: Machine | None = None
    nonce: str | None = None
    if reused:
        found = await _find_launch(ctx, launch_id)
        if found:
            machine = found[0]
            ctx.note(
                f"machine {machine.id} was already launched with launch id {launch_id}; "
                "reusing it instead of creating another",
                step_id=step.id,
                region=step.region,
            )
    if machine is None:
        create = asyncio.ensure_future(
            ctx.client.create_machine(
                ctx.app,
                config,
                region=step.region,
                name=str(params.get("name") or "") or None,
                lease_ttl=ctx.options.lease_ttl_s,
                min_secrets_version=_secrets_version(config),
            )
        )
        try:
            machine = await asyncio.shield(create)
            nonce = machine.nonce
        except asyncio.CancelledError:
            # Interrupted while Fly creates it: the machine comes with a lease only this
            # answer names. Left held, it blocks the next deploy or resume for its whole TTL.
            await _release_creation_lease(ctx, create)
            raise
        except (FlyAPIError, FlyTransportError) as exc:
            # Ambiguous: Fly may have made it before the error. Look before giving up.
            found = await _find_launch(ctx, launch_id)
            if not found:
                raise
            machine = found[0]
            ctx.note(
                f"create answered {type(exc).__name__} but machine {machine.id} exists with "
                f"launch id {launch_id}; using it",
                level="warning",
                step_id=step.id,
                region=step.region,
            )
    try:
        ctx.journal.set_machine(row, machine.id)
        ctx.journal.step_result(
            ctx.run, step.id, {"machine_id": machine.id, "launch_id": launch_id}
        )
        failpoint("create_sent", step.id)
        await _drop_duplicates(ctx, step, launch_id, keep=machine.id)
    except BaseException:
        # Not yet inside `leased`, which would release the creation lease on the way out.
        if nonce is not None:
            ctx.state.in_background(_release(ctx, machine.id, nonce))
        raise

    lease = (
        leased(ctx, machine.id, description=f"create {step.id}", nonce=nonce)
        if nonce is not None
        else _adopted_lease(ctx, step, machine)
    )
    async with lease as held:
        if machine.state == "stopped":
            # An adopted machine (found by its launch id) that stopped since; a fresh create
            # launches by itself ("created" is its state until it has booted).
            with contextlib.suppress(FlyAPIError):
                await ctx.client.start_machine(ctx.app, machine.id, nonce=held)
        expected = machine.version or None
        started = await wait_version(ctx, machine.id, version=expected, read=False, fresh=True)
        healthy = await wait_healthy(
            ctx,
            machine.id,
            version=started.version if started is not None else expected,
            since=time.monotonic(),
            checks=_checks(config),
        )
    ctx.state.machines[(step.region, slot)] = machine.id
    if healthy.version:
        ctx.state.versions[machine.id] = healthy.version
    ctx.journal.record_after(
        row, machine_id=machine.id, version=healthy.version, config=dict(healthy.config.raw)
    )
    ctx.journal.step_result(ctx.run, step.id, {"version": healthy.version})
    return f"machine {machine.id} started at version {healthy.version}, checks passing"


async def _release_creation_lease(ctx: StepContext, create: asyncio.Future[Machine]) -> None:
    """Wait briefly for an interrupted create's answer and hand its lease to the releases."""
    with contextlib.suppress(Exception, asyncio.CancelledError):
        made = await asyncio.wait_for(asyncio.shield(create), _CREATE_ANSWER_WAIT_S)
        if made.nonce:
            ctx.state.in_background(_release(ctx, made.id, made.nonce))


@contextlib.asynccontextmanager
async def _adopted_lease(
    ctx: StepContext, step: Step, machine: Machine
) -> AsyncIterator[str | None]:
    """Lease a machine found by its launch id, whose creation lease's nonce was lost.

    That lease (``lease_ttl`` on the create) lapses within its TTL. Watching the machine come up
    needs no lease, so it goes on unleased; starting a stopped one waits for the lease instead.
    """
    description = f"create {step.id}"
    try:
        lease = await ctx.client.acquire_lease(
            ctx.app, machine.id, ttl=ctx.options.lease_ttl_s, description=description
        )
    except FlyLeaseHeld:
        if machine.state != "stopped":
            ctx.note(
                f"machine {machine.id} still carries the lease of its create (the answer was "
                "lost); watching it come up without a lease, which lapses by itself",
                step_id=step.id,
                region=step.region,
            )
            yield None
            return
        async with leased(
            ctx, machine.id, description=description, wait_s=ctx.options.lease_ttl_s + 2.0
        ) as nonce:
            yield nonce
        return
    async with leased(ctx, machine.id, description=description, nonce=lease.nonce) as nonce:
        yield nonce


async def _drop_duplicates(ctx: StepContext, step: Step, launch_id: str, *, keep: str) -> None:
    # The client retries a create after a 5xx/408 by itself; if Fly had made the first one,
    # there are now two machines with our launch id. Exactly one may stay.
    try:
        found = await _find_launch(ctx, launch_id)
    except OrchestratorError:
        return
    for extra in (m for m in found if m.id != keep):
        ctx.note(
            f"machine {extra.id} duplicates {keep} (same launch id {launch_id}); destroying it",
            level="warning",
            step_id=step.id,
            region=step.region,
        )
        # A retried create with lease_ttl made it leased, with a nonce nobody saw: Fly refuses
        # to destroy it until that lease is taken over, so wait it out (one TTL at most).
        with contextlib.suppress(FlyNotFound):
            async with leased(
                ctx,
                extra.id,
                description=f"drop duplicate of {step.id}",
                wait_s=ctx.options.lease_ttl_s + 2.0,
            ) as nonce:
                await ctx.client.destroy_machine(ctx.app, extra.id, force=True, nonce=nonce)


async def update_machine(ctx: StepContext, step: Step) -> str:
    """Run ``machine.update``: new config at ``current_version``, then the new version verified.

    The machine as the run observed it before planning (its version and full config) is what
    the journal keeps and what ``current_version`` names; it is read again only when that is
    missing, or when Fly answers 409 because the machine changed since (then the step fails,
    naming both versions: the plan no longer fits the machine).
    """
    machine_id = step.machine
    if machine_id is None:
        raise DeployError("machine.update without a machine")
    ctx.state.region_began.setdefault(step.region, time.time())
    params = step.params
    from_version = str(params.get("from_version") or "")
    observed = ctx.state.observed.get(machine_id)
    early: EarlyLease | None = ctx.state.early_leases.pop(machine_id, None)
    taken, since = await early.claim() if early is not None else (None, None)
    async with leased(
        ctx,
        machine_id,
        description=f"update {step.id}",
        nonce=taken,
        held_since=since,
        wait_s=ctx.options.lease_wait_s,
    ) as nonce:
        if observed is not None and from_version and observed.version == from_version:
            before_version = observed.version
            before_config = dict(observed.config)
            volume = _volume_at(MachineConfig.from_api(before_config), params.get("config") or {})
        else:
            before = await ctx.client.get_machine(ctx.app, machine_id)
            before_version = before.version
            before_config = dict(before.config.raw) or before.config.to_api()
            volume = _volume_at(before.config, params.get("config") or {})
        current_version = from_version or before_version
        config = _with_volume(params.get("config") or {}, volume)
        with_predecessor(config, before_config)  # history on Fly: what a rollback goes back to
        row = ctx.journal.record_before(
            ctx.run,
            app=ctx.app,
            release=ctx.release,
            step=step,
            machine_id=machine_id,
            version=before_version,
            config=before_config,
            config_digest=_digest(config),
        )
        ctx.journal.step_result(ctx.run, step.id, {"machine_id": machine_id})
        handed = await hand_off(ctx, step, machine_id, nonce) if params.get("leader") else None
        try:
            updated = await ctx.client.update_machine(
                ctx.app,
                machine_id,
                config,
                current_version=current_version,
                nonce=nonce,
                min_secrets_version=_secrets_version(config),
            )
        except FlyLeaseHeld:
            raise
        except FlyConflict as exc:
            now = await ctx.client.get_machine(ctx.app, machine_id)
            if now.version == current_version:
                # Same version: not a change behind our back but the lease (ours lapsed and
                # someone else took it), which Fly answers with the same 409.
                raise FlyLeaseHeld(
                    exc.message,
                    status_code=exc.status_code,
                    fly_status=exc.fly_status,
                    request_id=exc.request_id,
                    method=exc.method,
                    path=exc.path,
                ) from exc
            raise DeployError(
                f"machine {machine_id} changed since the plan was made: it is at version "
                f"{now.version}, the plan expected {current_version}; nothing was sent "
                "(run the deploy again to plan from what runs now)"
            ) from exc
        failpoint("update_sent", step.id)
        expected = updated.version
        if not expected or expected == before_version:
            raise DeployError(
                f"machine {machine_id}: the update did not make a new version "
                f"(still {before_version})"
            )
        ctx.state.versions[machine_id] = expected
        # /wait answers once the new version is started; the health wait reads the machine
        # (and checks its version) when its checks can first have a result.
        await wait_version(ctx, machine_id, version=expected, read=False)
        healthy = await wait_healthy(
            ctx, machine_id, version=expected, since=time.monotonic(), checks=_checks(config)
        )
    if step.slot is not None:
        ctx.state.machines[(step.region, step.slot)] = machine_id
    ctx.journal.record_after(
        row, machine_id=machine_id, version=healthy.version, config=dict(healthy.config.raw)
    )
    ctx.journal.step_result(ctx.run, step.id, {"version": healthy.version})
    done = f"machine {machine_id} updated {before_version} -> {healthy.version}, checks passing"
    return f"{done}; {handed}" if handed else done


def _secrets_version(config: Mapping[str, Any]) -> int | None:
    """Return the secrets version the config was planned with (flyctl's min_secrets_version)."""
    meta = config.get("metadata")
    value = meta.get(META_SECRETS_VERSION) if isinstance(meta, Mapping) else None
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _checks(config: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]] | None:
    return all_checks(config) or None


def _volume_at(config: MachineConfig, desired: Mapping[str, Any]) -> str | None:
    """Return the volume the machine mounts where the desired config mounts one."""
    mounts = desired.get("mounts")
    path = None
    if isinstance(mounts, list) and mounts and isinstance(mounts[0], Mapping):
        path = mounts[0].get("path")
    for mount in config.mounts:
        if mount.volume and (path is None or mount.path == path):
            return mount.volume
    return next((m.volume for m in config.mounts if m.volume), None)


async def destroy_machine(ctx: StepContext, step: Step) -> str:
    """Run ``machine.destroy``: stop, then destroy; the volume stays (unless asked otherwise)."""
    machine_id = step.machine
    if machine_id is None:
        raise DeployError("machine.destroy without a machine")
    try:
        before = await ctx.client.get_machine(ctx.app, machine_id)
    except FlyNotFound:
        return f"machine {machine_id} was already gone"
    row = ctx.journal.record_before(
        ctx.run,
        app=ctx.app,
        release=ctx.release,
        step=step,
        machine_id=machine_id,
        version=before.version,
        config=dict(before.config.raw) or before.config.to_api(),
    )
    async with leased(
        ctx, machine_id, description=f"destroy {step.id}", wait_s=ctx.options.lease_wait_s
    ) as nonce:
        if before.state not in ("stopped", "created", *_GONE):
            await ctx.client.stop_machine(ctx.app, machine_id, nonce=nonce)
            await wait_version(ctx, machine_id, version=before.version or None, state="stopped")
        await ctx.client.destroy_machine(ctx.app, machine_id, nonce=nonce)
    ctx.journal.record_after(row, machine_id=machine_id, version=None, config=None)
    volumes = [m.volume for m in before.config.mounts if m.volume]
    if not volumes:
        return f"machine {machine_id} stopped and destroyed"
    if step.params.get("keep_volume", True):
        return f"machine {machine_id} stopped and destroyed; volume {', '.join(volumes)} kept"
    for volume_id in volumes:
        # Only on the user's explicit request (--destroy-volumes); Fly keeps it 24 h anyway.
        with contextlib.suppress(FlyNotFound):
            await ctx.client.destroy_volume(ctx.app, volume_id)
    return f"machine {machine_id} stopped and destroyed; volume {', '.join(volumes)} destroyed"
