"""The write downtime figure: the longest span of a run with no acknowledged write."""

from __future__ import annotations

from orchestrator.drill.writes import longest_gap, pauses


def test_the_longest_gap_is_between_two_acks() -> None:
    assert longest_gap(0.0, 10.0, [0.5, 1.0, 4.5, 5.0, 7.0, 9.8]) == (3.5, 1.0, 4.5)


def test_the_start_and_the_end_count_as_edges() -> None:
    # Nothing acknowledged until 6 s in: the writes were down from the start.
    assert longest_gap(0.0, 8.0, [6.0, 7.0]) == (6.0, 0.0, 6.0)
    # Nothing after 2 s: down until the end.
    assert longest_gap(0.0, 9.0, [1.0, 2.0]) == (7.0, 2.0, 9.0)


def test_no_ack_at_all_is_the_whole_run_and_acks_outside_are_ignored() -> None:
    assert longest_gap(1.0, 4.0, []) == (3.0, 1.0, 4.0)
    assert longest_gap(1.0, 4.0, [0.5, 4.5]) == (3.0, 1.0, 4.0)


def test_pauses_are_the_spans_longer_than_the_bound() -> None:
    acked = [0.1, 0.2, 1.5, 1.6, 1.7, 3.0]
    assert pauses(0.0, 3.1, acked, longer_than=0.5) == [1.5 - 0.2, 3.0 - 1.7]
    assert pauses(0.0, 3.1, acked, longer_than=2.0) == []
