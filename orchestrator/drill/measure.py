"""Compute what a drill measures, from what it recorded: RPO, RTO, error rates, latencies.

Everything here is pure: plain values in, plain values out, no clock and no I/O, so the numbers
a report shows can be checked by hand from the samples they came from.

Times are epoch seconds (float).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Ack",
    "RpoResult",
    "RtoResult",
    "Sample",
    "TrafficStats",
    "compute_rpo",
    "compute_rto",
    "percentile",
    "record_digest",
    "traffic_stats",
]


@dataclass(frozen=True, slots=True)
class Ack:
    """One canary write the app acknowledged.

    Attributes:
        n: the canary's own counter for the write (in the record's data), unique per drill.
        seq: the sequence number the primary gave the record.
        region: the region whose machine acknowledged it.
        machine_id: the machine that acknowledged it, when the proxy said.
        sent_at: when the canary sent it.
        acked_at: when the acknowledgement arrived.
    """

    n: int
    seq: int
    region: str
    machine_id: str | None
    sent_at: float
    acked_at: float


@dataclass(frozen=True, slots=True)
class Sample:
    """One request through the proxy (a probe or a canary write).

    Attributes:
        kind: ``read`` (probe) or ``write`` (canary).
        target: the region it was steered to (``fly-prefer-region``), or ``None``.
        answered_by: the region that answered (``fly-region``), or ``None``.
        at: when it was sent.
        latency_s: how long the answer took (or until it failed).
        status: the HTTP status, or ``None`` when nothing came back.
        ok: whether it counts as served (a 2xx).
    """

    kind: str
    target: str | None
    answered_by: str | None
    at: float
    latency_s: float
    status: int | None
    ok: bool


@dataclass(frozen=True, slots=True)
class TrafficStats:
    """Error rate and latency over a set of samples.

    Attributes:
        requests: how many.
        errors: how many were not served.
        error_rate: ``errors / requests`` (0 when there were none).
        p50_ms: median latency of the served ones, in ms (``None`` when none was served).
        p95_ms: 95th percentile latency of the served ones, in ms.
    """

    requests: int
    errors: int
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None

    def to_json(self) -> dict[str, Any]:
        """Return the stats as JSON."""
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 4),
            "p50_ms": None if self.p50_ms is None else round(self.p50_ms, 1),
            "p95_ms": None if self.p95_ms is None else round(self.p95_ms, 1),
        }


def percentile(values: Sequence[float], q: float) -> float | None:
    """Return the ``q`` percentile (0..100) of ``values`` by nearest rank, or ``None``."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def traffic_stats(samples: Iterable[Sample]) -> TrafficStats:
    """Return the error rate and latency percentiles of ``samples``."""
    items = list(samples)
    errors = sum(1 for s in items if not s.ok)
    served = [s.latency_s * 1000.0 for s in items if s.ok]
    return TrafficStats(
        requests=len(items),
        errors=errors,
        error_rate=errors / len(items) if items else 0.0,
        p50_ms=percentile(served, 50),
        p95_ms=percentile(served, 95),
    )


@dataclass(frozen=True, slots=True)
class RpoResult:
    """How much acknowledged data the fail-over lost.

    Attributes:
        records: records the old primary acknowledged that the new primary does not hold
            (``last_acked_seq - last_present_seq``).
        seconds: how much time those records span: the ack time of the newest lost write
            minus the ack time of the newest write still present (0 when nothing was lost).
        last_acked_seq: the newest seq the old primary acknowledged.
        last_acked_at: when that acknowledgement arrived.
        last_present_seq: the newest of those seqs the new primary holds, with the same data.
        last_present_at: when that one was acknowledged.
        lost: the canary writes that are gone (acknowledged, then lost), oldest first.
    """

    records: int
    seconds: float
    last_acked_seq: int | None
    last_acked_at: float | None
    last_present_seq: int | None
    last_present_at: float | None
    lost: tuple[Ack, ...]

    def to_json(self) -> dict[str, Any]:
        """Return the result as JSON (timestamps as epoch seconds rounded to ms)."""
        return {
            "records": self.records,
            "seconds": round(self.seconds, 3),
            "last_acked_seq": self.last_acked_seq,
            "last_present_seq": self.last_present_seq,
            "lost_seqs": [a.seq for a in self.lost],
            "lost_canary_ns": [a.n for a in self.lost],
        }


