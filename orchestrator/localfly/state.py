"""The local Fly's records and their SQLite store under the state dir.

The server keeps every record in memory and writes each change through to
``<state>/state.db`` at once, so a restart (or a crash) loses nothing that was answered.
Records are stored as JSON in one table keyed by (kind, id): the shapes change with the
API, the table does not.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from orchestrator.errors import LocalFlyError

__all__ = [
    "AppRecord",
    "LeaseRecord",
    "MachineRecord",
    "SnapshotRecord",
    "Store",
    "VolumeRecord",
    "read_records",
]

MAX_EVENTS = 50
MAX_VERSIONS = 20

R = TypeVar("R")


@dataclass(slots=True)
class LeaseRecord:
    """A machine lease: who holds it and until when (unix seconds)."""

    nonce: str
    expires_at: float
    owner: str
    description: str
    version: str

    def to_api(self) -> dict[str, Any]:
        """Return the lease as Fly's ``data`` object."""
        return {
            "nonce": self.nonce,
            "expires_at": int(self.expires_at),
            "owner": self.owner,
            "description": self.description,
            "version": self.version,
        }


@dataclass(slots=True)
class AppRecord:
    """An app."""

    id: str
    name: str
    org_slug: str
    network: str
    created_at: int
    idempotency_key: str | None = None


@dataclass(slots=True)
class MachineRecord:
    """A machine: its config and version, its state, and the process that runs it.

    ``pid``/``pid_started`` name the OS process (``pid_started`` is its psutil create
    time) so a later server or ``control.stop`` can kill an orphan without hitting a
    recycled pid.
    """

    id: str
    app: str
    name: str
    region: str
    config: dict[str, Any]
    version: str
    state: str
    seq: int
    created_at: str
    updated_at: str
    cordoned: bool = False
    lease: LeaseRecord | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)
    pid: int | None = None
    pid_started: float | None = None
    port: int | None = None
    private_ip: str = ""
    restarts: int = 0
    # The app secrets version its process gets (-1: none, skip_secrets); see secrets.py.
    secrets_version: int = 0


@dataclass(slots=True)
class VolumeRecord:
    """A volume: a directory ``volumes/<id>/data`` and what Fly says about it."""

    id: str
    app: str
    name: str
    region: str
    size_gb: int
    state: str
    created_at: str
    encrypted: bool = True
    attached_machine_id: str | None = None
    snapshot_retention: int = 5
    auto_backup_enabled: bool = True
    zone: str = ""
    fstype: str = "ext4"


@dataclass(slots=True)
class SnapshotRecord:
    """A volume snapshot: ``snapshots/<id>.tar`` and the digest of its files."""

    id: str
    app: str
    volume_id: str
    created_at: str
    status: str
    digest: str = ""
    size: int = 0
    volume_size: int = 0
    retention_days: int = 5


_KINDS: dict[type[Any], str] = {
    AppRecord: "app",
    MachineRecord: "machine",
    VolumeRecord: "volume",
    SnapshotRecord: "snapshot",
}


def _from_dict(cls: type[R], data: dict[str, Any]) -> R:
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    kwargs = {k: v for k, v in data.items() if k in names}
    if cls is MachineRecord and isinstance(kwargs.get("lease"), dict):
        kwargs["lease"] = LeaseRecord(**kwargs["lease"])
    return cls(**kwargs)


def _fields(record: AppRecord | MachineRecord | VolumeRecord | SnapshotRecord) -> dict[str, Any]:
    """Return a record's fields to encode, nested values as they are (JSON's own types).

    ``asdict`` deep-copied every config, event and version of a machine before ``json.dumps``
    walked them again, on every state change: a fifth of the local Fly's CPU at 3,000 simulated
    machines (py-spy). Only a lease is a dataclass inside a record.
    """
    data = {f.name: getattr(record, f.name) for f in fields(record)}
    lease = data.get("lease")
    if isinstance(lease, LeaseRecord):
        data["lease"] = asdict(lease)
    return data


class Store:
    """The SQLite file that keeps every record across restarts."""

    def __init__(self, path: Path) -> None:
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across a process crash, which is what a restart needs.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS objects ("
                " kind TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL,"
                " PRIMARY KEY (kind, id))"
            )
        except sqlite3.Error as exc:
            raise LocalFlyError(f"cannot open the local Fly state at {path}: {exc}") from exc

    def put(self, record: AppRecord | MachineRecord | VolumeRecord | SnapshotRecord) -> None:
        """Write one record (insert or replace)."""
        key = record.name if isinstance(record, AppRecord) else record.id
        self._db.execute(
            "INSERT OR REPLACE INTO objects (kind, id, data) VALUES (?, ?, ?)",
            (_KINDS[type(record)], key, json.dumps(_fields(record), separators=(",", ":"))),
        )

    def delete(self, kind: type[Any], key: str) -> None:
        """Remove one record."""
        self._db.execute("DELETE FROM objects WHERE kind = ? AND id = ?", (_KINDS[kind], key))

    def load(self, cls: type[R]) -> list[R]:
        """Return every stored record of one kind."""
        rows = self._db.execute("SELECT data FROM objects WHERE kind = ?", (_KINDS[cls],))
        return [_from_dict(cls, json.loads(data)) for (data,) in rows]

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def read_records(path: Path, cls: type[R]) -> list[R]:
    """Read one kind of record from a state file without a server (read-only)."""
    if not path.exists():
        return []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT data FROM objects WHERE kind = ?", (_KINDS[cls],))
            return [_from_dict(cls, json.loads(data)) for (data,) in rows]
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise LocalFlyError(f"cannot read the local Fly state at {path}: {exc}") from exc
