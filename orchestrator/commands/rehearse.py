"""``invoke rehearse``: try a release on a fork of the primary's data before touching the fleet.

No peer offers it: flyctl refuses canaries for apps with volumes. A rehearsal, under the deploy
lock so no deploy runs meanwhile:

1. destroys what a killed rehearsal left (`clean_rehearsals`: machines marked
   ``orch_role = rehearsal``, unattached volumes named ``rehearsal``; ``invoke deploy`` does the
   same under its lock);
2. forks the primary region's writer volume into the region asked (``source_volume_id``, as
   ``fly volumes fork`` does);
3. creates one machine of the release on the fork without launching it, cordons it, then starts
   it: the edge proxy never balances traffic onto it (only requests that name it with
   ``fly-force-instance-id`` reach it), and ``orch_role`` keeps it out of every fleet listing;
4. first runs fly.toml's release command as a deploy does (a temporary machine of the
   release, ``init.cmd`` the command, never restarted) but on the fork, then waits for the
   rehearsal machine's checks and the app's ``/status``, and sends it the wave's bake traffic
   to judge error rate and p95 from its ``/metrics``, as the metrics gate does;
5. destroys the machine and the fork, whatever happened.

The fleet's machines, versions and volumes are never touched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.connect import Connection, connect
from orchestrator.errors import ConfigError, DeployError, FlyNotFound, OrchestratorError
from orchestrator.execute.context import ExecuteOptions
from orchestrator.execute.failpoints import failpoint
from orchestrator.execute.lock import DeployLock
from orchestrator.execute.metrics import MetricsFigures, Window, judge, parse_scrape
from orchestrator.execute.release import exit_code, wait_exit
from orchestrator.execute.secretstate import observe_secrets
from orchestrator.fleetconfig.load import load_checked_spec
from orchestrator.fleetconfig.model import DeploySpec
from orchestrator.fly.client import CONTROL_ROLE_KEY
from orchestrator.plan.assemble import fork_source
from orchestrator.plan.config import META_SLOT, RegionConfigs, Secrets, release_id
from orchestrator.plan.fleet import observe_fleet
from orchestrator.plan.graph import release_command_config, spec_waves
from orchestrator.settings import Settings

__all__ = ["REHEARSAL_ROLE", "Rehearsal", "RehearseRequest", "clean_rehearsals", "rehearse"]

REHEARSAL_ROLE = "rehearsal"
FORK_NAME = "rehearsal"
_GONE = frozenset({"destroyed", "destroying"})


@dataclass(frozen=True, slots=True)
class RehearseRequest:
    """What to rehearse: the region the machine runs in, and the image (default fly.toml's)."""

    region: str
    image: str | None = None


@dataclass
class Rehearsal:
    """How a rehearsal went, with its figures.

    Attributes:
        release: the release rehearsed.
        image: its image.
        region: where the machine ran.
        source_volume: the primary volume forked.
        fork: the fork's id.
        machine: the rehearsal machine's id.
        cleaned: ids a killed rehearsal had left, destroyed first.
        release_command: the release command's exit code and output tail, when fly.toml has one.
        health: the machine's checks and the app's ``/status`` answer.
        metrics: the bake's figures, as the metrics gate judges them.
        problems: why it failed, one line each; empty when it passed.
        duration_s: how long it took.
    """

    release: str
    image: str
    region: str
    source_volume: str | None = None
    fork: str | None = None
    machine: str | None = None
    cleaned: list[str] = field(default_factory=list)
    release_command: dict[str, Any] | None = None
    health: dict[str, Any] = field(default_factory=dict)
    metrics: MetricsFigures | None = None
    problems: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        """Tell whether every check passed."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """Return the rehearsal as JSON-ready data."""
        m = self.metrics
        return {
            "verdict": "passed" if self.passed else "failed",
            "release": self.release,
            "image": self.image,
            "region": self.region,
            "source_volume": self.source_volume,
            "fork": self.fork,
            "machine": self.machine,
            "cleaned": list(self.cleaned),
            "release_command": self.release_command,
            "health": dict(self.health),
            "metrics": None
            if m is None
            else {
                "requests": m.requests,
                "errors": m.errors,
                "error_rate": round(m.error_rate, 5),
                "p95_ms": m.p95_ms,
                "max_error_rate": m.max_error_rate,
                "max_p95_ms": m.max_p95_ms,
                "bake_s": m.bake_s,
            },
            "problems": list(self.problems),
            "duration_s": round(self.duration_s, 3),
        }


async def clean_rehearsals(conn: Connection) -> list[str]:
    """Destroy the machines and fork volumes a killed rehearsal left; return their ids."""
    try:
        machines = await conn.client.list_machines(
            conn.app, metadata={CONTROL_ROLE_KEY: REHEARSAL_ROLE}
        )
    except FlyNotFound:
        return []
    gone: list[str] = []
    for m in machines:
        if m.state in _GONE:
            continue
        await conn.client.destroy_machine(conn.app, m.id, force=True)
        gone.append(m.id)
    for v in await conn.client.list_volumes(conn.app):
        if v.name != FORK_NAME or v.state in ("pending_destroy", "destroyed", "destroying"):
            continue
        if v.attached_machine_id and v.attached_machine_id not in gone:
            continue
        await _destroy_volume(conn, v.id)
        gone.append(v.id)
    return gone


async def rehearse(
    settings: Settings, request: RehearseRequest, *, options: ExecuteOptions | None = None
) -> Rehearsal:
    """Rehearse a release on a fork of the primary's data; return the verdict and figures.

    Raises:
        ConfigError: an unknown region or an empty image (nothing was changed).
        DeployLocked: a deploy, rollback or scale holds the app.
        OrchestratorError: Fly or the local Fly could not be reached.
    """
    options = options or ExecuteOptions()
    spec = load_checked_spec(
        settings.root, app=settings.app, regions=(request.region,), image=request.image
    )
    if request.region not in spec.regions:
        raise ConfigError(f"unknown region {request.region!r}", where="--region")
    began = time.monotonic()
    async with connect(settings, timeout=options.api_timeout_s) as conn:
        # The app's secrets, as a deploy gives them to its machines (and to the release id).
        secrets = await observe_secrets(conn.client, conn.app, settings.root)
        release = release_id(spec, secrets)
        result = Rehearsal(release=release, image=spec.image, region=request.region)
        with DeployLock(conn.settings, conn.app, release=release, command="rehearse"):
            result.cleaned = await clean_rehearsals(conn)
            try:
                await _run(conn, spec, request.region, result, options, secrets)
            except OrchestratorError as exc:
                result.problems.append(" ".join(str(exc).split()))
            finally:
                await _tear_down(conn, result)
    result.duration_s = time.monotonic() - began
    return result


async def _run(
    conn: Connection,
    spec: DeploySpec,
    region: str,
    result: Rehearsal,
    options: ExecuteOptions,
    secrets: Secrets,
) -> None:
    fleet = await observe_fleet(conn.client, conn.app)
    mount = spec.mount
    config = RegionConfigs(spec, region, release=result.release, secrets=secrets).config(1)
    meta = dict(config.get("metadata") or {})
    meta.pop(META_SLOT, None)
    meta[CONTROL_ROLE_KEY] = REHEARSAL_ROLE
    config["metadata"] = meta
    if mount is not None:
        source = fork_source(fleet, spec.primary_region, mount.source)
        if source is None:
            raise DeployError(f"no volume in the primary region {spec.primary_region} to fork")
        result.source_volume = source.id
        fork = await conn.client.create_volume(
            conn.app,
            name=FORK_NAME,
            region=region,
            size_gb=source.size_gb,
            source_volume_id=source.id,
            require_unique_zone=False,
        )
        result.fork = fork.id
        await _wait_volume(conn, fork.id, options)
        config["mounts"][0]["volume"] = fork.id
    if spec.release is not None:
        await _release_command(conn, spec, region, config, result, secrets)
        if result.problems:
            return
    machine = await conn.client.create_machine(
        conn.app, config, region=region, name=f"{conn.app}-rehearsal", skip_launch=True
    )
    result.machine = machine.id
    # Out of the proxy's rotation before it ever runs.
    await conn.client.cordon_machine(conn.app, machine.id)
    await conn.client.start_machine(conn.app, machine.id)
    failpoint("rehearsal_started")
    await conn.client.wait_machine(
        conn.app, machine.id, state="started", timeout=int(min(60, options.machine_timeout_s))
    )
    await _health(conn, machine.id, result, options)
    if result.problems:
        return
    wave = next((w for w in spec_waves(spec) if region in w.regions), None)
    bake_s = max(1.0, wave.bake_s if wave else 1.0)
    result.metrics = await _bake(
        conn,
        machine.id,
        region,
        bake_s,
        options,
        max_error_rate=wave.max_error_rate if wave else 0.05,
        max_p95_ms=wave.max_p95_ms if wave else 1000.0,
    )
    result.problems.extend(result.metrics.problems)


async def _release_command(
    conn: Connection,
    spec: DeploySpec,
    region: str,
    config: Mapping[str, Any],
    result: Rehearsal,
    secrets: Secrets,
) -> None:
    """Run the release command as a deploy does (a temporary machine), on the fork's data."""
    assert spec.release is not None
    command = " ".join(spec.release.argv)
    release_config = release_command_config(spec, result.release, secrets)
    meta = dict(release_config.get("metadata") or {})
    meta[CONTROL_ROLE_KEY] = REHEARSAL_ROLE
    release_config["metadata"] = meta
    if config.get("mounts"):
        # Fly runs it without a volume; a rehearsal runs it on the copy it rehearses against.
        release_config["mounts"] = [dict(m) for m in config["mounts"]]
    machine = await conn.client.create_machine(
        conn.app, release_config, region=region, name=f"{conn.app}-rehearsal-release"
    )
    try:
        deadline = time.monotonic() + spec.release.timeout_s
        if not await wait_exit(conn.client, conn.app, machine.id, deadline):
            result.release_command = {"command": command, "exit_code": None}
            result.problems.append(
                f"the release command `{command}` did not finish within "
                f"{spec.release.timeout_s:g}s"
            )
            return
        code = exit_code(await conn.client.list_events(conn.app, machine.id))
        result.release_command = {"command": command, "exit_code": code}
        if code != 0:
            result.problems.append(f"the release command `{command}` exited {code}")
    finally:
        await conn.client.destroy_machine(conn.app, machine.id, force=True)
        fork = result.fork
        if fork is not None:
            await _detached(conn, fork)


async def _detached(conn: Connection, volume_id: str) -> None:
    """Wait until no machine holds the volume (a destroyed machine lets go of it)."""
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        v = await conn.client.get_volume(conn.app, volume_id)
        if not v.attached_machine_id:
            return
        await asyncio.sleep(0.2)


async def _health(
    conn: Connection, machine_id: str, result: Rehearsal, options: ExecuteOptions
) -> None:
    """Wait for the machine's checks to pass and ``/status`` to answer 200."""
    # A rehearsal is a quick look: a release whose checks do not pass within 30 s fails it.
    deadline = time.monotonic() + min(options.health_timeout_s, 30.0)
    while True:
        m = await conn.client.get_machine(conn.app, machine_id)
        checks = {c.name: c.status for c in m.checks}
        answer = await conn.probe.status(machine_id=machine_id) if conn.probe.reachable else None
        status_ok = answer is None or answer.ok
        if m.checks_passing and status_ok:
            result.health = {
                "checks": checks,
                "status": None if answer is None else answer.status_code,
                "role": None if answer is None else answer.body.get("role"),
                "last_seq": None if answer is None else answer.body.get("last_seq"),
            }
            return
        if time.monotonic() > deadline:
            said = "no answer" if answer is None else answer.describe()
            result.health = {"checks": checks, "status": said}
            result.problems.append(f"checks or /status not passing: {checks}, /status {said}")
            return
        await asyncio.sleep(min(options.poll_s, 0.5))


async def _bake(
    conn: Connection,
    machine_id: str,
    region: str,
    bake_s: float,
    options: ExecuteOptions,
    *,
    max_error_rate: float,
    max_p95_ms: float,
) -> MetricsFigures:
    """Send the machine traffic for ``bake_s`` and judge its counters as the metrics gate does."""
    before = await _scrape(conn, machine_id)
    sent = failed = 0
    rate = options.bake_rps or 20.0
    end = time.monotonic() + bake_s
    while time.monotonic() < end:
        answer = await conn.probe.request("GET", "/", machine_id=machine_id)
        sent += 1
        failed += 0 if answer.status_code is not None and answer.status_code < 500 else 1
        await asyncio.sleep(1.0 / rate)
    after = await _scrape(conn, machine_id)
    window = Window()
    window.add(before, after)
    return judge(
        window,
        region=region,
        machines=(machine_id,),
        bake_s=bake_s,
        max_error_rate=max_error_rate,
        max_p95_ms=max_p95_ms,
        traffic_sent=sent,
        traffic_failed=failed,
    )


async def _scrape(conn: Connection, machine_id: str) -> Any:
    answer = await conn.probe.metrics(machine_id)
    if answer.status_code != 200:
        raise DeployError(f"/metrics of {machine_id}: {answer.describe()}")
    try:
        return parse_scrape(machine_id, answer.text)
    except ValueError as exc:
        raise DeployError(f"/metrics of {machine_id}: {exc}") from exc


async def _tear_down(conn: Connection, result: Rehearsal) -> None:
    """Destroy the rehearsal machine and the fork, even after a failure."""
    if result.machine is not None:
        try:
            await conn.client.destroy_machine(conn.app, result.machine, force=True)
        except FlyNotFound:
            pass
    if result.fork is not None:
        await _destroy_volume(conn, result.fork)


async def _destroy_volume(conn: Connection, volume_id: str) -> None:
    """Destroy a volume once its machine has let go of it (Fly detaches after the destroy)."""
    deadline = time.monotonic() + 30.0
    while True:
        try:
            v = await conn.client.get_volume(conn.app, volume_id)
        except FlyNotFound:
            return
        if v.state in ("pending_destroy", "destroyed", "destroying"):
            return
        if not v.attached_machine_id or time.monotonic() > deadline:
            await conn.client.destroy_volume(conn.app, volume_id)
            return
        await asyncio.sleep(0.2)


async def _wait_volume(conn: Connection, volume_id: str, options: ExecuteOptions) -> None:
    deadline = time.monotonic() + options.volume_timeout_s
    while True:
        v = await conn.client.get_volume(conn.app, volume_id)
        if v.state == "created":
            return
        if time.monotonic() > deadline:
            raise DeployError(f"the fork {volume_id} is still {v.state}")
        await asyncio.sleep(min(options.poll_s, 0.3))
