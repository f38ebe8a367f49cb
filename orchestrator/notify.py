"""Tell webhooks how a deploy goes: ``[notify]`` in ``regions/waves.toml``.

::

    [notify]
      # Environment variables holding webhook URLs; the URLs are secrets and stay out of files.
      webhooks = ["DEPLOY_SLACK_WEBHOOK"]
      timeout = "5s"

Each webhook receives a JSON ``POST`` on run start, wave start, each gate's pass or fail, a
failed step, a pause, an automatic rollback's start and end, and the run's finish. Every body
has ``event``, ``app``, ``release`` and a Slack-compatible ``text`` (so a Slack incoming webhook
shows it as is), plus the event's own fields. Posts go out in order, one at a time per
webhook, in the background; a webhook that fails or is slow never fails or slows the deploy
(the run notes it once, naming the variable, never the URL). The URLs are never printed,
logged or journaled.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from orchestrator.errors import ConfigError
from orchestrator.execute.events import (
    Event,
    EventBus,
    GateResult,
    Note,
    ReleaseFinished,
    ReleaseStarted,
    RollbackFinished,
    RollbackStarted,
    StepFinished,
    StepStarted,
)
from orchestrator.fleetconfig.values import Table, read_toml
from orchestrator.hints import with_next_step

__all__ = ["Notifier", "NotifySpec", "read_notify"]

WAVES_TOML = "regions/waves.toml"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_STOP = object()


@dataclass(frozen=True, slots=True)
class NotifySpec:
    """``[notify]``: where to send deploy notifications.

    Attributes:
        webhooks: names of environment variables that hold webhook URLs.
        timeout_s: how long one post may take.
    """

    webhooks: tuple[str, ...] = ()
    timeout_s: float = 5.0


def read_notify(root: Path) -> NotifySpec:
    """Read ``[notify]`` of ``regions/waves.toml`` (none: no notifications).

    Raises:
        ConfigError: a malformed section, a webhook entry that is not a variable name (a URL
            written into the file is refused: it is a secret).
    """
    if not (root / WAVES_TOML).exists():
        return NotifySpec()
    top = read_toml(root, WAVES_TOML, {})
    body = top.get("notify")
    if body is None:
        return NotifySpec()
    if not isinstance(body, dict):
        raise ConfigError("expected a table: [notify]", where=f"{WAVES_TOML}: notify")
    table = Table(body, WAVES_TOML, "notify", ("webhooks", "timeout"))
    hooks = body.get("webhooks", [])
    where = table.at("webhooks")
    if not isinstance(hooks, list) or not all(isinstance(h, str) for h in hooks):
        raise ConfigError("expected an array of environment variable names", where=where)
    for hook in hooks:
        if "://" in hook:
            raise ConfigError(
                "a URL is a secret: name an environment variable that holds it instead",
                where=where,
            )
        if not _ENV_NAME.match(hook):
            raise ConfigError(f"{hook!r} is not an environment variable name", where=where)
    timeout = table.duration("timeout", positive=True, limit_s=60.0)
    return NotifySpec(webhooks=tuple(hooks), timeout_s=5.0 if timeout is None else timeout)


class Notifier:
    """An event subscriber that posts notifications to the webhooks of a `NotifySpec`.

    Create it inside the running event loop; call `close` before the loop ends.
    """

    def __init__(
        self,
        spec: NotifySpec,
        environ: Mapping[str, str],
        *,
        app: str,
        command: str,
        bus: EventBus,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.app = app
        self.command = command
        self.bus = bus
        self.sent = 0
        self.failed = 0
        self._release = ""
        self._waves: dict[int, set[str]] = {}
        self._client = httpx.AsyncClient(timeout=spec.timeout_s, transport=transport)
        self._queues: list[tuple[str, asyncio.Queue[object]]] = []
        self._workers: list[asyncio.Task[None]] = []
        missing = []
        for name in spec.webhooks:
            url = environ.get(name, "").strip()
            if not url:
                missing.append(name)
                continue
            queue: asyncio.Queue[object] = asyncio.Queue()
            self._queues.append((name, queue))
            self._workers.append(asyncio.create_task(self._worker(name, url, queue)))
        for name in missing:
            bus.emit(Note(f"notify: {name} is not set: no notifications to it", level="warning"))

    # -- events -----------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        """Turn a run event into a notification, when it is one worth sending."""
        body = self._body(event)
        if body is not None:
            self.post(body)

    def _body(self, event: Event) -> dict[str, Any] | None:
        if isinstance(event, ReleaseStarted):
            self._release = event.release
            where = ", ".join(event.regions) or "no region"
            return self._make(
                "run_started",
                f"{self.command} of {event.release} ({event.image}) started in {where}",
                image=event.image,
                regions=list(event.regions),
                mutating_steps=event.mutating_steps,
            )
        if isinstance(event, StepStarted) and event.step.wave not in self._waves:
            self._waves[event.step.wave] = set()
            return self._make(
                "wave_started",
                f"{self._release}: wave {event.step.wave} started ({event.step.region})",
                wave=event.step.wave,
                region=event.step.region,
            )
        if isinstance(event, GateResult):
            verdict = "passed" if event.passed else "FAILED"
            return self._make(
                "gate_passed" if event.passed else "gate_failed",
                f"{self._release}: {event.step.id} {verdict}: {event.detail}",
                gate=event.step.id,
                region=event.step.region,
                detail=event.detail,
            )
        if isinstance(event, StepFinished) and event.outcome == "failed":
            # A machine step fails the release too (its checks kept failing on the new config).
            return self._make(
                "step_failed",
                f"{self._release}: {event.step.id} failed: {event.error or 'no detail'}",
                step=event.step.id,
                region=event.step.region,
                error=event.error,
            )
        if isinstance(event, RollbackStarted):
            return self._make(
                "rollback_started",
                f"{event.failed_release} failed ({event.reason}); rolling back "
                f"{', '.join(event.regions)} to {event.release} ({event.policy})",
                rollback_to=event.release,
                regions=list(event.regions),
                policy=event.policy,
                reason=event.reason,
            )
        if isinstance(event, RollbackFinished):
            return self._make(
                "rollback_finished",
                f"rollback to {event.release}: {event.outcome}",
                rollback_to=event.release,
                outcome=event.outcome,
                error=event.error,
            )
        if isinstance(event, ReleaseFinished):
            error = f": {with_next_step(event.error, event.next_step)}" if event.error else ""
            return self._make(
                "run_finished",
                f"{self.command} of {event.release} {event.outcome}{error}",
                outcome=event.outcome,
                error=event.error,
            )
        return None

    def paused(self, wave: int | None) -> None:
        """Notify that the run waits after ``wave`` for ``invoke promote`` (``None``: promoted)."""
        if wave is None:
            self.post(self._make("promoted", f"{self._release}: promoted; going on"))
        else:
            self.post(
                self._make(
                    "paused",
                    f"{self._release}: paused after wave {wave}; `invoke promote` continues, "
                    "`invoke abort` stops",
                    wave=wave,
                )
            )

    def _make(self, kind: str, text: str, **fields: Any) -> dict[str, Any]:
        return {
            "event": kind,
            "app": self.app,
            "command": self.command,
            "release": self._release,
            "text": f"[{self.app}] {text}",
            **fields,
        }

    # -- sending ----------------------------------------------------------------------------

    def post(self, body: dict[str, Any]) -> None:
        """Queue ``body`` for every webhook (never blocks, never raises)."""
        for _, queue in self._queues:
            queue.put_nowait(body)

    async def _worker(self, name: str, url: str, queue: asyncio.Queue[object]) -> None:
        warned = False
        while True:
            body = await queue.get()
            if body is _STOP:
                return
            try:
                resp = await self._client.post(url, json=body)
                ok = resp.is_success
                problem = f"answered {resp.status_code}"
            except httpx.HTTPError as exc:
                ok = False
                # The exception's text may carry the URL: say only what kind of failure it was.
                problem = type(exc).__name__
            if ok:
                self.sent += 1
                continue
            self.failed += 1
            if not warned:
                warned = True
                self.bus.emit(
                    Note(
                        f"notify: the webhook in {name} {problem}; the deploy goes on "
                        "(further failures are not repeated)",
                        level="warning",
                    )
                )

    async def close(self, timeout: float = 15.0) -> None:
        """Send what is queued (for at most ``timeout`` seconds), then stop."""
        for _, queue in self._queues:
            queue.put_nowait(_STOP)
        if self._workers:
            _, pending = await asyncio.wait(self._workers, timeout=timeout)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._client.aclose()
