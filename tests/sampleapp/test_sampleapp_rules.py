"""The decisions replication and leadership rest on, as plain functions (no process needed)."""

from __future__ import annotations

import pytest

from orchestrator.sampleapp.leadership import Claim, leader_claim
from orchestrator.sampleapp.replication import source_problem

PRIMARY = {"role": "primary", "region": "syd"}


@pytest.mark.parametrize(
    ("header", "body", "accepted"),
    [
        ("syd", PRIMARY, True),
        (None, PRIMARY, True),  # no proxy header: the body alone decides
        ("dfw", PRIMARY, False),  # the proxy fell back to another region
        ("syd", {"role": "replica", "region": "syd"}, False),  # a follower in the region
        ("syd", {"role": "primary", "region": "ams"}, False),  # stale PRIMARY_REGION elsewhere
        ("syd", {}, True),  # an app that does not say: the proxy's header decides
        (None, {}, False),  # nobody says where it came from
    ],
)
def test_a_page_is_kept_only_when_it_comes_from_the_primary(
    header: str | None, body: dict[str, object], accepted: bool
) -> None:
    assert (source_problem("syd", header, body) is None) is accepted


def test_higher_term_wins_then_earlier_claim_then_smaller_id() -> None:
    old_but_stale = Claim(1, "2026-01-01T00:00:00.000000Z", "a")
    newer_term = Claim(2, "2026-01-01T00:05:00.000000Z", "b")
    same_term_later = Claim(1, "2026-01-01T00:00:01.000000Z", "a")
    same_term_same_time = Claim(1, "2026-01-01T00:00:00.000000Z", "b")

    assert newer_term.beats(old_but_stale)
    assert not old_but_stale.beats(newer_term)
    assert old_but_stale.beats(same_term_later)
    assert old_but_stale.beats(same_term_same_time)


def test_only_a_primary_of_the_primary_region_makes_a_claim() -> None:
    status = {
        "role": "primary",
        "region": "syd",
        "primary_region": "syd",
        "machine_id": "m1",
        "leader_since": "2026-01-01T00:00:00.000000Z",
        "term": 3,
    }

    assert leader_claim(status, "syd") == Claim(3, "2026-01-01T00:00:00.000000Z", "m1")
    assert leader_claim({**status, "role": "replica"}, "syd") is None
    assert leader_claim({**status, "primary_region": "dfw"}, "syd") is None
    assert leader_claim({**status, "term": None}, "syd") is None
