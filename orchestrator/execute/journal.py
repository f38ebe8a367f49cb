"""Record every run, step and machine change in SQLite, so a crash can be resumed and undone.

The journal lives at ``<root>/.orchestrator/journal.db`` (git-ignored), next to the user's
``fly.toml``. Three tables matter:

- ``releases``: one row per *run* (one execution of a release: a deploy, a resume, a rollback).
  The release id (``v2-3f9a2c1b``) is not unique here: deploying the same release twice gives two
  runs, the second one a ``noop``. A resumed run names the run it resumes (``resumed_from``); an
  automatic rollback is a run of its own that names the deploy it undoes (``rollback_of``).
- ``steps``: each step's start, end, outcome, error and one-line detail, and a small JSON
  ``result`` (the volume a ``volume.ensure`` settled on, the version an update reached, the
  figures a ``gate.metrics`` measured).
- ``machine_configs``: a machine's version and full config **before** it is changed, written
  before the API call, and its version and config **after**, written once the change is
  verified. For a create the row is written with the launch id chosen for it before the create
  is sent, so a retry after an ambiguous answer or a crash finds the machine by
  ``metadata.orch_launch_id`` instead of making a second one.

Every write (one method call, whatever statements it runs) is one transaction, in WAL mode, so
what was written before a ``kill -9`` is there afterwards. The writes that precede an API call
(a run's start and end, a create's launch id, a machine's config before it is changed) commit
with ``synchronous=FULL``: on disk before the call is sent, and with them every write before
(the WAL is one file, written in order). The others (a step's start, end and result, a machine's
config after the change) commit with ``NORMAL``, without an fsync each: they survive the
orchestrator's death, and only a power cut in the moment after one could lose it, before the
next FULL write carries it to disk. At 10,000 machines that is one fsync per machine instead of
six, which held the event loop for most of a rollout's time (``bench/sim.py``). The API token is
never passed in here; configs are machine configs (image, env, guest...), which do not carry it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.errors import DeployError
from orchestrator.execute.events import (
    Event,
    ReleaseFinished,
    RollbackFinished,
    StepFinished,
    StepStarted,
    Subscriber,
    utcnow,
)
from orchestrator.plan.steps import Step

__all__ = [
    "JOURNAL_DIR",
    "JOURNAL_FILE",
    "Journal",
    "MachineConfigRecord",
    "RunRecord",
    "StepRecord",
    "iso",
]

JOURNAL_DIR = ".orchestrator"
JOURNAL_FILE = "journal.db"

_SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS releases (
    run          INTEGER PRIMARY KEY AUTOINCREMENT,
    release      TEXT NOT NULL,
    app          TEXT NOT NULL,
    command      TEXT NOT NULL,
    spec_digest  TEXT NOT NULL,
    image        TEXT NOT NULL,
    regions      TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    finished_at  TEXT,
    outcome      TEXT,
    error        TEXT,
    resumed_from INTEGER,
    rollback_of  INTEGER
);
CREATE INDEX IF NOT EXISTS releases_app ON releases (app, run);
CREATE TABLE IF NOT EXISTS steps (
    run         INTEGER NOT NULL REFERENCES releases (run),
    step_id     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    region      TEXT NOT NULL,
    wave        INTEGER NOT NULL,
    slot        INTEGER,
    machine     TEXT,
    mutating    INTEGER NOT NULL,
    started_at  TEXT,
    finished_at TEXT,
    outcome     TEXT,
    error       TEXT,
    result      TEXT,
    detail      TEXT,
    PRIMARY KEY (run, step_id)
);
CREATE TABLE IF NOT EXISTS machine_configs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    run            INTEGER NOT NULL REFERENCES releases (run),
    app            TEXT NOT NULL,
    release        TEXT NOT NULL,
    step_id        TEXT NOT NULL,
    machine_id     TEXT,
    region         TEXT NOT NULL,
    slot           INTEGER,
    launch_id      TEXT,
    config_digest  TEXT,
    version_before TEXT,
    config_before  TEXT,
    version_after  TEXT,
    config_after   TEXT,
    recorded_at    TEXT NOT NULL,
    updated_at     TEXT
);
CREATE INDEX IF NOT EXISTS machine_configs_launch
    ON machine_configs (app, release, step_id, config_digest);
CREATE INDEX IF NOT EXISTS machine_configs_machine ON machine_configs (machine_id);
"""

