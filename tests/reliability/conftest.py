"""Fixtures of the reliability suites.

The orchestrator runs with its real retry policy here (stamina's backoff, six attempts): how it
behaves when Fly fails is what these suites measure, so the instant retries the rest of the
tests use are switched off.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stamina

from .harness import Rig


@pytest.fixture(autouse=True)
def _instant_retries() -> None:
    """Keep stamina's real backoff (overrides the repo-wide instant retries)."""
    stamina.set_testing(False)


@pytest.fixture(scope="session")
def runslow(request: pytest.FixtureRequest) -> bool:
    """Tell whether the long variants were asked for (``--runslow``)."""
    return bool(request.config.getoption("--runslow"))


@pytest.fixture(scope="package")
def shared_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """One deployed copy of the sample fleet for the suites that take turns on a fleet.

    Each test leaves it converged (at whatever release fly.toml then names); the fault and
    crash matrices start their own fleets, several at once.
    """
    rig = Rig.start(tmp_path_factory.mktemp("shared") / "fleet")
    try:
        done = rig.deploy()
        assert done.outcome == "succeeded", done.error
        yield rig
    finally:
        rig.stop()
