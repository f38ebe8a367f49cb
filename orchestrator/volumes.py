"""List the app's volumes, say why an unattached one was kept, and prune the ones safe to go.

A scale-down, a drill or a deploy that lowered a count destroys machines and keeps their
volumes: the data on them may be the only copy of something. On Fly.io a kept volume still
bills. `list_volumes` reads every volume through the Machines API and, for each unattached
one, finds in the journal the destroy that left it behind (which command, which run, when).

`prune_candidates` picks the unattached volumes a prune may destroy (``--region``,
``--older-than``) and checks each against the primary: a volume holding records the primary
lacks is refused unless forced. On the local Fly the check reads the volume's copy of the sample
app's ``records.db``; a volume whose data cannot be read (Fly.io, where an unattached volume is
out of reach, or an app with another store) counts as "cannot tell", refused the same way.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator.connect import Connection
from orchestrator.errors import FlyNotFound, OrchestratorError
from orchestrator.execute.journal import Journal
from orchestrator.fly.models import Volume
from orchestrator.plan.steps import StepKind

__all__ = [
    "VolumeInfo",
    "VolumeList",
    "lacking_records",
    "list_volumes",
    "prune_candidates",
]

# Why a kept volume was kept, by the command of the run whose destroy left it unattached.
_REASONS = {
    "scale": "scale-down",
    "drill": "drill",
    "deploy": "count lowered",
    "rollback": "rollback",
}
_RECORDS_DB = "records.db"
_PAGE = 1000


@dataclass(frozen=True, slots=True)
class VolumeInfo:
    """One volume as ``invoke volumes`` shows it.

    Attributes:
        id: the volume id.
        name: its name.
        region: its region.
        size_gb: its size.
        bytes_used: bytes in use, when the API says (``None`` otherwise).
        state: Fly's state.
        attached_machine_id: the machine it is attached to, or ``None``.
        created_at: when it was created (ISO), if known.
        kept_reason: for an unattached volume, what left it (``scale-down``, ``drill``,
            ``count lowered``, ``rollback``), or ``None`` when the journal does not say.
        kept_since: when (ISO) the machine that had it was destroyed, if known.
        kept_by_run: the journal run that destroyed that machine, if known.
        machine_before: the machine that had it, if known.
    """

    id: str
    name: str
    region: str
    size_gb: int
    bytes_used: int | None
    state: str
    attached_machine_id: str | None
    created_at: str | None = None
    kept_reason: str | None = None
    kept_since: str | None = None
    kept_by_run: int | None = None
    machine_before: str | None = None

    @property
    def attached(self) -> bool:
        """Tell whether a machine has it."""
        return self.attached_machine_id is not None

    def unattached_since(self) -> str | None:
        """Return since when it is unattached: the destroy, else its creation (ISO)."""
        return self.kept_since or self.created_at

    def to_json(self) -> dict[str, Any]:
        """Return the volume as JSON-ready values."""
        return {
            "id": self.id,
            "name": self.name,
            "region": self.region,
            "size_gb": self.size_gb,
            "bytes_used": self.bytes_used,
            "state": self.state,
            "attached_machine_id": self.attached_machine_id,
            "created_at": self.created_at,
            "kept": None
            if self.attached
            else {
                "reason": self.kept_reason,
                "since": self.unattached_since(),
                "run": self.kept_by_run,
                "machine": self.machine_before,
            },
        }


@dataclass(frozen=True, slots=True)
class VolumeList:
    """Every volume of the app (of a region).

    Attributes:
        app: the app.
        backend: ``local`` or ``fly``.
        volumes: sorted by region, attached first, then id.
    """

    app: str
    backend: str
    volumes: tuple[VolumeInfo, ...] = field(default_factory=tuple)

    @property
    def unattached(self) -> tuple[VolumeInfo, ...]:
        """Return the volumes no machine has."""
        return tuple(v for v in self.volumes if not v.attached)

    def to_json(self) -> dict[str, Any]:
        """Return the list as JSON-ready values."""
        return {
            "app": self.app,
            "backend": self.backend,
            "volumes": [v.to_json() for v in self.volumes],
        }


def _destroyed_with(journal: Journal, app: str) -> dict[str, tuple[str, str | None, int, str]]:
    """Return volume id → (reason, when, run, machine) of the newest destroy that kept it."""
    commands = {r.run: r.command for r in journal.runs(app)}
    found: dict[str, tuple[str, str | None, int, str]] = {}
    for row in sorted(journal.machine_history(app), key=lambda r: r.id):
        if f":{StepKind.MACHINE_DESTROY.value}" not in row.step_id or row.config_before is None:
            continue
        if row.updated_at is None:
            continue  # the destroy never finished
        for mount in row.config_before.get("mounts") or []:
            volume = mount.get("volume") if isinstance(mount, Mapping) else None
            if volume:
                reason = _REASONS.get(commands.get(row.run, ""), commands.get(row.run, "?"))
                found[str(volume)] = (reason, row.updated_at, row.run, row.machine_id or "?")
    return found


def _bytes_used(volume: Volume) -> int | None:
    used = volume.raw.get("bytes_used")
    return used if isinstance(used, int) and not isinstance(used, bool) else None


async def list_volumes(conn: Connection, root: Path, *, region: str | None = None) -> VolumeList:
    """Read the app's volumes (of ``region``) and the journal's word on the unattached ones."""
    try:
        volumes = await conn.client.list_volumes(conn.app)
    except FlyNotFound:
        return VolumeList(conn.app, conn.backend)
    live = [
        v
        for v in volumes
        if v.state not in ("pending_destroy", "destroyed", "destroying")
        and (region is None or v.region == region)
    ]
    used: dict[str, int | None] = {}
    for v in live:
        used[v.id] = _bytes_used(v)
        if used[v.id] is None:
            # The list may leave it out; a single volume's answer carries it.
            try:
                used[v.id] = _bytes_used(await conn.client.get_volume(conn.app, v.id))
            except OrchestratorError:
                used[v.id] = None
    with Journal.open(root) as journal:
        kept = _destroyed_with(journal, conn.app)
    infos = []
    for v in live:
        reason, since, run, machine = kept.get(v.id, (None, None, None, None))
        attached = v.attached_machine_id or None
        infos.append(
            VolumeInfo(
                id=v.id,
                name=v.name,
                region=v.region,
                size_gb=v.size_gb,
                bytes_used=used[v.id],
                state=v.state,
                attached_machine_id=attached,
                created_at=v.created_at,
                kept_reason=None if attached else reason,
                kept_since=None if attached else since,
                kept_by_run=None if attached else run,
                machine_before=None if attached else machine,
            )
        )
    infos.sort(key=lambda i: (i.region, not i.attached, i.id))
    return VolumeList(conn.app, conn.backend, tuple(infos))


def _read_records(data_dir: Path) -> list[tuple[int, str]] | None:
    """Return a volume's records and set-aside records (sample app's store), or ``None``."""
    db = data_dir / _RECORDS_DB
    if not db.is_file():
        return None
    # A copy, so that opening it (WAL replay, -shm) never writes on the kept volume.
    with tempfile.TemporaryDirectory(prefix="orch-volume-") as tmp:
        for path in data_dir.glob(f"{_RECORDS_DB}*"):
            shutil.copy2(path, Path(tmp) / path.name)
        try:
            conn = sqlite3.connect(Path(tmp) / _RECORDS_DB)
            try:
                rows = conn.execute("SELECT seq, data FROM records").fetchall()
                with_orphans = conn.execute(
                    "SELECT name FROM sqlite_master WHERE name = 'orphaned_records'"
                ).fetchone()
                if with_orphans:
                    rows += conn.execute("SELECT seq, data FROM orphaned_records").fetchall()
            finally:
                conn.close()
        except sqlite3.Error:
            return None
    return [(int(seq), _canon_text(str(data))) for seq, data in rows]


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _canon_text(text: str) -> str:
    """Return the store's JSON text in the form `_canon` gives the API's decoded value."""
    try:
        return _canon(json.loads(text))
    except ValueError:
        return text


async def _primary_records(conn: Connection) -> set[tuple[int, str]] | None:
    """Return every record the app's primary holds, through the proxy; ``None`` if unknown."""
    out: set[tuple[int, str]] = set()
    after = 0
    leader: str | None = None
    while True:
        answer = await conn.probe.request(
            "GET", f"/records?after={after}&limit={_PAGE}", machine_id=leader
        )
        body = answer.body
        if not answer.ok or not isinstance(body.get("records"), list):
            return None
        if body.get("role") != "primary":
            # A follower answered; ask its leader from now on.
            named = body.get("leader")
            if not isinstance(named, str) or named == leader:
                return None
            leader = named
            continue
        records = body["records"]
        out.update((int(r["seq"]), _canon(r["data"])) for r in records)
        if len(records) < _PAGE:
            return out
        after = max(int(r["seq"]) for r in records)


