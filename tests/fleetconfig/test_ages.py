"""Ages on the command line (``--since 10m``, ``--older-than 7d``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestrator.errors import ConfigError
from orchestrator.fleetconfig.ages import parse_age, parse_since

NOW = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("2h", 7200), ("7d", 604800), ("1w", 604800), ("1h30m", 5400)],
)
def test_ages_read_as_seconds(text: str, seconds: float) -> None:
    assert parse_age(text, "--older-than") == seconds


@pytest.mark.parametrize("text", ["", "7", "7x", "d", "-1d", "1d junk"])
def test_a_bad_age_names_the_flag(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_age(text, "--older-than")
    assert str(err.value).startswith("--older-than: expected an age such as")
    assert err.value.exit_code == 2


def test_since_takes_an_age_or_a_time() -> None:
    assert parse_since("10m", "--since", NOW) == datetime(2026, 1, 31, 11, 50, tzinfo=UTC)
    assert parse_since("2026-01-31T09:00:00Z", "--since", NOW) == datetime(
        2026, 1, 31, 9, tzinfo=UTC
    )
    assert parse_since("2026-01-31T09:00", "--since", NOW).tzinfo is UTC
    with pytest.raises(ConfigError, match="--since: expected an age"):
        parse_since("yesterday", "--since", NOW)
