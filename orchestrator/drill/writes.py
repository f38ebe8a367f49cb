"""Measure the primary region's write downtime through a deploy (``deploy --measure-writes``).

A writer like the drill's canary (`orchestrator.drill.canary.CanaryWriter`) sends one
``POST /records`` at a time through the edge proxy to the primary region for the whole run. The
write downtime is the longest span with no acknowledged write: between two acknowledgements in
a row, or from the start of the run to the first one, or from the last one to the end. A
rolling update that stops the primary refuses writes until another machine takes over; that
span is what the figure shows.

`longest_gap` is pure; `WriteMeter` owns the writer.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator.drill.canary import CanaryWriter
from orchestrator.fly.proxy import ProxyClient

__all__ = ["PAUSE_S", "WRITE_INTERVAL_S", "WriteDowntime", "WriteMeter", "longest_gap", "pauses"]

# One write every 50 ms: the figure is exact to about this much.
WRITE_INTERVAL_S = 0.05
# A write to a machine that is stopping must not hold the writer for long.
WRITE_TIMEOUT_S = 2.0


def longest_gap(start: float, end: float, acked: Sequence[float]) -> tuple[float, float, float]:
    """Return ``(seconds, from, to)``: the longest span of ``[start, end]`` with no ack in it.

    ``acked`` are the acknowledgement times (any order); those outside the span are ignored.
    """
    points = [start, *sorted(a for a in acked if start <= a <= end), end]
    best = (0.0, start, start)
    for before, after in itertools.pairwise(points):
        if after - before > best[0]:
            best = (after - before, before, after)
    return best


# A span this long without an acknowledged write counts as a pause (ten writes' worth).
PAUSE_S = 0.5


def pauses(
    start: float, end: float, acked: Sequence[float], *, longer_than: float = PAUSE_S
) -> list[float]:
    """Return the spans of ``[start, end]`` longer than ``longer_than`` with no ack, in order."""
    points = [start, *sorted(a for a in acked if start <= a <= end), end]
    return [b - a for a, b in itertools.pairwise(points) if b - a > longer_than]


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


@dataclass(frozen=True, slots=True)
class WriteDowntime:
    """What the writer saw during a deploy.

    Attributes:
        region: the primary region written to.
        attempted: writes sent.
        acked: writes the app acknowledged (201).
        longest_gap_s: the longest span with no acknowledged write.
        gap_from: when that span began (ISO 8601 UTC).
        gap_to: when it ended.
        interval_s: the writer's pace.
        duration_s: how long the writer ran.
        pauses: how many spans longer than `PAUSE_S` had no acknowledged write.
        paused_s: their total length.
    """

    region: str
    attempted: int
    acked: int
    longest_gap_s: float
    gap_from: str
    gap_to: str
    interval_s: float
    duration_s: float
    pauses: int = 0
    paused_s: float = 0.0

    def describe(self) -> str:
        """Return one line for the summary."""
        return (
            f"write downtime in {self.region}: {self.longest_gap_s:.2f}s at most without an "
            f"acknowledged write, {self.pauses} pause(s) of {self.paused_s:.2f}s in all "
            f"({self.acked} of {self.attempted} writes acknowledged over {self.duration_s:.1f}s)"
        )

    def to_json(self) -> dict[str, Any]:
        """Return the figures as JSON-ready values."""
        return {
            "region": self.region,
            "attempted": self.attempted,
            "acked": self.acked,
            "longest_gap_s": round(self.longest_gap_s, 3),
            "gap_from": self.gap_from,
            "gap_to": self.gap_to,
            "interval_s": self.interval_s,
            "duration_s": round(self.duration_s, 3),
            "pauses": self.pauses,
            "paused_s": round(self.paused_s, 3),
        }


class WriteMeter:
    """Write to the primary region through the proxy while a deploy runs.

    Args:
        proxy_url: the proxy's base URL.
        app: the app.
        region: the primary region.
        host_header: send ``Host: <app>.fly.dev`` (the local proxy).
        run_id: marks the writer's records (``{"drill": "deploy-<id>", "n": ...}``).
    """

    def __init__(
        self,
        proxy_url: str,
        app: str,
        region: str,
        *,
        host_header: bool,
        run_id: str,
        interval_s: float = WRITE_INTERVAL_S,
    ) -> None:
        # Imported here: the drill package builds on this one.
        self.region = region
        self.interval_s = interval_s
        self._probe = ProxyClient(proxy_url, app, host_header=host_header, timeout=WRITE_TIMEOUT_S)
        self._writer = CanaryWriter(
            self._probe, f"deploy-{run_id}", primary_region=region, interval_s=interval_s
        )
        self._started = 0.0

    def start(self) -> None:
        """Start writing in the background."""
        self._started = time.time()
        self._writer.start()

    async def stop(self) -> WriteDowntime:
        """Stop writing and return the figures."""
        await self._writer.stop()
        ended = time.time()
        await self._probe.aclose()
        acks = self._writer.acks
        times = [a.acked_at for a in acks]
        gap, since, until = longest_gap(self._started, ended, times)
        paused = pauses(self._started, ended, times)
        return WriteDowntime(
            region=self.region,
            attempted=self._writer.attempted,
            acked=len(acks),
            longest_gap_s=gap,
            gap_from=_iso(since),
            gap_to=_iso(until),
            interval_s=self.interval_s,
            duration_s=ended - self._started,
            pauses=len(paused),
            paused_s=sum(paused),
        )
