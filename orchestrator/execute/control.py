"""Pause, promote and abort a running deploy from any host.

A wave can pause once its gates pass (``pause = true`` in ``regions/waves.toml``, or ``invoke
deploy --pause-after REGION``). The running deploy then waits before the next wave's first
step until someone, on any host, runs ``invoke promote``; ``invoke abort`` stops it at its next
safe point instead (before its next step starts; steps already changing a machine finish), and
the failure applies the on_failure of the wave whose step it stopped.

The requests travel through Fly: a second small stopped machine per app,
``<app>-deploy-control`` (``orch_role=deploy-control``), which is never leased, so any host with
the app's token can write its metadata: ``orch_promote`` and ``orch_abort``, each naming the run
(the id of its deploy-lock holder) so a request never reaches a later run. The deploy lock's
machine cannot carry them: its lease is held by the very run they address. The running deploy
reads them every ``poll_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import ConfigError, FlyAPIError, GateFailed, OrchestratorError
from orchestrator.execute.events import EventBus, NextStep, Note, utcnow
from orchestrator.execute.journal import iso
from orchestrator.execute.lock import _LOCK_GUEST, _placement
from orchestrator.fly.client import CONTROL_ROLE_KEY, FlyClient
from orchestrator.plan.steps import Step
from orchestrator.settings import Settings

__all__ = [
    "ABORT_KEY",
    "CONTROL_ROLE",
    "PROMOTE_KEY",
    "DeployAborted",
    "RunControl",
    "control_machine",
    "send_request",
]

CONTROL_ROLE = "deploy-control"
PROMOTE_KEY = "orch_promote"
ABORT_KEY = "orch_abort"


class DeployAborted(GateFailed):
    """Someone ran ``invoke abort``: the release counts as failed at the step it stopped."""


async def control_machine(client: FlyClient, settings: Settings, app: str) -> str:
    """Return the id of the app's control machine, making it (stopped) if there is none."""
    for _ in range(3):
        found = await client.list_machines(app, metadata={CONTROL_ROLE_KEY: CONTROL_ROLE})
        live = sorted(m.id for m in found if m.state not in ("destroyed", "destroying"))
        if live:
            return live[0]
        region, image = _placement(settings.root)
        config = {
            "image": image,
            "guest": dict(_LOCK_GUEST),
            "restart": {"policy": "no"},
            "auto_destroy": False,
            "metadata": {CONTROL_ROLE_KEY: CONTROL_ROLE},
        }
        try:
            made = await client.create_machine(
                app, config, region=region, name=f"{app}-deploy-control", skip_launch=True
            )
        except FlyAPIError as exc:
            if exc.fly_status == "name_taken" or exc.status_code in (409, 422):
                continue  # another host made it just now
            raise
        return made.id
    raise ConfigError(f"app {app!r}: the control machine kept changing", where="fly.toml: app")


async def send_request(
    client: FlyClient, settings: Settings, app: str, key: str, request: dict[str, Any]
) -> None:
    """Write a promote or abort request for a run into the control machine's metadata."""
    machine = await control_machine(client, settings, app)
    await client.update_metadata(app, machine, {key: json.dumps(request, sort_keys=True)})


def _request(text: str | None, run: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text or "")
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and data.get("run") == run else None


@dataclass
class RunControl:
    """What a running deploy consults before each step: a pause to wait in, an abort to obey.

    Attributes:
        client: the run's Machines API client.
        settings: the run's settings (where fly.toml is).
        app: the app.
        run: the run's id (its deploy-lock holder id).
        pause_waves: waves after which the run pauses.
        wave_regions: each wave's regions, for the messages.
        bus: where notes go.
        on_pause: told the wave when the run pauses, and ``None`` when it goes on (the record
            on Fly).
        poll_s: how often requests are read.
    """

    client: FlyClient
    settings: Settings
    app: str
    run: str
    pause_waves: Collection[int]
    wave_regions: dict[int, tuple[str, ...]]
    bus: EventBus
    on_pause: Callable[[int | None], None] = lambda wave: None
    poll_s: float = 1.0
    aborted: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self._promoted: set[int] = set()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._machine: str | None = None

    async def start(self) -> None:
        """Start reading requests (makes the control machine on first use)."""
        self._machine = await control_machine(self.client, self.settings, self.app)
        self._task = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        """Stop reading requests."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll(self) -> None:
        assert self._machine is not None
        while True:
            with contextlib.suppress(OrchestratorError):
                meta = await self.client.get_metadata(self.app, self._machine)
                promote = _request(meta.get(PROMOTE_KEY), self.run)
                abort = _request(meta.get(ABORT_KEY), self.run)
                if promote is not None and isinstance(promote.get("wave"), int):
                    self._promoted.add(promote["wave"])
                if abort is not None and self.aborted is None:
                    self.aborted = abort
                self._changed.set()
            await asyncio.sleep(self.poll_s)  # the request poll's period, not a synchronisation

    async def before_step(self, step: Step) -> None:
        """Wait while a wave before ``step``'s is paused and not promoted (or aborted)."""
        for wave in sorted(w for w in self.pause_waves if w < step.wave):
            if wave in self._promoted or self.aborted is not None:
                continue
            regions = ", ".join(self.wave_regions.get(wave, ()))
            self.on_pause(wave)
            self.bus.emit(
                Note(
                    f"paused after wave {wave} ({regions}): its gates passed",
                    level="warning",
                    next_step=NextStep.PROMOTE_OR_ABORT,
                )
            )
            while wave not in self._promoted and self.aborted is None:
                self._changed.clear()
                await self._changed.wait()
            if self.aborted is None:
                self.on_pause(None)
                self.bus.emit(Note(f"promoted after wave {wave} ({regions}): going on"))

    def check_abort(self, step: Step) -> None:
        """Raise `DeployAborted` once an abort for this run was read."""
        if self.aborted is not None:
            by = self.aborted.get("by") or "someone"
            reason = self.aborted.get("reason") or "no reason given"
            raise DeployAborted(
                f"{step.id}: aborted by {by} at {self.aborted.get('at', '?')} ({reason}); "
                "stopped before this step"
            )


def request_body(run: str, by: str, **extra: Any) -> dict[str, Any]:
    """Return a request naming ``run``, who sent it and when."""
    return {"run": run, "by": by, "at": iso(utcnow()), **extra}