# Columns added after version 1, for journals written by an older orchestrator.
_ADDED_COLUMNS = (
    ("releases", "rollback_of", "INTEGER"),
    ("steps", "detail", "TEXT"),
)


def iso(when: datetime) -> str:
    """Format an aware datetime as ISO 8601 UTC with microseconds (``...T10:00:00.123456Z``)."""
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One row of ``releases``: a run of a release.

    Attributes:
        run: the run number (unique, increasing).
        release: the release id.
        app: the app.
        command: ``deploy``, ``rollback``, ``scale``...
        spec_digest: the digest of the spec it ran from.
        image: the image it rolled out.
        regions: the regions it touched, in wave order.
        started_at: ISO timestamp.
        finished_at: ISO timestamp, or ``None`` while it runs (or if it was killed).
        outcome: ``succeeded``, ``noop``, ``failed``, ``rolled_back``, or ``None`` if unfinished.
        error: the first failure, or ``None``.
        resumed_from: the run this one resumed, or ``None``.
        rollback_of: for an automatic rollback, the deploy run it undoes; else ``None``.
    """

    run: int
    release: str
    app: str
    command: str
    spec_digest: str
    image: str
    regions: tuple[str, ...]
    started_at: str
    finished_at: str | None
    outcome: str | None
    error: str | None
    resumed_from: int | None
    rollback_of: int | None = None


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One row of ``steps``.

    Attributes:
        run: the run.
        step_id: the step's stable id.
        kind: its kind.
        region: its region.
        wave: its wave.
        slot: its machine slot, or ``None``.
        machine: the machine it acted on, when known.
        mutating: whether it changes the fleet.
        started_at: ISO timestamp, or ``None`` if it never started.
        finished_at: ISO timestamp, or ``None``.
        outcome: ``succeeded``, ``failed``, ``skipped``, or ``None`` while running.
        error: what failed, one line.
        result: what the step settled on (volume id, version, gate figures), or ``None``.
        detail: what a succeeded step did, one line, or ``None``.
    """

    run: int
    step_id: str
    kind: str
    region: str
    wave: int
    slot: int | None
    machine: str | None
    mutating: bool
    started_at: str | None
    finished_at: str | None
    outcome: str | None
    error: str | None
    result: Mapping[str, Any] | None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class MachineConfigRecord:
    """One row of ``machine_configs``: a machine before and after a change.

    Attributes:
        id: the row id.
        run: the run.
        step_id: the step that changed it.
        machine_id: the machine, or ``None`` for a create not yet answered.
        region: its region.
        slot: its slot.
        launch_id: the ``orch_launch_id`` of a create, else ``None``.
        config_digest: the digest of the desired config.
        version_before: the version before the change (``None`` for a create).
        config_before: the full config before the change (``None`` for a create).
        version_after: the version after it, once verified.
        config_after: the config after it, once verified.
        recorded_at: when the row was written (before the change).
        updated_at: when the after-state was written.
    """

    id: int
    run: int
    step_id: str
    machine_id: str | None
    region: str
    slot: int | None
    launch_id: str | None
    config_digest: str | None
    version_before: str | None
    config_before: Mapping[str, Any] | None
    version_after: str | None
    config_after: Mapping[str, Any] | None
    recorded_at: str
    updated_at: str | None


