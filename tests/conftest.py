"""Fixtures shared by every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stamina


@pytest.fixture(autouse=True)
def _instant_retries() -> Iterator[None]:
    """Make stamina's backoff instant in tests, keeping the number of attempts."""
    stamina.set_testing(True, attempts=5)
    yield
    stamina.set_testing(False)
