"""Pull the primary's records into this machine's store (app-level replication, like LiteFS).

A follower asks the edge proxy for ``GET /records?after=<its last seq - 1>`` with
``fly-prefer-region: $PRIMARY_REGION`` and ``Host: $FLY_APP_NAME.fly.dev`` (plus
``fly-force-instance-id`` once it knows which machine is the primary), keeps the batch only when
the answer provably came from the primary, checks that the one overlapping record matches its
own, and appends the rest with the primary's seq numbers. When the overlap does not match (an
old primary coming back after a failover) it finds the last record both agree on and sets its
own later records aside (:meth:`RecordStore.rewind`), then follows the primary from there.

The loop that calls :meth:`Replicator.pull_once` lives in ``leadership.py``.
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from orchestrator.errors import OrchestratorError
from orchestrator.sampleapp.store import Record, RecordStore, utc_now_iso

__all__ = [
    "BATCH",
    "FOLLOWER_HEADER",
    "Answer",
    "ReplicationError",
    "Replicator",
    "Upstream",
    "leader_hint",
    "parse_records",
    "source_problem",
]

BATCH = 500
# Followers name themselves on every pull: "<machine id> <region> <last seq> <interval s>".
FOLLOWER_HEADER = "sample-app-follower"
_MAX_BODY = 64 * 1024 * 1024


class ReplicationError(OrchestratorError):
    """A pull from the primary failed or was refused; the replica tries again next interval.

    Attributes:
        leader_hint: the primary named by the follower that answered instead, if any.
    """

    def __init__(self, message: str, *, leader_hint: str | None = None) -> None:
        """Keep the message and the hint."""
        super().__init__(message)
        self.leader_hint = leader_hint


def source_problem(
    primary_region: str, header_region: str | None, body: Mapping[str, object]
) -> str | None:
    """Say why an answer did not come from the primary, or None if it did.

    Both signals must agree where present: the proxy's ``fly-region`` header, and the
    ``role``/``region`` the answering app reports. The body matters during a promotion, when a
    machine in the new primary region may still run with the old ``PRIMARY_REGION``, and in a
    primary region with several machines, where only one of them is the primary.
    """
    if header_region is not None and header_region.strip().lower() != primary_region:
        return f"the proxy answered from region {header_region!r}, not {primary_region!r}"
    role, region = body.get("role"), body.get("region")
    if role is None and header_region is None:
        return "the answer names no region (no fly-region header, no role in the body)"
    if role is not None and role != "primary":
        return f"the machine that answered is a {role}"
    if region is not None and str(region).lower() != primary_region:
        return f"the machine that answered runs in {region!r}, not {primary_region!r}"
    return None


def leader_hint(body: Mapping[str, object], primary_region: str) -> str | None:
    """Return the primary a follower's answer names (``leader``), if it is worth asking.

    In a primary region with many machines the proxy rarely picks the primary itself; a
    follower that answers instead says which machine it follows, so the next request can go
    straight there with ``fly-force-instance-id``.
    """
    leader, machine = body.get("leader"), body.get("machine_id")
    if (
        body.get("role") == "replica"
        and body.get("primary_region") == primary_region
        and isinstance(leader, str)
        and leader
        and leader != machine
    ):
        return leader
    return None


def parse_records(body: Mapping[str, object]) -> tuple[list[Record], int]:
    """Read ``records`` and ``last_seq`` from a ``GET /records`` answer; raise on a bad shape."""
    raw, last_seq = body.get("records"), body.get("last_seq")
    if not isinstance(raw, list) or not isinstance(last_seq, int):
        raise ReplicationError("the answer has no records list or no integer last_seq")
    records = []
    for item in raw:
        if not isinstance(item, dict):
            raise ReplicationError("a record is not an object")
        seq, at = item.get("seq"), item.get("at")
        if not isinstance(seq, int) or not isinstance(at, str) or "data" not in item:
            raise ReplicationError(f"a record lacks seq, data or at: {item!r}"[:200])
        records.append(Record(seq, item["data"], at))
    return records, last_seq


@dataclass(frozen=True, slots=True)
class Answer:
    """A 200 answer that came back through the edge proxy.

    Attributes:
        body: the JSON object.
        region: the proxy's ``fly-region`` header, or None.
    """

    body: dict[str, object]
    region: str | None


class Upstream:
    """Send app requests to the edge proxy, as ``https://$FLY_APP_NAME.fly.dev`` would get them."""

    def __init__(self, url: str, *, app: str, primary_region: str, timeout: float) -> None:
        """Prepare requests to the proxy at ``url``; raises ReplicationError on a bad URL."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ReplicationError(f"not an http(s) URL: {url!r}")
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._base_path = parts.path.rstrip("/")
        self._app = app
        self._primary_region = primary_region
        self._timeout = timeout

    def get(
        self,
        path: str,
        *,
        instance: str | None = None,
        accept: tuple[int, ...] = (200,),
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Answer:
        """GET a path from a machine in the primary region (or from ``instance``).

        Raises ReplicationError unless the status is in ``accept`` and the body a JSON object.
        """
        conn: http.client.HTTPConnection
        limit = self._timeout if timeout is None else min(timeout, self._timeout)
        if self._https:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=limit)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=limit)
        headers = {
            "Host": f"{self._app}.fly.dev",
            "fly-prefer-region": self._primary_region,
            "Accept": "application/json",
            "User-Agent": "sample-app-replica",
        }
        if instance is not None:
            headers["fly-force-instance-id"] = instance
        headers.update(extra_headers or {})
        try:
            conn.request("GET", f"{self._base_path}{path}", headers=headers)
            resp = conn.getresponse()
            raw = resp.read(_MAX_BODY)
            region = resp.getheader("fly-region")
        except (OSError, http.client.HTTPException) as exc:
            raise ReplicationError(f"cannot reach {self.url}: {exc}") from exc
        finally:
            conn.close()
        if resp.status not in accept:
            raise ReplicationError(f"{self.url} answered {resp.status} to GET {path}")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise ReplicationError(f"{self.url} answered GET {path} with invalid JSON") from exc
        if not isinstance(body, dict):
            raise ReplicationError(f"{self.url} answered GET {path} with a non-object")
        return Answer(body, region)


class Replicator:
    """Follow the primary's records; remember how the pulls went (thread-safe state)."""

    def __init__(
        self,
        store: RecordStore,
        upstream: Upstream,
        *,
        machine_id: str,
        region: str,
        primary_region: str,
        interval: float,
        log: Callable[[str], None],
    ) -> None:
        """Prepare a replicator; nothing runs until :meth:`pull_once` is called.

        ``interval`` is how often the caller pulls; the primary is told, so it can tell a
        follower that went away from one that is merely between pulls.
        """
        self._machine_id = machine_id
        self._region = region
        self._interval = interval
        self._store = store
        self._upstream = upstream
        self._primary_region = primary_region
        self._log = log
        self._lock = threading.Lock()
        self._last_ok: float | None = None
        self._last_ok_at: str | None = None
        self._failing_since: float | None = None
        self.pinned: str | None = None
        self.primary_stopping = False
        self.primary_term = 0
        self.last_error: str | None = None
        self.pulls_ok = 0
        self.pulls_failed = 0

    def pin(self, machine_id: str | None) -> None:
        """Send the next pulls to this machine (the primary), or to any in the region (None)."""
        self.pinned = machine_id

    def lag_s(self) -> float | None:
        """Return seconds since the last successful pull, or None before the first one."""
        with self._lock:
            last = self._last_ok
        return None if last is None else round(time.monotonic() - last, 3)

    def failing_for(self) -> float:
        """Return how long pulls have been failing without a break (0 when the last one worked)."""
        with self._lock:
            since = self._failing_since
        return 0.0 if since is None else time.monotonic() - since

    def state(self) -> dict[str, object]:
        """Return the replication state for ``/status``."""
        with self._lock:
            return {
                "upstream": self._upstream.url,
                "last_pull_at": self._last_ok_at,
                "last_error": self.last_error,
                "pulls_ok": self.pulls_ok,
                "pulls_failed": self.pulls_failed,
            }

    def pull_once(self) -> bool:
        """Pull one batch from the primary; return True when more is waiting right away."""
        mine = self._store.last_seq
        # Ask for one record we already have, to check that our history is the primary's.
        after = max(mine - 1, 0)
        records, primary_last = self._fetch(after, BATCH)
        if mine > 0:
            head = records[0] if records else None
            own = self._store.get(mine)
            if head is None or own is None or not own.same_as(head):
                keep = self._common_prefix(min(mine, primary_last))
                moved = self._store.rewind(keep)
                self._log(
                    f"replication: history differs from the primary after seq {keep}; "
                    f"set aside {moved} record(s) and following the primary from there"
                )
                self.succeeded()
                return True
            records = records[1:]
        applied = self._store.apply(records)
        self.succeeded()
        if applied < len(records):
            raise ReplicationError(
                f"the primary sent a gap after seq {self._store.last_seq}; will ask again"
            )
        return self._store.last_seq < primary_last

    def _common_prefix(self, high: int) -> int:
        """Return the last seq at or below ``high`` where our records equal the primary's."""
        while high > 0:
            low = max(0, high - BATCH)
            theirs, _ = self._fetch(low, high - low)
            ours = self._store.since(low, high - low)
            first_bad = None
            for offset, (a, b) in enumerate(itertools.zip_longest(ours, theirs)):
                if a is None or b is None or not a.same_as(b):
                    first_bad = low + 1 + offset
                    break
            if first_bad is None:
                return high
            if first_bad > low + 1:
                return first_bad - 1
            high = low
        return 0

    def _fetch(self, after: int, limit: int) -> tuple[list[Record], int]:
        """GET one page of the primary's records; check who answered; pin the primary."""
        # Say how far we are, so a stopping primary knows when it may go (see SampleApp.drain).
        me = f"{self._machine_id} {self._region} {self._store.last_seq} {self._interval:g}"
        answer = self._upstream.get(
            f"/records?after={after}&limit={limit}",
            instance=self.pinned,
            extra_headers={FOLLOWER_HEADER: me},
        )
        problem = source_problem(self._primary_region, answer.region, answer.body)
        if problem is not None:
            raise ReplicationError(
                f"refused a batch: {problem}",
                leader_hint=leader_hint(answer.body, self._primary_region),
            )
        machine = answer.body.get("machine_id")
        if isinstance(machine, str) and machine:
            # Ask this machine directly from now on: in a primary region with several
            # machines only one is the primary, and the proxy would spread pulls over all.
            self.pinned = machine
        self.primary_stopping = answer.body.get("stopping") is True
        term = answer.body.get("term")
        self.primary_term = term if isinstance(term, int) else self.primary_term
        return parse_records(answer.body)

    def succeeded(self) -> None:
        """Record a good pull; log the recovery when the previous one failed."""
        with self._lock:
            recovered = self.last_error is not None
            self._last_ok = time.monotonic()
            self._last_ok_at = utc_now_iso()
            self._failing_since = None
            self.last_error = None
            self.pulls_ok += 1
        if recovered:
            self._log(f"replication: pulling from {self._upstream.url} again")

    def forgive(self) -> None:
        """Restart the failure clock (a new primary was just found; give it a chance)."""
        with self._lock:
            self._failing_since = None

    def failed(self, message: str, *, quiet: bool = False, hint: str | None = None) -> None:
        """Record a failed pull, log it when it is news, and aim the next pull.

        The next pull goes to ``hint`` (a primary a follower named) or, without one, to any
        machine of the primary region.
        """
        self.pinned = hint
        with self._lock:
            news = message != self.last_error
            self.last_error = message
            self.pulls_failed += 1
            if self._failing_since is None:
                self._failing_since = time.monotonic()
        if news and not quiet:
            self._log(f"replication: {message}")