class Journal:
    """Write and read the deploy journal of one working directory.

    Open with :meth:`open` (creates the directory and tables) and close with :meth:`close`, or
    use it as a context manager. One connection, used from the event loop's thread only.
    """

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection
        self._sync = ""

    @classmethod
    def open(cls, root: Path) -> Journal:
        """Open (creating if needed) ``<root>/.orchestrator/journal.db``.

        Raises:
            DeployError: the directory or database cannot be created or read.
        """
        directory = root / JOURNAL_DIR
        path = directory / JOURNAL_FILE
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=10.0, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            # FULL until a write says otherwise (see the module docstring and _write).
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(_SCHEMA)
            for table, column, kind in _ADDED_COLUMNS:
                have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    try:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                    except sqlite3.OperationalError as exc:
                        # Another process opening the same old journal added it first.
                        if "duplicate column" not in str(exc):
                            raise
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(_SCHEMA_VERSION),),
            )
        except (OSError, sqlite3.Error) as exc:
            raise DeployError(f"{path}: cannot open the journal: {exc}") from exc
        return cls(path, db)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        try:
            level = "FULL" if durable else "NORMAL"
            if self._sync != level:
                # Outside any transaction: SQLite ignores the pragma inside one.
                self._db.execute(f"PRAGMA synchronous={level}")
                self._sync = level
            with self._db:
                # The connection autocommits (isolation_level=None): without BEGIN each
                # statement of a block commits on its own, and a run's start with 1,000
                # planned steps was 1,001 fsynced commits (1.7-7 s holding the event loop).
                # One block, one commit, all or nothing.
                if not self._db.in_transaction:
                    self._db.execute("BEGIN")
                yield self._db
        except sqlite3.Error as exc:
            raise DeployError(f"{self.path}: journal write failed: {exc}") from exc

    # -- runs -------------------------------------------------------------------------------

    def begin_run(
        self,
        *,
        app: str,
        release: str,
        spec_digest: str,
        image: str,
        regions: Sequence[str],
        command: str = "deploy",
        steps: Sequence[Step] = (),
        resumed_from: int | None = None,
        rollback_of: int | None = None,
        started_at: datetime | None = None,
    ) -> int:
        """Record a run's start and its planned steps; return the run number."""
        at = iso(started_at or utcnow())
        with self._write(durable=True) as db:
            cur = db.execute(
                "INSERT INTO releases (release, app, command, spec_digest, image, regions,"
                " started_at, resumed_from, rollback_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    release,
                    app,
                    command,
                    spec_digest,
                    image,
                    _json(list(regions)),
                    at,
                    resumed_from,
                    rollback_of,
                ),
            )
            run = int(cur.lastrowid or 0)
            db.executemany(
                "INSERT INTO steps (run, step_id, kind, region, wave, slot, machine, mutating)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (run, s.id, s.kind.value, s.region, s.wave, s.slot, s.machine, int(s.mutating))
                    for s in steps
                ],
            )
        return run

    def finish_run(
        self, run: int, outcome: str, error: str | None = None, *, at: datetime | None = None
    ) -> None:
        """Record a run's end."""
        with self._write(durable=True) as db:
            db.execute(
                "UPDATE releases SET finished_at = ?, outcome = ?, error = ? WHERE run = ?",
                (iso(at or utcnow()), outcome, error, run),
            )

    def run(self, run: int) -> RunRecord | None:
        """Return one run, or ``None``."""
        row = self._db.execute("SELECT * FROM releases WHERE run = ?", (run,)).fetchone()
        return None if row is None else _run_record(row)

    def runs(self, app: str | None = None, *, limit: int | None = None) -> list[RunRecord]:
        """Return runs, newest first (of ``app`` when given)."""
        sql = "SELECT * FROM releases"
        args: list[Any] = []
        if app is not None:
            sql += " WHERE app = ?"
            args.append(app)
        sql += " ORDER BY run DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [_run_record(r) for r in self._db.execute(sql, args).fetchall()]

    def last_unfinished(self, app: str) -> RunRecord | None:
        """Return the newest run of ``app`` that never recorded its end (killed), or ``None``."""
        row = self._db.execute(
            "SELECT * FROM releases WHERE app = ? AND finished_at IS NULL ORDER BY run DESC",
            (app,),
        ).fetchone()
        return None if row is None else _run_record(row)

    # -- steps ------------------------------------------------------------------------------

    def step_started(self, run: int, step: Step, *, at: datetime | None = None) -> None:
        """Record that a step started."""
        with self._write() as db:
            db.execute(
                "INSERT INTO steps (run, step_id, kind, region, wave, slot, machine, mutating,"
                " started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (run, step_id) DO UPDATE SET started_at = excluded.started_at",
                (
                    run,
                    step.id,
                    step.kind.value,
                    step.region,
                    step.wave,
                    step.slot,
                    step.machine,
                    int(step.mutating),
                    iso(at or utcnow()),
                ),
            )

    def step_finished(
        self,
        run: int,
        step: Step,
        outcome: str,
        error: str | None = None,
        *,
        detail: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """Record how a step ended."""
        with self._write() as db:
            db.execute(
                "UPDATE steps SET finished_at = ?, outcome = ?, error = ?, detail = ?"
                " WHERE run = ? AND step_id = ?",
                (iso(at or utcnow()), outcome, error, detail, run, step.id),
            )

    def step_result(self, run: int, step_id: str, result: Mapping[str, Any]) -> None:
        """Record what a step settled on (merged into what it recorded before)."""
        row = self._db.execute(
            "SELECT result FROM steps WHERE run = ? AND step_id = ?", (run, step_id)
        ).fetchone()
        merged = dict(_load(row["result"]) or {}) if row is not None else {}
        merged.update(result)
        with self._write() as db:
            db.execute(
                "UPDATE steps SET result = ?, machine = COALESCE(?, machine)"
                " WHERE run = ? AND step_id = ?",
                (_json(merged), merged.get("machine_id"), run, step_id),
            )

    def steps(self, run: int) -> list[StepRecord]:
        """Return a run's steps in the order they started (never-started ones last)."""
        rows = self._db.execute(
            "SELECT * FROM steps WHERE run = ? ORDER BY started_at IS NULL, started_at, step_id",
            (run,),
        ).fetchall()
        return [_step_record(r) for r in rows]

    def previous_result(self, app: str, release: str, step_id: str, key: str) -> Any:
        """Return ``result[key]`` of the newest earlier run of this step in ``release``, or None.

        A resumed run uses it to pick up what a killed run settled on (a volume it created).
        """
        rows = self._db.execute(
            "SELECT s.result FROM steps s JOIN releases r ON r.run = s.run"
            " WHERE r.app = ? AND r.release = ? AND s.step_id = ? AND s.result IS NOT NULL"
            " ORDER BY s.run DESC",
            (app, release, step_id),
        ).fetchall()
        for row in rows:
            value = (_load(row["result"]) or {}).get(key)
            if value is not None:
                return value
        return None

    # -- machine configs --------------------------------------------------------------------

    def record_launch(
        self,
        run: int,
        *,
        app: str,
        release: str,
        step: Step,
        launch_id: str,
        config_digest: str | None,
    ) -> int:
        """Record, BEFORE a create is sent, the launch id it carries; return the row id."""
        with self._write(durable=True) as db:
            cur = db.execute(
                "INSERT INTO machine_configs (run, app, release, step_id, region, slot,"
                " launch_id, config_digest, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run,
                    app,
                    release,
                    step.id,
                    step.region,
                    step.slot,
                    launch_id,
                    config_digest,
                    iso(utcnow()),
                ),
            )
            return int(cur.lastrowid or 0)

    def launch_for(
        self, app: str, release: str, step_id: str, config_digest: str | None
    ) -> str | None:
        """Return the newest launch id journaled for this create, in any run, or ``None``.

        The key is what makes two creates the same create: the app, the release, the step (its
        region and slot) and the desired config's digest.
        """
        row = self._db.execute(
            "SELECT launch_id FROM machine_configs WHERE app = ? AND release = ? AND step_id = ?"
            " AND config_digest IS ? AND launch_id IS NOT NULL ORDER BY id DESC",
            (app, release, step_id, config_digest),
        ).fetchone()
        return None if row is None else str(row["launch_id"])

    def record_before(
        self,
        run: int,
        *,
        app: str,
        release: str,
        step: Step,
        machine_id: str,
        version: str,
        config: Mapping[str, Any],
        config_digest: str | None = None,
    ) -> int:
        """Record, BEFORE a machine is changed, its version and full config; return the row id."""
        with self._write(durable=True) as db:
            cur = db.execute(
                "INSERT INTO machine_configs (run, app, release, step_id, machine_id, region,"
                " slot, config_digest, version_before, config_before, recorded_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run,
                    app,
                    release,
                    step.id,
                    machine_id,
                    step.region,
                    step.slot,
                    config_digest,
                    version,
                    _json(dict(config)),
                    iso(utcnow()),
                ),
            )
            return int(cur.lastrowid or 0)

    def record_after(
        self,
        row_id: int,
        *,
        machine_id: str | None,
        version: str | None,
        config: Mapping[str, Any] | None,
    ) -> None:
        """Record a machine's verified state after the change (``None`` config: destroyed)."""
        with self._write() as db:
            db.execute(
                "UPDATE machine_configs SET machine_id = COALESCE(?, machine_id),"
                " version_after = ?, config_after = ?, updated_at = ? WHERE id = ?",
                (
                    machine_id,
                    version,
                    None if config is None else _json(dict(config)),
                    iso(utcnow()),
                    row_id,
                ),
            )

    def set_machine(self, row_id: int, machine_id: str) -> None:
        """Record the machine id a create returned, as soon as it is known."""
        with self._write() as db:
            db.execute(
                "UPDATE machine_configs SET machine_id = ?, updated_at = ? WHERE id = ?",
                (machine_id, iso(utcnow()), row_id),
            )

    def machine_configs(self, run: int) -> list[MachineConfigRecord]:
        """Return a run's machine rows, in the order they were written."""
        rows = self._db.execute(
            "SELECT * FROM machine_configs WHERE run = ? ORDER BY id", (run,)
        ).fetchall()
        return [_machine_record(r) for r in rows]

    def machine_history(self, app: str) -> list[MachineConfigRecord]:
        """Return every machine row of ``app``, oldest first (what ``rollback --to`` searches)."""
        rows = self._db.execute(
            "SELECT * FROM machine_configs WHERE app = ? ORDER BY id", (app,)
        ).fetchall()
        return [_machine_record(r) for r in rows]

    def chain(self, run: int) -> list[RunRecord]:
        """Return ``run`` and the runs it resumed, newest first (a resume of a resume...)."""
        out: list[RunRecord] = []
        seen: set[int] = set()
        current: int | None = run
        while current is not None and current not in seen:
            seen.add(current)
            record = self.run(current)
            if record is None:
                break
            out.append(record)
            current = record.resumed_from
        return out

    # -- events -----------------------------------------------------------------------------

    def recorder(self, run: int) -> Subscriber:
        """Return an event subscriber that writes step starts and ends of ``run``."""

        def record(event: Event) -> None:
            if isinstance(event, StepStarted):
                self.step_started(run, event.step, at=event.at)
            elif isinstance(event, StepFinished):
                self.step_finished(
                    run, event.step, event.outcome, event.error, detail=event.detail, at=event.at
                )
            elif isinstance(event, ReleaseFinished | RollbackFinished):
                self.finish_run(run, event.outcome, event.error, at=event.at)

        return record


