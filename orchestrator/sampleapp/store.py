"""Keep the sample app's records in SQLite (``records.db``) on the machine's volume.

Journal mode, and why: a volume fork or snapshot under the local Fly is a file-by-file copy of
the data directory taken while the app runs, not an atomic block snapshot. So the store runs in
WAL mode with SQLite's automatic checkpoints turned off:

* Between checkpoints ``records.db`` is never written; every commit only appends frames to
  ``records.db-wal``. A copy then holds an untouched database file plus a prefix of the WAL, and
  SQLite's recovery (checksummed frames, commit markers) replays exactly the transactions that
  were complete in the copy: a consistent, slightly older state. ``records.db-shm`` is rebuilt
  by the first process that opens the copy, so a stale copy of it does no harm.
* The store checkpoints itself when it opens, when it closes, and every
  :data:`CHECKPOINT_EVERY` records in between, with a PASSIVE checkpoint that leaves the WAL's
  frames in place until the next commit, so a copy that catches ``records.db`` mid-checkpoint
  usually still gets the frames that repair it. That rare window is the one way to get a torn
  copy, which is why a replica that finds its database corrupt at start-up sets it aside and
  starts again from the primary (see :func:`quarantine`).

A rollback journal would be worse here: every commit rewrites pages of ``records.db`` in place,
so any copy that overlaps any commit can be torn.

``synchronous=NORMAL``: in WAL mode a commit survives the process being killed (even ``kill -9``);
only an OS crash or power loss can drop the last commits.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.errors import OrchestratorError

__all__ = [
    "CHECKPOINT_EVERY",
    "DB_NAME",
    "CorruptStore",
    "Record",
    "RecordStore",
    "StoreError",
    "dump_data",
    "quarantine",
    "utc_now_iso",
]

DB_NAME = "records.db"
CHECKPOINT_EVERY = 1000
_SIDE_FILES = ("", "-wal", "-shm", "-journal")
# SQLITE_CORRUPT and SQLITE_NOTADB: the only primary result codes that mean a damaged file
# (a busy or unreadable database is not a reason to throw it away).
_CORRUPT_CODES = frozenset({11, 26})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq  INTEGER PRIMARY KEY,
    data TEXT NOT NULL,
    at   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS orphaned_records (
    seq         INTEGER NOT NULL,
    data        TEXT NOT NULL,
    at          TEXT NOT NULL,
    orphaned_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class StoreError(OrchestratorError):
    """The records database could not be opened, read or written."""


class CorruptStore(StoreError):
    """The records database is damaged (SQLite says corrupt or not a database)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One record, as stored and as served.

    Attributes:
        seq: its sequence number, assigned by the primary; the same on every replica.
        data: the JSON value the client posted.
        at: when the primary accepted it (ISO 8601 UTC, microseconds).
    """

    seq: int
    data: object
    at: str

    def to_json(self) -> dict[str, object]:
        """Return the record as the HTTP API shows it."""
        return {"seq": self.seq, "data": self.data, "at": self.at}

    def same_as(self, other: Record) -> bool:
        """Say whether two records are the same write (same seq, time and data)."""
        return self.seq == other.seq and self.at == other.at and self.data == other.data


def utc_now_iso() -> str:
    """Return the current time as ISO 8601 UTC with microseconds and a ``Z``."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def dump_data(data: object) -> str:
    """Serialise a record's data compactly; refuse NaN and infinities (JSON has none)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def quarantine(data_dir: Path) -> list[Path]:
    """Move ``records.db`` and its side files aside (``.corrupt-<time>``); return the new paths."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    moved = []
    for suffix in _SIDE_FILES:
        path = data_dir / f"{DB_NAME}{suffix}"
        if path.exists():
            target = path.with_name(f"{path.name}.corrupt-{stamp}")
            path.rename(target)
            moved.append(target)
    return moved