async def lacking_records(
    conn: Connection, candidates: Sequence[VolumeInfo]
) -> dict[str, int | None]:
    """Return volume id → how many records on it the primary lacks (``None``: cannot tell)."""
    if conn.backend != "local" or not candidates:
        return {v.id: None for v in candidates}
    primary = await _primary_records(conn)
    out: dict[str, int | None] = {}
    for volume in candidates:
        data = conn.settings.local_state_dir / "volumes" / volume.id / "data"
        records = _read_records(data)
        if records is None:
            out[volume.id] = 0 if data.is_dir() and not any(data.iterdir()) else None
        elif primary is None:
            out[volume.id] = None if records else 0
        else:
            out[volume.id] = sum(1 for r in records if r not in primary)
    return out


def prune_candidates(
    listing: VolumeList, *, now: datetime, older_than_s: float | None = None
) -> tuple[VolumeInfo, ...]:
    """Return the unattached volumes unattached for longer than ``older_than_s`` (pure)."""
    chosen = []
    for volume in listing.unattached:
        if older_than_s:
            since = volume.unattached_since()
            if since is None:
                continue  # age unknown: never old enough
            when = datetime.fromisoformat(since.replace("Z", "+00:00"))
            if (now - when).total_seconds() < older_than_s:
                continue
        chosen.append(volume)
    return tuple(chosen)
