"""Write sequenced records to the primary through the proxy, and remember what was acknowledged.

The canary is the drill's stand-in for users who write. Every ``interval`` (100 ms) it sends
``POST /records`` with ``{"data": {"drill": <drill id>, "n": <counter>}}`` through the edge
proxy, steered to the current primary region with ``fly-prefer-region``, one write at a time.
For each write it keeps when it was sent and how it ended; for each acknowledged one (201) the
``seq`` the primary gave it, the region and machine that answered, and the ack time. That is
what the RPO is computed from afterwards: the drill reads the new primary's records and looks
for exactly these writes.

The drill moves the canary to the new primary after a promotion (`retarget`) and stops its
writes while it switches the primary back (`pause`), so a planned switch-over loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.drill.measure import Ack, Sample
from orchestrator.fly.proxy import ProxyClient

__all__ = ["CanaryWriter", "canary_n"]

DEFAULT_INTERVAL_S = 0.1


def _replay_target(status: int | None, body: Mapping[str, Any]) -> dict[str, str] | None:
    """Return where a "not primary" answer says to re-run a write, as request steering."""
    if status != 409:
        return None
    leader = body.get("leader")
    if isinstance(leader, str) and leader:
        return {"machine_id": leader}
    primary = body.get("primary_region")
    if isinstance(primary, str) and primary:
        return {"region": primary}
    return None


def canary_n(data: object, drill_id: str) -> int | None:
    """Return the canary counter in a record's data, when it is one of this drill's writes."""
    if isinstance(data, dict) and data.get("drill") == drill_id:
        n = data.get("n")
        if isinstance(n, int) and not isinstance(n, bool):
            return n
    return None


class CanaryWriter:
    """A paced, sequential writer of canary records.

    Args:
        probe: the app through the proxy (with a short timeout: a write to a machine that just
            froze must not stall the canary for long).
        drill_id: marks this drill's records.
        primary_region: where writes go first.
        interval_s: the pace: one write starts every ``interval_s`` at most.
        now: the wall clock.
    """

    def __init__(
        self,
        probe: ProxyClient,
        drill_id: str,
        *,
        primary_region: str,
        interval_s: float = DEFAULT_INTERVAL_S,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.probe = probe
        self.drill_id = drill_id
        self.primary_region = primary_region
        self.interval_s = interval_s
        self.now = now
        self.acks: list[Ack] = []
        self.samples: list[Sample] = []
        self.failures: dict[str, int] = {}
        self._n = 0
        self._running = asyncio.Event()
        self._running.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    # -- control ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start writing in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="drill-canary")

    async def stop(self) -> None:
        """Stop writing (the write in flight is abandoned)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def pause(self) -> None:
        """Stop starting writes and wait for the one in flight to end."""
        self._running.clear()
        await self._idle.wait()

    def resume(self) -> None:
        """Start writing again."""
        self._running.set()

    def retarget(self, region: str) -> None:
        """Send the next writes to ``region`` (the new primary)."""
        self.primary_region = region

    # -- what happened ----------------------------------------------------------------------

    @property
    def attempted(self) -> int:
        """Return how many writes were sent."""
        return len(self.samples)

    @property
    def failed(self) -> int:
        """Return how many writes were not acknowledged."""
        return sum(1 for s in self.samples if not s.ok)

    @property
    def last_ack(self) -> Ack | None:
        """Return the newest acknowledged write."""
        return self.acks[-1] if self.acks else None

    def acks_from(self, region: str, *, until: float | None = None) -> list[Ack]:
        """Return the writes ``region`` acknowledged (those acked before ``until``, if given)."""
        return [
            a for a in self.acks if a.region == region and (until is None or a.acked_at <= until)
        ]

    def first_ack_after(self, at: float, *, region: str | None = None) -> Ack | None:
        """Return the first write sent after ``at`` that was acknowledged (by ``region``)."""
        return next(
            (a for a in self.acks if a.sent_at >= at and (region is None or a.region == region)),
            None,
        )

    def steady_since(self, at: float, *, run: int, region: str) -> float | None:
        """Return when ``run`` writes in a row to ``region`` first succeeded after ``at``."""
        streak_start: float | None = None
        streak = 0
        for s in self.samples:
            if s.at < at:
                continue
            if s.ok and s.answered_by == region:
                if streak == 0:
                    streak_start = s.at
                streak += 1
                if streak >= run:
                    return streak_start
            else:
                streak = 0
        return None

    def to_json(self) -> dict[str, object]:
        """Return the counters for the report."""
        last = self.last_ack
        return {
            "drill_id": self.drill_id,
            "interval_ms": round(self.interval_s * 1000),
            "attempted": self.attempted,
            "acked": len(self.acks),
            "failed": self.failed,
            "failures_by_reason": dict(sorted(self.failures.items())),
            "last_seq": last.seq if last else None,
            "last_region": last.region if last else None,
        }

    # -- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            await self._running.wait()
            # The pace is a timer, not a synchronisation: one write per interval at most.
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if not self._running.is_set():
                continue
            next_at = loop.time() + self.interval_s
            self._idle.clear()
            try:
                await self._write_one()
            finally:
                self._idle.set()

    async def _write_one(self) -> None:
        self._n += 1
        n = self._n
        region = self.primary_region
        sent = self.now()
        payload = {"data": {"drill": self.drill_id, "n": n}}
        answer = await self.probe.request("POST", "/records", region=region, json_body=payload)
        replay = _replay_target(answer.status_code, answer.body)
        if replay is not None:
            # A machine that does not take writes answers 409 with fly-replay (naming the
            # primary); Fly's edge re-runs the request there. The local proxy does not, so
            # the canary does it itself, once, as the edge would.
            answer = await self.probe.request("POST", "/records", json_body=payload, **replay)
        done = self.now()
        body = answer.body
        seq = body.get("seq")
        answered_in = body.get("region") if isinstance(body.get("region"), str) else answer.region
        ok = answer.status_code == 201 and isinstance(seq, int) and not isinstance(seq, bool)
        self.samples.append(
            Sample(
                kind="write",
                target=region,
                answered_by=answered_in,
                at=sent,
                latency_s=done - sent,
                status=answer.status_code,
                ok=ok,
            )
        )
        if ok and isinstance(seq, int):
            self.acks.append(
                Ack(
                    n=n,
                    seq=seq,
                    region=str(answered_in or region),
                    machine_id=answer.machine_id,
                    sent_at=sent,
                    acked_at=done,
                )
            )
            return
        reason = f"HTTP {answer.status_code}" if answer.status_code is not None else "no answer"
        self.failures[reason] = self.failures.get(reason, 0) + 1