def compute_rpo(acks: Sequence[Ack], present: Mapping[int, int | None]) -> RpoResult:
    """Compare the old primary's acknowledged writes with what the new primary holds.

    Args:
        acks: the canary writes the *old* primary acknowledged.
        present: the new primary's records, read right after the fail-over: seq → the canary
            counter ``n`` in that record's data (``None`` for a record that is not a canary
            write). A seq counts as present only when the same write sits there: a new
            primary that reused a lost seq number for a new write does not hide the loss.

    Replication is in order, so what survives is a prefix of the old primary's history; the
    newest acknowledged seq held with the same data marks its end.
    """
    if not acks:
        return RpoResult(0, 0.0, None, None, None, None, ())
    ordered = sorted(acks, key=lambda a: a.seq)
    last = ordered[-1]
    kept = [a for a in ordered if present.get(a.seq, -1) == a.n]
    lost = tuple(a for a in ordered if present.get(a.seq, -1) != a.n)
    newest_kept = kept[-1] if kept else None
    last_present_seq = newest_kept.seq if newest_kept else _max_present_below(present, last.seq)
    records = max(0, last.seq - (last_present_seq or 0))
    if not lost:
        seconds = 0.0
    elif newest_kept is not None:
        seconds = max(0.0, max(a.acked_at for a in lost) - newest_kept.acked_at)
    else:
        seconds = max(a.acked_at for a in lost) - min(a.acked_at for a in lost)
    return RpoResult(
        records=records,
        seconds=seconds,
        last_acked_seq=last.seq,
        last_acked_at=last.acked_at,
        last_present_seq=last_present_seq,
        last_present_at=newest_kept.acked_at if newest_kept else None,
        lost=lost,
    )


def _max_present_below(present: Mapping[int, int | None], below: int) -> int | None:
    """Return the newest seq the new primary holds at or below ``below`` (none was ours)."""
    # Without one of our writes to anchor on, the records the new primary holds from before
    # the canary started still count as kept history.
    candidates = [seq for seq, n in present.items() if seq <= below and n is None]
    return max(candidates) if candidates else None


@dataclass(frozen=True, slots=True)
class RtoResult:
    """How long the service took to recover, split in phases (seconds after the fault).

    Attributes:
        detect_s: until the probes saw the region down.
        promote_s: until the new primary's machines ran as primary (``None``: no promotion).
        first_healthy_s: until the first write was acknowledged again (the RTO).
        steady_state_s: until writes and reads were steadily served again.
    """

    detect_s: float | None
    promote_s: float | None
    first_healthy_s: float | None
    steady_state_s: float | None

    @property
    def rto_s(self) -> float | None:
        """Return the recovery time: the fault until a (promoted) primary takes writes."""
        return self.first_healthy_s

    def to_json(self) -> dict[str, Any]:
        """Return the phases as JSON."""

        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 3)

        return {
            "detect_s": r(self.detect_s),
            "promote_s": r(self.promote_s),
            "first_healthy_s": r(self.first_healthy_s),
            "steady_state_s": r(self.steady_state_s),
        }


def compute_rto(
    t0: float,
    *,
    detected_at: float | None,
    promoted_at: float | None,
    first_write_at: float | None,
    steady_at: float | None,
) -> RtoResult:
    """Turn the recovery's milestones (epoch seconds) into seconds after the fault at ``t0``."""

    def since(at: float | None) -> float | None:
        return None if at is None else max(0.0, at - t0)

    return RtoResult(
        detect_s=since(detected_at),
        promote_s=since(promoted_at),
        first_healthy_s=since(first_write_at),
        steady_state_s=since(steady_at),
    )


def record_digest(records: Iterable[Mapping[str, Any]]) -> str:
    """Return sha256 over records (seq, data, at) in seq order: same data, same digest."""
    h = hashlib.sha256()
    for record in sorted(records, key=lambda r: int(r.get("seq", 0))):
        line = json.dumps(
            [record.get("seq"), record.get("data"), record.get("at")],
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        h.update(line.encode())
        h.update(b"\n")
    return h.hexdigest()
