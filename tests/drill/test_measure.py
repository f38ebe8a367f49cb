"""RPO, RTO, traffic statistics and the guard, computed from plain recorded values."""

from __future__ import annotations

import pytest

from orchestrator.drill.canary import _replay_target, canary_n
from orchestrator.drill.measure import (
    Ack,
    Sample,
    compute_rpo,
    compute_rto,
    percentile,
    record_digest,
    traffic_stats,
)
from orchestrator.drill.report import guard_reason
from orchestrator.fleetconfig.model import DrillObjectives


def acks(*pairs: tuple[int, int], start: float = 100.0, step: float = 0.1) -> list[Ack]:
    """Return acks for (n, seq) pairs, acknowledged ``step`` seconds apart."""
    return [
        Ack(
            n=n,
            seq=seq,
            region="syd",
            machine_id="m1",
            sent_at=start + i * step,
            acked_at=start + i * step + 0.01,
        )
        for i, (n, seq) in enumerate(pairs)
    ]


def test_nothing_lost_when_the_new_primary_holds_every_acknowledged_write() -> None:
    written = acks((1, 11), (2, 12), (3, 13))
    rpo = compute_rpo(written, {11: 1, 12: 2, 13: 3, 14: None})
    assert (rpo.records, rpo.seconds, rpo.lost) == (0, 0.0, ())
    assert rpo.last_acked_seq == rpo.last_present_seq == 13


def test_lost_writes_are_counted_in_records_and_in_seconds_of_writes() -> None:
    written = acks((1, 11), (2, 12), (3, 13), (4, 14), (5, 15))
    rpo = compute_rpo(written, {10: None, 11: 1, 12: 2})
    assert rpo.records == 3
    assert [a.seq for a in rpo.lost] == [13, 14, 15]
    assert rpo.last_present_seq == 12
    # The newest lost write (seq 15) was acknowledged 0.3 s after the newest kept one (12).
    assert rpo.seconds == pytest.approx(0.3)


def test_a_reused_seq_with_other_data_does_not_hide_a_lost_write() -> None:
    # The new primary wrote its own record 3 under seq 13 after the fail-over.
    written = acks((1, 11), (2, 12), (3, 13))
    rpo = compute_rpo(written, {11: 1, 12: 2, 13: 99})
    assert rpo.records == 1
    assert [a.n for a in rpo.lost] == [3]


def test_when_no_canary_write_survived_the_older_records_anchor_the_loss() -> None:
    written = acks((1, 6), (2, 7))
    rpo = compute_rpo(written, {4: None, 5: None})
    assert rpo.records == 2
    assert rpo.last_present_seq == 5
    assert rpo.seconds == pytest.approx(0.1)


def test_no_writes_means_no_loss() -> None:
    rpo = compute_rpo([], {})
    assert (rpo.records, rpo.seconds, rpo.last_acked_seq) == (0, 0.0, None)


def test_rto_phases_are_seconds_after_the_fault() -> None:
    rto = compute_rto(
        1000.0, detected_at=1000.2, promoted_at=1003.0, first_write_at=1001.5, steady_at=1004.0
    )
    assert rto.to_json() == {
        "detect_s": 0.2,
        "promote_s": 3.0,
        "first_healthy_s": 1.5,
        "steady_state_s": 4.0,
    }
    assert rto.rto_s == pytest.approx(1.5)
    assert (
        compute_rto(
            5.0, detected_at=None, promoted_at=None, first_write_at=None, steady_at=None
        ).rto_s
        is None
    )


def sample(ok: bool, latency: float, at: float = 0.0) -> Sample:
    return Sample("read", "dfw", "dfw", at, latency, 200 if ok else 503, ok)


def test_traffic_stats_count_errors_and_take_latency_of_served_requests() -> None:
    stats = traffic_stats(
        [sample(True, 0.010), sample(True, 0.030), sample(False, 2.0), sample(True, 0.020)]
    )
    assert (stats.requests, stats.errors) == (4, 1)
    assert stats.error_rate == pytest.approx(0.25)
    assert stats.p50_ms == pytest.approx(20.0)
    assert stats.p95_ms == pytest.approx(30.0)
    empty = traffic_stats([])
    assert (empty.error_rate, empty.p95_ms) == (0.0, None)


def test_percentile_by_nearest_rank() -> None:
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile([1.0], 95) == 1.0
    assert percentile([], 50) is None


def test_record_digest_depends_on_content_not_order() -> None:
    a = [{"seq": 1, "data": {"x": 1}, "at": "t1"}, {"seq": 2, "data": "y", "at": "t2"}]
    assert record_digest(a) == record_digest(list(reversed(a)))
    changed = [a[0], {**a[1], "data": "z"}]
    assert record_digest(changed) != record_digest(a)


def test_the_guard_aborts_on_duration_and_on_the_survivors_error_rate() -> None:
    limits = DrillObjectives(max_error_rate=0.2, max_duration_s=30.0)
    calm = traffic_stats([sample(True, 0.01)] * 9 + [sample(False, 1.0)])
    stormy = traffic_stats([sample(True, 0.01)] * 6 + [sample(False, 1.0)] * 4)
    too_few = traffic_stats([sample(False, 1.0)] * 3)
    assert guard_reason(limits, 10.0, calm) is None
    assert guard_reason(limits, 10.0, too_few) is None
    assert guard_reason(limits, 10.0, None) is None
    reason = guard_reason(limits, 10.0, stormy)
    assert reason is not None
    assert "0.40" in reason
    assert "max_error_rate 0.2" in reason
    late = guard_reason(limits, 31.0, calm)
    assert late is not None
    assert "max_duration (30s)" in late


def test_canary_records_are_recognised_by_drill_id() -> None:
    assert canary_n({"drill": "abc", "n": 7}, "abc") == 7
    assert canary_n({"drill": "other", "n": 7}, "abc") is None
    assert canary_n({"drill": "abc", "n": True}, "abc") is None
    assert canary_n("text", "abc") is None


def test_a_not_primary_answer_is_replayed_to_the_leader_or_the_primary_region() -> None:
    assert _replay_target(409, {"leader": "m1", "primary_region": "syd"}) == {"machine_id": "m1"}
    assert _replay_target(409, {"leader": None, "primary_region": "syd"}) == {"region": "syd"}
    assert _replay_target(201, {"seq": 1}) is None
    assert _replay_target(503, {"leader": "m1"}) is None
