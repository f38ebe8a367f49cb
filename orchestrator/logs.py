"""Read the machines' output on the local Fly, each line prefixed by region and machine id.

The local Fly appends every machine's stdout and stderr (and its own ``[localfly]`` lines: exec,
exit, restart) to ``<state dir>/machines/<machine id>/log``. The machines are listed through
the Machines API (so ``--region`` and ``--machine`` mean what they mean to Fly) and their files
read from the state directory. ``follow`` keeps reading what is appended, picks up machines
created meanwhile (a scale-up, a replacement), and runs until it is cancelled (Ctrl-C).

Fly.io keeps logs in its own log pipeline, which the Machines API does not serve; there,
``fly logs`` is the tool, and :func:`require_local` says so instead of failing later.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from orchestrator.connect import Connection
from orchestrator.errors import ConfigError, FlyNotFound, OrchestratorError
from orchestrator.fleetconfig.regions import validate_region
from orchestrator.fly.models import Machine
from orchestrator.plan.config import META_PROCESS_GROUP, META_SLOT
from orchestrator.plan.fleet import GONE_MACHINE_STATES
from orchestrator.settings import Settings

__all__ = [
    "DEFAULT_LINES",
    "LogLine",
    "LogSource",
    "line_time",
    "log_path",
    "log_sources",
    "read_last_lines",
    "require_local",
    "stream_logs",
]

_CHUNK = 64 * 1024
DEFAULT_LINES = 100
# A line dated by the local Fly (``[localfly] 2026-...Z exec ...``) or by the app itself (a line
# that starts with an ISO 8601 UTC time, as the sample app writes them).
_DATED = re.compile(r"^(?:\[localfly\] )?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) ")
# Machine ids listed in a "no such machine" error at most; past that, `invoke status` lists them.
_LIST_AT_MOST = 6


@dataclass(frozen=True, slots=True)
class LogSource:
    """One machine's log file.

    Attributes:
        machine_id: the machine.
        region: its region.
        name: its name.
        slot: its ``orch_slot``, or ``None``.
        path: the file.
    """

    machine_id: str
    region: str
    name: str
    slot: int | None
    path: Path


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line a machine wrote.

    Attributes:
        region: the machine's region.
        machine_id: the machine.
        text: the line, without its newline.
    """

    region: str
    machine_id: str
    text: str

    def format(self) -> str:
        """Return the line as ``invoke logs`` prints it: ``syd 3d8d9... | text``."""
        return f"{self.region} {self.machine_id} | {self.text}"


def require_local(settings: Settings, *, region: str | None = None) -> None:
    """Refuse to read logs from Fly.io, naming the command that does.

    Raises:
        ConfigError: the backend is Fly.io (exit code 2).
    """
    if settings.backend == "local":
        return
    app = f" --app {settings.app}" if settings.app else ""
    where = f" --region {region}" if region else ""
    raise ConfigError(
        "reads the local Fly's log files; Fly.io serves logs through its log pipeline, not "
        f"the Machines API: run `fly logs{app}{where}` (FLY_API_TOKEN is set, so the backend "
        "is Fly.io)",
        where="invoke logs",
    )


def log_path(state_dir: Path, machine_id: str) -> Path:
    """Return the log file of ``machine_id`` under the local Fly's ``state_dir``."""
    return state_dir / "machines" / machine_id / "log"


def _slot(machine: Machine) -> int | None:
    value = machine.config.metadata.get(META_SLOT, "")
    return int(value) if value.isdigit() else None


def _source(state_dir: Path, machine: Machine) -> LogSource:
    return LogSource(
        machine_id=machine.id,
        region=machine.region,
        name=machine.name,
        slot=_slot(machine),
        path=log_path(state_dir, machine.id),
    )


async def log_sources(
    conn: Connection,
    *,
    region: str | None = None,
    machine: str | None = None,
    group: str | None = None,
) -> tuple[LogSource, ...]:
    """Return the log files of the app's live machines (of ``region``; or of one machine).

    ``group`` keeps the machines of one process group (their ``fly_process_group``), as Fly's
    machine list filters on metadata.

    ``machine`` is a machine id or name; it may name a destroyed machine, whose file is kept.

    Raises:
        ConfigError: a bad ``--region`` code, or no such ``--machine`` (in that region).
    """
    if region is not None:
        region = validate_region(region, "--region").code
    try:
        machines = await conn.client.list_machines(
            conn.app,
            region=region,
            include_deleted=machine is not None,
            metadata={META_PROCESS_GROUP: group} if group is not None else None,
        )
    except FlyNotFound:
        machines = []
    state_dir = conn.settings.local_state_dir
    if machine is not None:
        found = [m for m in machines if machine in (m.id, m.name)]
        if not found:
            where = f" in {region}" if region else ""
            live = [m for m in machines if m.state not in GONE_MACHINE_STATES]
            if not live:
                known = "it has no machines"
            elif len(live) <= _LIST_AT_MOST:
                known = "machines: " + ", ".join(f"{m.id} ({m.region})" for m in live)
            else:
                known = f"it has {len(live)} machines; `invoke status` lists them"
            raise ConfigError(
                f"no machine {machine!r} in {conn.app}{where}; {known}", where="--machine"
            )
        # A live machine wins over a destroyed one of the same name.
        found.sort(key=lambda m: m.state in GONE_MACHINE_STATES)
        return (_source(state_dir, found[0]),)
    live = [m for m in machines if m.state not in GONE_MACHINE_STATES]
    live.sort(key=lambda m: (m.region, _slot(m) is None, _slot(m) or 0, m.id))
    return tuple(_source(state_dir, m) for m in live)


