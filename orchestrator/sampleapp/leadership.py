"""Decide which machine takes writes, keep the others following it, and hand off cleanly.

Every machine whose ``FLY_REGION`` is ``PRIMARY_REGION`` is a *candidate*; exactly one candidate
should be the primary, because each machine has its own volume and its own sequence numbers.
LiteFS settles this with a Consul lease; the sample app has only the edge proxy, so it settles
it through that:

* A candidate starts by asking the proxy for ``GET /status`` in the primary region a few times.
  If another machine answers that it is the primary, the candidate follows it (replicates from
  it, refuses writes); otherwise it takes the writes itself.
* Every claim carries a *term*, one more than the highest term the claimant has seen (as in
  Raft). A primary keeps asking now and then; if it meets another primary, the higher term wins,
  then the earlier claim, then the smaller machine id, and the loser steps down; its replicator
  then sets aside whatever it wrote meanwhile. The term is what keeps an old primary that hung
  (and was replaced) from taking the role back, with the newer writes, when it wakes up.
* A following candidate whose primary stops answering for ``takeover_after`` seconds asks
  again, and takes the writes when nobody else has them.
* A primary told to stop (SIGTERM, as in a rolling update) refuses new writes, waits (a few
  seconds at most) until the followers of its region hold every record, and says it is stopping
  in its answers, so a follower takes over at its first missed pull: nothing is lost.
* Each candidate keeps who it last knew as the primary, and the term, beside its records
  (`StoreMemory`). After a restart of the whole region (a host reboot, the local Fly
  restarting) nobody answers at first; a candidate that followed another machine then waits
  for that primary (``takeover_after``) instead of taking writes at once. Without this, two
  fresh candidates both claimed, and the one that stepped down set aside writes it had
  acknowledged meanwhile.

Machines outside the primary region only ever follow. Without ``LOCALFLY_PROXY_URL`` there is
nobody to ask, so a candidate takes the writes at once.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from orchestrator.sampleapp.replication import (
    ReplicationError,
    Replicator,
    Upstream,
    leader_hint,
)
from orchestrator.sampleapp.store import RecordStore, StoreError, utc_now_iso

__all__ = [
    "GUARD_PROBES",
    "PROBES",
    "Claim",
    "Coordinator",
    "Followers",
    "Leadership",
    "StoreMemory",
    "leader_claim",
]

# Enough asks that a round-robin proxy reaches every other machine of a small region.
PROBES = 5
# A primary asks less at a time, but every guard interval.
GUARD_PROBES = 2
_PROBE_TIMEOUT_S = 1.0
# A follower counts as gone once it missed about three of its own pulls (within these bounds).
_FOLLOWER_GONE_MIN_S = 0.3
_FOLLOWER_GONE_MAX_S = 5.0


@dataclass(frozen=True, slots=True)
class Claim:
    """A machine saying it is the primary.

    Attributes:
        term: its term: one more than the highest term it had seen when it claimed.
        since: when it became the primary (ISO 8601 UTC, so text order is time order).
        machine_id: its machine id.
    """

    term: int
    since: str
    machine_id: str

    def beats(self, other: Claim) -> bool:
        """Say whether this claim wins: higher term, then earlier, then smaller machine id."""
        return (-self.term, self.since, self.machine_id) < (
            -other.term,
            other.since,
            other.machine_id,
        )


def leader_claim(body: Mapping[str, object], primary_region: str) -> Claim | None:
    """Return the claim a ``/status`` answer makes to be the primary of a region, or None."""
    machine, since, term = body.get("machine_id"), body.get("leader_since"), body.get("term")
    if (
        body.get("role") == "primary"
        and body.get("region") == primary_region
        and body.get("primary_region") == primary_region
        and isinstance(machine, str)
        and isinstance(since, str)
        and isinstance(term, int)
    ):
        return Claim(term, since, machine)
    return None


class StoreMemory:
    """Keep who this machine last knew as its region's primary, and the term, in its store."""

    KEY = "leadership"

    def __init__(self, store: RecordStore, primary_region: str) -> None:
        """Remember for ``primary_region`` (a memory of another primary region is ignored)."""
        self._store = store
        self._primary_region = primary_region

    def load(self) -> tuple[str, int] | None:
        """Return ``(leader machine id, term)`` as last kept, or None."""
        try:
            text = self._store.recall(self.KEY)
            data = json.loads(text) if text else None
        except (StoreError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("primary_region") != self._primary_region:
            return None
        leader, term = data.get("leader"), data.get("term")
        if not isinstance(leader, str) or not isinstance(term, int):
            return None
        return leader, term

    def save(self, leader: str, term: int) -> None:
        """Keep ``leader`` and ``term`` (best effort: a failure only loses the hint)."""
        value = {"primary_region": self._primary_region, "leader": leader, "term": term}
        with contextlib.suppress(StoreError):
            self._store.remember(self.KEY, json.dumps(value, sort_keys=True))


class Leadership:
    """Know who takes writes: this machine, another one (by id), or nobody known yet."""

    def __init__(
        self, machine_id: str, *, candidate: bool, memory: StoreMemory | None = None
    ) -> None:
        """Start undecided (a candidate) or as a follower of an unknown primary.

        A candidate with a ``memory`` starts from the term it kept and remembers the primary
        it followed before (see `take_remembered`).
        """
        self.machine_id = machine_id
        self.candidate = candidate
        self._memory = memory if candidate else None
        self._lock = threading.Lock()
        self._leader: str | None = None
        self._since: str | None = None
        self._term = 0
        self._remembered: str | None = None
        self._decided = threading.Event()
        if not candidate:
            self._decided.set()
        kept = self._memory.load() if self._memory is not None else None
        if kept is not None:
            leader, self._term = kept
            self._remembered = leader if leader != machine_id else None

    def take_remembered(self) -> str | None:
        """Return, once, the other machine this one followed before it (re)started."""
        with self._lock:
            leader, self._remembered = self._remembered, None
        return leader

    def claim(self) -> None:
        """Become the primary, in a term above every term seen so far."""
        with self._lock:
            self._term += 1
            self._leader, self._since = self.machine_id, utc_now_iso()
            term = self._term
        if self._memory is not None:
            self._memory.save(self.machine_id, term)
        self._decided.set()

    def observe(self, term: int) -> None:
        """Take note of another machine's term."""
        with self._lock:
            self._term = max(self._term, term)

    def term(self) -> int:
        """Return the highest term seen (this machine's own, when it is the primary)."""
        with self._lock:
            return self._term

    def own_claim(self) -> Claim | None:
        """Return this machine's claim when it is the primary, else None."""
        with self._lock:
            if self._leader != self.machine_id or self._since is None:
                return None
            return Claim(self._term, self._since, self.machine_id)

    def follow(self, leader: str | None) -> None:
        """Follow another machine (None: not known yet)."""
        with self._lock:
            self._leader, self._since = leader, None
            term = self._term
        if leader is not None and self._memory is not None:
            self._memory.save(leader, term)
        self._decided.set()

    def is_leader(self) -> bool:
        """Say whether this machine takes writes."""
        with self._lock:
            return self._leader == self.machine_id

    def leader(self) -> str | None:
        """Return the primary's machine id, as far as this machine knows."""
        with self._lock:
            return self._leader

    def since(self) -> str | None:
        """Return when this machine became the primary, or None when it is not."""
        with self._lock:
            return self._since

    def wait_decided(self, timeout: float) -> bool:
        """Wait until a candidate has either claimed or found a primary."""
        return self._decided.wait(timeout)


class Followers:
    """Track how far each follower has got, so a stopping primary can hand off without loss.

    Followers say on every pull who they are and how far they are (``sample-app-follower:
    <machine id> <region> <last seq> <pull interval>``).
    """

    def __init__(self) -> None:
        """Start knowing no follower."""
        self._changed = threading.Condition()
        # machine id -> (region, last seq, last seen (monotonic), its pull interval)
        self._seen: dict[str, tuple[str, int, float, float]] = {}

    def report(self, header: str) -> None:
        """Take note of a pull's ``sample-app-follower`` header (ignored when malformed)."""
        parts = header.split()
        try:
            machine, region, seq, interval = parts[0], parts[1], int(parts[2]), float(parts[3])
        except (IndexError, ValueError):
            return
        with self._changed:
            self._seen[machine] = (region, seq, time.monotonic(), interval)
            self._changed.notify_all()

    def wait_caught_up(self, region: str, last_seq: Callable[[], int], *, timeout: float) -> bool:
        """Wait until every live follower in ``region`` holds ``last_seq()``; False on timeout.

        Only pulls from now on count: the answers to those say the primary is stopping, so the
        follower knows to take over at once. A follower that stopped pulling (it was stopped
        too) is not waited for.
        """
        start = time.monotonic()

        def caught_up() -> bool:
            now, last = time.monotonic(), last_seq()
            return all(
                seq >= last and seen >= start
                for r, seq, seen, interval in self._seen.values()
                if r == region and now - seen < _gone_after(interval)
            )

        deadline = start + timeout
        with self._changed:
            while not caught_up():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                # Wake on each pull, and now and then to notice a follower that went away.
                self._changed.wait(min(left, 0.1))
            return True


def _gone_after(interval: float) -> float:
    """Return after how long without a pull a follower that pulls every ``interval`` is gone."""
    return min(max(3 * interval + 0.1, _FOLLOWER_GONE_MIN_S), _FOLLOWER_GONE_MAX_S)


class Coordinator:
    """Run the follower's pulls and the candidate's election in one background thread."""

    def __init__(
        self,
        leadership: Leadership,
        *,
        primary_region: str,
        interval: float,
        upstream: Upstream | None,
        replicator: Replicator | None,
        log: Callable[[str], None],
    ) -> None:
        """Prepare; :meth:`start` begins the work."""
        self._leadership = leadership
        self._primary_region = primary_region
        self.interval = interval
        # Long enough to ride out the primary's own restart, short enough for a drill.
        self.takeover_after = max(1.0, 6 * interval)
        self.guard_interval = max(0.5, 2 * interval)
        self._upstream = upstream
        self._replicator = replicator
        self._log = log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="coordinator", daemon=True)

    def start(self) -> None:
        """Start following or electing; a candidate with nobody to ask claims at once."""
        if self._upstream is None or self._replicator is None:
            if self._leadership.candidate:
                self._leadership.claim()
            return
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the thread to stop and wait up to ``timeout`` seconds for it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        """Elect (candidates), then follow or guard until stopped."""
        if self._leadership.candidate:
            self._elect()
        while not self._stop.is_set():
            if self._leadership.is_leader():
                self._guard()
                # Jitter, so two primaries' asks do not fall into step with a round-robin
                # proxy and keep landing on their own machines.
                self._stop.wait(self.guard_interval * random.uniform(0.5, 1.5))
                continue
            more = self._follow()
            replicator = self._replicator
            if self._leadership.candidate and replicator is not None and self._takeover_due():
                self._elect()
                continue
            if not more:
                self._stop.wait(self.interval)

    def _takeover_due(self) -> bool:
        """Say whether the primary has been gone long enough to look for a new one.

        A primary that said it was stopping handed off first, so its first miss is enough.
        """
        replicator = self._replicator
        if replicator is None:
            return False
        failing = replicator.failing_for()
        return failing >= self.takeover_after or (failing > 0 and replicator.primary_stopping)

    def _follow(self) -> bool:
        """Pull once from the primary; return True when more is waiting."""
        replicator = self._replicator
        if replicator is None:
            return False
        try:
            more = replicator.pull_once()
        except ReplicationError as exc:
            replicator.failed(str(exc), quiet=self._stop.is_set(), hint=exc.leader_hint)
            return False
        except StoreError as exc:
            replicator.failed(str(exc), quiet=self._stop.is_set())
            return False
        except Exception as exc:
            # A replica that silently stops following is worse than a noisy log.
            replicator.failed(f"unexpected error: {exc!r}", quiet=self._stop.is_set())
            return False
        self._leadership.observe(replicator.primary_term)
        if replicator.pinned is not None and replicator.pinned != self._leadership.leader():
            self._leadership.follow(replicator.pinned)
        return more

    def _elect(self) -> None:
        """Follow the primary another machine claims to be, or become the primary."""
        replicator = self._replicator
        claim = self._find_claim(PROBES)
        if self._stop.is_set() or replicator is None:
            return
        if claim is None:
            remembered = self._leadership.take_remembered()
            if remembered is not None:
                # Nobody answers, but this machine followed another before it started: the
                # whole region is likely restarting. The old primary has the newest records;
                # wait for it (a follower takes over after ``takeover_after``) rather than
                # take writes now and set them aside when it comes back.
                self._leadership.follow(remembered)
                replicator.pin(remembered)
                replicator.forgive()
                self._log(f"leadership: waiting for {remembered}, the primary before a restart")
                return
            self._leadership.claim()
            self._log(
                f"leadership: taking writes (term {self._leadership.term()}); no other machine "
                f"in {self._primary_region} says it is the primary"
            )
            return
        changed = claim.machine_id != self._leadership.leader()
        self._leadership.observe(claim.term)
        self._leadership.follow(claim.machine_id)
        replicator.pin(claim.machine_id)
        replicator.forgive()
        if changed:
            self._log(f"leadership: following the primary {claim.machine_id}")

    def _guard(self) -> None:
        """As the primary, step down for another primary whose claim wins."""
        rival = self._find_claim(GUARD_PROBES)
        mine = self._leadership.own_claim()
        if rival is None or mine is None or self._replicator is None:
            return
        if rival.beats(mine):
            self._leadership.observe(rival.term)
            self._leadership.follow(rival.machine_id)
            self._replicator.pin(rival.machine_id)
            self._replicator.forgive()
            self._log(
                f"leadership: {rival.machine_id} is the primary (term {rival.term}, since "
                f"{rival.since}; this machine had term {mine.term}); stepping down, following it"
            )

    def _find_claim(self, probes: int) -> Claim | None:
        """Ask the primary region's machines who is primary; return another machine's claim.

        Each ask reaches whichever machine the proxy picks, this one included, so it takes
        several to hear from the others; a follower that answers names its primary, which is
        then asked directly.
        """
        me = self._leadership.machine_id
        for _ in range(probes):
            if self._stop.is_set():
                return None
            body = self._ask_status()
            if body is None:
                continue
            claim = leader_claim(body, self._primary_region)
            hint = leader_hint(body, self._primary_region)
            if claim is None and hint is not None and hint != me:
                named = self._ask_status(instance=hint)
                claim = leader_claim(named, self._primary_region) if named else None
            if claim is not None and claim.machine_id != me:
                return claim
        return None

    def _ask_status(self, instance: str | None = None) -> dict[str, object] | None:
        """GET /status from the primary region (or one machine) through the proxy; None on error."""
        if self._upstream is None:
            return None
        try:
            # An unhealthy primary answers 503 and is still the primary. A short timeout: a
            # machine that hangs is not the primary anyone should follow.
            answer = self._upstream.get(
                "/status", instance=instance, accept=(200, 503), timeout=_PROBE_TIMEOUT_S
            )
        except ReplicationError:
            return None
        return answer.body
