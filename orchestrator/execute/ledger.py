"""Keep the app's run record on Fly, so any host can list releases and resume a killed run.

The holder of the deploy lock writes two keys into the lock machine's metadata
(`orchestrator.execute.lock`), as its run goes:

- ``orch_run``: the current (or last) run's intent: command, release, image, regions, who and
  where from, which regions' health gates passed, whether an automatic rollback began and to
  what, and the outcome once it ends. A run killed on host A leaves it unfinished; ``invoke
  deploy --resume`` on host B reads it and finishes the run (`remote_resumable`).
- ``orch_releases``: the app's last releases, newest first (id, image, command, when, by whom,
  outcome), which ``invoke releases`` lists from any host.

Writes go through the lock (the lease guards the machine) in the background and in order; one
that fails is dropped rather than failing the deploy, so these records are as good as the
API was reachable. The local journal stays the detailed log.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from orchestrator.connect import Connection
from orchestrator.errors import ConfigError, FlyNotFound
from orchestrator.execute.events import (
    Event,
    GateResult,
    ReleaseFinished,
    ReleaseStarted,
    RestorePointTaken,
    RollbackStarted,
)
from orchestrator.execute.journal import RunRecord, iso
from orchestrator.execute.lock import DeployLock, find_lock_machine
from orchestrator.plan.steps import StepKind
from orchestrator.settings import Settings

__all__ = [
    "RELEASES_KEY",
    "RUN_KEY",
    "Ledger",
    "ReleaseEntry",
    "RemoteRun",
    "RunIntent",
    "origin_of",
    "read_ledger",
    "remote_resumable",
]

RUN_KEY = "orch_run"
RELEASES_KEY = "orch_releases"
KEEP_RELEASES = 20
KEEP_RESTORE_POINTS = 5


def origin_of(settings: Settings) -> str:
    """Return a short id of this project directory on this host (which journal ran a run)."""
    import socket

    text = f"{socket.gethostname()}:{settings.root.resolve()}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class RunIntent:
    """What a run set out to do and how far it got, as recorded on Fly.

    Attributes:
        command: ``deploy`` or ``rollback``.
        release: the release it rolls out.
        image: the image.
        regions: the regions it covers, in wave order.
        by: who ran it (``user@host``).
        ci_url: the CI run's URL, if any.
        origin: which directory on which host ran it (`origin_of`).
        started_at: ISO timestamp.
        phase: ``running``, ``rolling_back`` or ``finished``.
        outcome: ``succeeded``, ``noop``, ``failed``, ``rolled_back``; ``None`` until it ends.
        finished_at: ISO timestamp, once it ends.
        gated: regions whose health gate passed.
        failed: regions whose gate failed.
        rollback_to: the release an automatic rollback puts back, once it began.
        rollback_regions: the regions it rolls back.
        id: the run's id (its deploy-lock holder's), which promote and abort requests name.
        paused_after: the wave it waits after for ``invoke promote``, while paused.
    """

    command: str
    release: str
    image: str
    regions: tuple[str, ...]
    by: str
    ci_url: str
    origin: str
    started_at: str
    phase: str = "running"
    outcome: str | None = None
    finished_at: str | None = None
    gated: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    rollback_to: str | None = None
    rollback_regions: tuple[str, ...] = ()
    id: str = ""
    paused_after: int | None = None

    def to_text(self) -> str:
        """Return the intent as compact JSON (the metadata value)."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_text(cls, text: str | None) -> RunIntent | None:
        """Read an intent written by `to_text`; ``None`` when missing or malformed."""
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(
                command=str(data["command"]),
                release=str(data["release"]),
                image=str(data.get("image", "")),
                regions=tuple(str(r) for r in data.get("regions", ())),
                by=str(data.get("by", "")),
                ci_url=str(data.get("ci_url", "")),
                origin=str(data.get("origin", "")),
                started_at=str(data.get("started_at", "")),
                phase=str(data.get("phase", "running")),
                outcome=data.get("outcome"),
                finished_at=data.get("finished_at"),
                gated=tuple(str(r) for r in data.get("gated", ())),
                failed=tuple(str(r) for r in data.get("failed", ())),
                rollback_to=data.get("rollback_to"),
                rollback_regions=tuple(str(r) for r in data.get("rollback_regions", ())),
                id=str(data.get("id", "")),
                paused_after=data.get("paused_after"),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True, slots=True)