def read_last_lines(path: Path, count: int | None = None) -> tuple[list[str], int]:
    """Return the last ``count`` lines of ``path`` (all when ``None``) and the offset read to.

    The offset is where the last complete line ends, so a follower picks up a line still
    being written from its start. A missing file has no lines.
    """
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if count is None:
                f.seek(0)
                data = f.read(size)
            else:
                # Read backwards a chunk at a time until enough newlines are in hand.
                data = b""
                pos = size
                while pos > 0 and data.count(b"\n") <= count:
                    step = min(_CHUNK, pos)
                    pos -= step
                    f.seek(pos)
                    data = f.read(step) + data
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n") + 1
    complete = data[:end]
    offset = size - (len(data) - end)
    lines = complete.decode("utf-8", "replace").splitlines()
    if count is not None:
        lines = lines[-count:] if count > 0 else []
    return lines, offset


def line_time(text: str) -> datetime | None:
    """Return when a log line was written, if it says (``None`` for an undated line)."""
    found = _DATED.match(text)
    if found is None:
        return None
    return datetime.fromisoformat(found.group(1).replace("Z", "+00:00"))


def _dated(source: LogSource, text: list[str]) -> list[tuple[datetime | None, LogLine]]:
    """Date each line by itself or, failing that, by the last dated line before it."""
    out: list[tuple[datetime | None, LogLine]] = []
    current: datetime | None = None
    for line in text:
        current = line_time(line) or current
        out.append((current, LogLine(source.region, source.machine_id, line)))
    return out


def _first_lines(
    sources: Sequence[LogSource], lines: int | None, since: datetime | None
) -> tuple[list[LogLine], dict[str, int]]:
    """Return the last ``lines`` lines of all sources (since ``since``) in time order."""
    dated: list[tuple[datetime | None, int, int, LogLine]] = []
    offsets: dict[str, int] = {}
    for index, source in enumerate(sources):
        # The overall last N lines are among each file's last N; a --since needs every line's
        # date, which may come from far above it, so then the whole file is read.
        text, offsets[source.machine_id] = read_last_lines(
            source.path, None if since is not None else lines
        )
        for n, (at, line) in enumerate(_dated(source, text)):
            dated.append((at, index, n, line))
    if since is not None:
        dated = [d for d in dated if d[0] is not None and d[0] >= since]
    # Undated lines (the top of a file read from its middle) sort first, in file order.
    dated.sort(key=lambda d: (d[0] is not None, d[0] or since or datetime.min, d[1], d[2]))
    chosen = [d[3] for d in dated]
    if lines is not None:
        chosen = chosen[-lines:] if lines > 0 else []
    return chosen, offsets


@dataclass(slots=True)
class _Follower:
    source: LogSource
    offset: int = 0
    partial: bytes = field(default=b"")

    def read_new(self) -> list[str]:
        """Return the complete lines appended since the last read."""
        try:
            with open(self.source.path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                if size < self.offset:
                    # Truncated or replaced: start over from its beginning.
                    self.offset, self.partial = 0, b""
                if size == self.offset:
                    return []
                f.seek(self.offset)
                data = f.read(size - self.offset)
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self.partial + data
        end = data.rfind(b"\n") + 1
        self.partial = data[end:]
        return data[:end].decode("utf-8", "replace").splitlines()


async def stream_logs(
    conn: Connection,
    sources: Sequence[LogSource],
    *,
    follow: bool = False,
    lines: int | None = None,
    since: datetime | None = None,
    region: str | None = None,
    rescan: bool = True,
    poll_s: float = 0.2,
    group: str | None = None,
    rescan_s: float = 2.0,
) -> AsyncIterator[LogLine]:
    """Yield the sources' lines, machine after machine; with ``follow``, then what is appended.

    Args:
        conn: the connection (to list machines created while following).
        sources: the files to read, from :func:`log_sources`.
        follow: keep reading until cancelled.
        lines: at first only the last ``lines`` lines of all the files together, in the order
            they were written (``None``: all).
        since: at first only lines written at or after this moment; an undated line counts
            as written when the last dated line above it was.
        region: the region new machines are picked up from while following (``None``: any).
        rescan: pick up machines created while following (off for a single ``--machine``).
        group: the process group new machines are picked up from (``None``: any).
        poll_s: seconds between looks at the files while following.
        rescan_s: seconds between looks for new machines while following.
    """
    first, offsets = _first_lines(sources, lines, since)
    for log_line in first:
        yield log_line
    followers = {s.machine_id: _Follower(s, offsets[s.machine_id]) for s in sources}
    if not follow:
        return
    rescan_at = time.monotonic() + rescan_s
    while True:
        for follower in list(followers.values()):
            for line in follower.read_new():
                yield LogLine(follower.source.region, follower.source.machine_id, line)
        if rescan and time.monotonic() >= rescan_at:
            rescan_at = time.monotonic() + rescan_s
            try:
                found = await log_sources(conn, region=region, group=group)
            except OrchestratorError:
                # The API hiccuped (a restart, a 5xx): keep tailing, look again next time.
                found = ()
            for source in found:
                if source.machine_id not in followers:
                    # A machine born while we follow: its whole file is news.
                    followers[source.machine_id] = _Follower(source, 0)
        await asyncio.sleep(poll_s)