def _run_record(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        run=int(row["run"]),
        release=str(row["release"]),
        app=str(row["app"]),
        command=str(row["command"]),
        spec_digest=str(row["spec_digest"]),
        image=str(row["image"]),
        regions=tuple(_load(row["regions"]) or ()),
        started_at=str(row["started_at"]),
        finished_at=row["finished_at"],
        outcome=row["outcome"],
        error=row["error"],
        resumed_from=row["resumed_from"],
        rollback_of=row["rollback_of"],
    )


def _step_record(row: sqlite3.Row) -> StepRecord:
    return StepRecord(
        run=int(row["run"]),
        step_id=str(row["step_id"]),
        kind=str(row["kind"]),
        region=str(row["region"]),
        wave=int(row["wave"]),
        slot=row["slot"],
        machine=row["machine"],
        mutating=bool(row["mutating"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        outcome=row["outcome"],
        error=row["error"],
        result=_load(row["result"]),
        detail=row["detail"],
    )


def _machine_record(row: sqlite3.Row) -> MachineConfigRecord:
    return MachineConfigRecord(
        id=int(row["id"]),
        run=int(row["run"]),
        step_id=str(row["step_id"]),
        machine_id=row["machine_id"],
        region=str(row["region"]),
        slot=row["slot"],
        launch_id=row["launch_id"],
        config_digest=row["config_digest"],
        version_before=row["version_before"],
        config_before=_load(row["config_before"]),
        version_after=row["version_after"],
        config_after=_load(row["config_after"]),
        recorded_at=str(row["recorded_at"]),
        updated_at=row["updated_at"],
    )