class ReleaseEntry:
    """One line of ``invoke releases``.

    Attributes:
        release: the release id.
        image: its image.
        command: ``deploy`` or ``rollback``.
        at: when the run started (ISO).
        by: who ran it.
        outcome: how it ended, ``running`` while it runs (or if it was killed).
        ci_url: the CI run's URL, if any.
        restore_points: the snapshots taken before the run changed the machines, one mapping
            per machine (``region``, ``slot``, ``machine``, ``volume``, ``snapshot``,
            ``digest``, ``last_seq``, ``release_before``, ``at``).
    """

    release: str
    image: str
    command: str
    at: str
    by: str
    outcome: str
    ci_url: str = ""
    restore_points: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Return the entry as JSON-ready data."""
        out = asdict(self)
        out["restore_points"] = [dict(p) for p in self.restore_points]
        return out


def _entries(text: str | None) -> list[ReleaseEntry]:
    try:
        data = json.loads(text or "[]")
        return [
            ReleaseEntry(
                release=str(d["release"]),
                image=str(d.get("image", "")),
                command=str(d.get("command", "deploy")),
                at=str(d.get("at", "")),
                by=str(d.get("by", "")),
                outcome=str(d.get("outcome", "")),
                ci_url=str(d.get("ci_url", "")),
                restore_points=tuple(
                    dict(p) for p in d.get("restore_points") or () if isinstance(p, dict)
                ),
            )
            for d in data
            if isinstance(d, dict)
        ]
    except (json.JSONDecodeError, KeyError, TypeError):
        return []


def _entries_text(entries: Sequence[ReleaseEntry]) -> str:
    # Restore points of older releases are dropped: metadata is small, and Fly expires the
    # snapshots after their retention (5 days by default) anyway.
    kept = [
        e if i < KEEP_RESTORE_POINTS else replace(e, restore_points=())
        for i, e in enumerate(entries[:KEEP_RELEASES])
    ]
    return json.dumps([e.to_json() for e in kept], separators=(",", ":"))


@dataclass
class Ledger:
    """An event subscriber that keeps the run's intent and the release list on Fly."""

    lock: DeployLock
    settings: Settings
    command: str
    intent: RunIntent | None = None
    releases: list[ReleaseEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.releases = _entries(self.lock.metadata.get(RELEASES_KEY))

    def __call__(self, event: Event) -> None:
        """Record what ``event`` changes in the run's intent."""
        if isinstance(event, ReleaseStarted) and self.intent is None:
            if not event.mutating_steps:
                return  # nothing changes: not a release, nothing to resume
            holder = self.lock.holder
            self.intent = RunIntent(
                command=self.command,
                release=event.release,
                image=event.image,
                regions=tuple(event.regions),
                by=f"{holder.user}@{holder.host}" if holder else "",
                ci_url=holder.ci_url if holder else "",
                origin=origin_of(self.settings),
                started_at=iso(event.at),
                id=holder.id if holder else "",
            )
            self.releases.insert(
                0,
                ReleaseEntry(
                    release=event.release,
                    image=event.image,
                    command=self.command,
                    at=self.intent.started_at,
                    by=self.intent.by,
                    outcome="running",
                    ci_url=self.intent.ci_url,
                ),
            )
            self._write(releases=True)
        elif self.intent is None:
            return
        elif isinstance(event, GateResult) and event.step.kind == StepKind.GATE_HEALTH:
            if event.passed and event.step.region not in self.intent.gated:
                self._set(gated=(*self.intent.gated, event.step.region))
            elif not event.passed and event.step.region not in self.intent.failed:
                self._set(failed=(*self.intent.failed, event.step.region))
        elif isinstance(event, GateResult) and not event.passed:
            if event.step.region not in self.intent.failed:
                self._set(failed=(*self.intent.failed, event.step.region))
        elif isinstance(event, RestorePointTaken):
            self._restore_point(event)
        elif isinstance(event, RollbackStarted):
            self._set(
                phase="rolling_back",
                rollback_to=event.release,
                rollback_regions=tuple(event.regions),
            )
        elif isinstance(event, ReleaseFinished):
            self.intent = replace(
                self.intent, phase="finished", outcome=event.outcome, finished_at=iso(event.at)
            )
            if self.releases and self.releases[0].at == self.intent.started_at:
                self.releases[0] = replace(self.releases[0], outcome=event.outcome)
            self._write(releases=True)

    def _restore_point(self, event: RestorePointTaken) -> None:
        """Add a snapshot to the current release's restore points (one per machine)."""
        if self.intent is None or not self.releases:
            return
        if self.releases[0].at != self.intent.started_at:
            return
        point = {
            "region": event.region,
            "slot": event.slot,
            "machine": event.machine,
            "volume": event.volume,
            "snapshot": event.snapshot,
            "digest": event.digest,
            "last_seq": event.last_seq,
            "release_before": event.release_before,
            "at": iso(event.at),
        }
        kept = [p for p in self.releases[0].restore_points if p.get("machine") != event.machine]
        self.releases[0] = replace(self.releases[0], restore_points=(*kept, point))
        self._write(releases=True)

    def paused(self, wave: int | None) -> None:
        """Record that the run waits after ``wave`` for a promote (``None``: it goes on)."""
        if self.intent is not None:
            self._set(phase="paused" if wave is not None else "running", paused_after=wave)

    def _set(self, **changes: Any) -> None:
        assert self.intent is not None
        self.intent = replace(self.intent, **changes)
        self._write()

    def _write(self, *, releases: bool = False) -> None:
        assert self.intent is not None
        values = {RUN_KEY: self.intent.to_text()}
        if releases:
            values[RELEASES_KEY] = _entries_text(self.releases)
        self.lock.record(values)


async def read_ledger(conn: Connection) -> tuple[RunIntent | None, list[ReleaseEntry]]:
    """Return the app's last run intent and its releases, as recorded on Fly (reads only)."""
    try:
        machine = await find_lock_machine(conn.client, conn.app)
    except FlyNotFound:
        return None, []
    if machine is None:
        return None, []
    meta = await conn.client.get_metadata(conn.app, machine.id)
    intent = RunIntent.from_text(meta.get(RUN_KEY))
    held = await conn.client.get_lease(conn.app, machine.id) is not None
    entries = []
    for entry in _entries(meta.get(RELEASES_KEY)):
        # "running" is only true of the current run while someone holds the lock; any other
        # was killed before it could say how it ended.
        live = held and intent is not None and intent.started_at == entry.at
        if entry.outcome == "running" and not live:
            entry = replace(entry, outcome="interrupted")
        entries.append(entry)
    return intent, entries


@dataclass(frozen=True, slots=True)
class RemoteRun:
    """A run recorded on Fly that another directory (or host) started and did not finish."""

    intent: RunIntent

    @property
    def owes_rollback(self) -> bool:
        """Tell whether finishing it means rolling back (a gate failed, or a rollback began)."""
        if self.intent.phase == "rolling_back":
            return True
        # Killed between a failed gate and its rollback; a run that ended "failed" (its wave
        # halts) is re-planned instead.
        return self.intent.phase == "running" and bool(self.intent.failed)

    def as_record(self) -> RunRecord:
        """Return the run as the resume machinery takes it (no journal run: ``run`` is 0)."""
        return RunRecord(
            run=0,
            release=self.intent.release,
            app="",
            command=self.intent.command,
            spec_digest="",
            image=self.intent.image,
            regions=self.intent.regions,
            started_at=self.intent.started_at,
            finished_at=None,
            outcome=None,
            error=None,
            resumed_from=None,
            rollback_of=None,
        )

    def describe(self) -> str:
        """Return one line naming the run."""
        who = f" by {self.intent.by}" if self.intent.by else ""
        return (
            f"the {self.intent.command} of {self.intent.release}{who} started "
            f"{self.intent.started_at} (recorded on Fly)"
        )


def remote_resumable(
    settings: Settings, intent: RunIntent | None, local: RunRecord | None
) -> RemoteRun | None:
    """Decide whether ``--resume`` finishes the run recorded on Fly instead of the journal's.

    Fly's record wins when it is another directory's and newer than the journal's candidate:
    unfinished, it is the run to finish; finished, there is nothing to resume.

    Raises:
        ConfigError: the newest run finished elsewhere (nothing to resume).
    """
    if intent is None or intent.origin == origin_of(settings):
        return None
    if intent.command not in ("deploy", "rollback"):
        return None
    if local is not None and intent.started_at <= local.started_at:
        return None
    if intent.phase == "finished" and intent.outcome != "failed":
        raise ConfigError(
            f"nothing to resume: the newest run, the {intent.command} of {intent.release} by "
            f"{intent.by} started {intent.started_at}, ended {intent.outcome}",
            option="resume",
        )
    return RemoteRun(intent)
