"""Fixtures shared by every test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import stamina

if TYPE_CHECKING:
    from orchestrator.localfly.control import Endpoint


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--runslow",
        action="store_true",
        default=False,
        help="also run the tests marked slow, and the long variants (more seeds) of matrices",
    )


# The longest files (about a minute or more each: real fleets, drills, matrices), longest
# first as a whole run's `--durations=0` measured them. They go first, so that the workers
# (`-n 5 --dist loadfile --no-loadscope-reorder`) start on them and the short files fill in
# around them, rather than one of them starting last and running alone.
LONGEST_FIRST = (
    "execute/test_multihost.py",
    "reliability/test_secrets.py",
    "test_operator.py",
    "reliability/test_crashes.py",
    "reliability/test_interrupt_matrix.py",
    "drill/test_drills.py",
    "reliability/test_faults.py",
    "bench/test_bench_smoke.py",
    "rollout/test_rollout.py",
    "test_tasks.py",
    "test_process_groups.py",
    "scale/test_docs.py",
    "reliability/test_concurrency.py",
    "reliability/test_restart.py",
    "drill/test_interrupt.py",
    "execute/test_restorepoints.py",
    "rollout/test_crash_matrix.py",
)


def _longest_first(item: pytest.Item) -> int:
    path = item.path.as_posix()
    for rank, name in enumerate(LONGEST_FIRST):
        if path.endswith("/tests/" + name):
            return rank
    return len(LONGEST_FIRST)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_longest_first)  # stable: the order within a file is kept
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _instant_retries() -> Iterator[None]:
    """Make stamina's backoff instant in tests, keeping the number of attempts."""
    stamina.set_testing(True, attempts=5)
    yield
    stamina.set_testing(False)


@pytest.fixture(scope="session")
def localfly(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """Run one local Fly (fast profile) for the session; stop it and its machines by PID after.

    Yields the server's `orchestrator.localfly.control.Endpoint`. Tests share it, so each
    should use its own app name and clear any fault it injects. Besides the built-in
    ``sample-app``, its ``images.toml`` maps ``echo-app`` (a stdlib HTTP server on ``$PORT``
    that answers with its region and machine id), ``sleeper``, ``crasher`` (exits 3) and
    ``stubborn`` (ignores SIGTERM); see ``tests/localfly/helpers.py``.
    """
    from localfly.helpers import ECHO_IMAGES, assert_no_processes, machine_pids

    from orchestrator.localfly import control

    state_dir = tmp_path_factory.mktemp("localfly") / "state"
    state_dir.mkdir(mode=0o700)
    (state_dir / "images.toml").write_text(ECHO_IMAGES)
    endpoint = control.ensure_running(state_dir)
    try:
        yield endpoint
    finally:
        pids = [endpoint.pid, *machine_pids(state_dir)]
        control.stop(state_dir)
        assert_no_processes(state_dir, pids)