class RecordStore:
    """Store records in SQLite; safe to share between threads (one connection, one lock)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        """Wrap an open, initialised connection; use :meth:`open` instead."""
        self._conn = conn
        self.path = path
        self._lock = threading.Lock()
        self._closed = False
        self._since_checkpoint = 0
        self._last_seq, self._last_at = self._read_last()

    @classmethod
    def open(cls, data_dir: Path) -> RecordStore:
        """Open (creating it if needed) ``records.db`` in a data directory.

        Raises CorruptStore when the file is damaged and StoreError for anything else.
        """
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create data directory {data_dir}: {exc}") from exc
        path = data_dir / DB_NAME
        try:
            conn = sqlite3.connect(
                str(path), timeout=5.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from exc
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{path}: SQLite would not switch to WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.execute("PRAGMA journal_size_limit=8388608")
            conn.execute("PRAGMA cache_size=-1024")
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise CorruptStore(f"{path}: integrity check failed: {check}")
            conn.executescript(_SCHEMA)
            # Fold whatever WAL the directory came with (a fork, a crash) into the main file.
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return cls(conn, path)
        except StoreError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if code in _CORRUPT_CODES:
                raise CorruptStore(f"{path}: {exc}") from exc
            raise StoreError(f"{path}: {exc}") from exc

    @property
    def last_seq(self) -> int:
        """Return the highest sequence number stored (0 when empty)."""
        return self._last_seq

    @property
    def last_write_at(self) -> str | None:
        """Return when the newest record was written on the primary, or None when empty."""
        return self._last_at

    def append(self, data: object) -> Record:
        """Store a new record with the next sequence number (the primary's write path)."""
        text = dump_data(data)
        at = utc_now_iso()
        with self._lock:
            self._check_open()
            try:
                # INTEGER PRIMARY KEY without a value takes max(seq) + 1: continues from the
                # volume's own history, after a restart or a promotion alike.
                cur = self._conn.execute("INSERT INTO records (data, at) VALUES (?, ?)", (text, at))
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write a record: {exc}") from exc
            seq = cur.lastrowid
            if seq is None:
                raise StoreError("SQLite did not report the new record's seq")
            self._last_seq, self._last_at = seq, at
            self._wrote(1)
        return Record(seq, json.loads(text), at)

    def apply(self, records: Sequence[Record]) -> int:
        """Store records pulled from the primary, keeping their seq; return how many were new.

        Only the run that continues this store without a gap is taken, so a replica's history
        is always a prefix of the primary's.
        """
        with self._lock:
            self._check_open()
            expected = self._last_seq + 1
            rows = []
            for record in records:
                if record.seq != expected:
                    break
                rows.append((record.seq, dump_data(record.data), record.at))
                expected += 1
            if not rows:
                return 0
            try:
                with self._transaction():
                    self._conn.executemany(
                        "INSERT INTO records (seq, data, at) VALUES (?, ?, ?)", rows
                    )
            except sqlite3.Error as exc:
                raise StoreError(f"cannot store replicated records: {exc}") from exc
            self._last_seq, self._last_at = rows[-1][0], rows[-1][2]
            self._wrote(len(rows))
            return len(rows)

    def since(self, after: int, limit: int) -> list[Record]:
        """Return up to ``limit`` records with seq > ``after``, oldest first."""
        with self._lock:
            self._check_open()
            try:
                rows = self._conn.execute(
                    "SELECT seq, data, at FROM records WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read records: {exc}") from exc
        return [Record(seq, json.loads(data), at) for seq, data, at in rows]

    def get(self, seq: int) -> Record | None:
        """Return the record with this seq, or None."""
        found = self.since(seq - 1, 1)
        return found[0] if found and found[0].seq == seq else None

    def rewind(self, keep_through: int) -> int:
        """Set aside every record after ``keep_through`` (into ``orphaned_records``).

        A replica does this when its history went further than, or differs from, the
        primary's (an old primary after a failover). Returns how many records were set aside;
        they stay in the database, never served, for whoever counts what a failover lost.
        """
        with self._lock:
            self._check_open()
            try:
                with self._transaction():
                    moved = self._conn.execute(
                        "INSERT INTO orphaned_records (seq, data, at, orphaned_at) "
                        "SELECT seq, data, at, ? FROM records WHERE seq > ?",
                        (utc_now_iso(), keep_through),
                    ).rowcount
                    self._conn.execute("DELETE FROM records WHERE seq > ?", (keep_through,))
            except sqlite3.Error as exc:
                raise StoreError(f"cannot rewind records: {exc}") from exc
            self._last_seq, self._last_at = self._read_last()
            self._wrote(moved)
            return moved

    def orphaned_count(self) -> int:
        """Return how many records were ever set aside by :meth:`rewind`."""
        with self._lock:
            self._check_open()
            try:
                row = self._conn.execute("SELECT COUNT(*) FROM orphaned_records").fetchone()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot count orphaned records: {exc}") from exc
        return int(row[0])

    def recall(self, key: str) -> str | None:
        """Return a value kept with :meth:`remember`, or None."""
        with self._lock:
            self._check_open()
            try:
                row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read {key!r}: {exc}") from exc
        return None if row is None else str(row[0])

    def remember(self, key: str, value: str) -> None:
        """Keep a small value beside the records (same file, so a fork carries it along)."""
        with self._lock:
            self._check_open()
            try:
                self._conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write {key!r}: {exc}") from exc

    def close(self) -> None:
        """Checkpoint and close the database; later calls fail with StoreError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass  # closing checkpoints again; a failure here loses nothing committed
            self._conn.close()

    def _read_last(self) -> tuple[int, str | None]:
        """Read the newest record's seq and time from the database."""
        try:
            row = self._conn.execute(
                "SELECT seq, at FROM records ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the last record: {exc}") from exc
        return (int(row[0]), str(row[1])) if row else (0, None)

    def _transaction(self) -> _Transaction:
        """Return a context manager for one write transaction."""
        return _Transaction(self._conn)

    def _wrote(self, count: int) -> None:
        """Count written records and checkpoint once enough have piled up in the WAL."""
        self._since_checkpoint += count
        if self._since_checkpoint < CHECKPOINT_EVERY:
            return
        self._since_checkpoint = 0
        try:
            # PASSIVE, not TRUNCATE: the frames stay in the WAL until the next commit, so a
            # copy taken during the checkpoint can still replay them over a torn main file.
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass  # the next write tries again; the data is safe in the WAL meanwhile

    def _check_open(self) -> None:
        """Raise StoreError when the store was closed."""
        if self._closed:
            raise StoreError("the records database is closed")


class _Transaction:
    """Run a block as one IMMEDIATE transaction on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        """Remember the connection."""
        self._conn = conn

    def __enter__(self) -> None:
        """Begin, taking the write lock up front."""
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        """Commit, or roll back when the block raised."""
        self._conn.execute("ROLLBACK" if exc_type else "COMMIT")
