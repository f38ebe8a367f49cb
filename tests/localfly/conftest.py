"""Fixtures for the local Fly's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.localfly import control
from orchestrator.localfly.control import Endpoint

from .helpers import ECHO_IMAGES, assert_no_processes, machine_pids


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio."""
    return "asyncio"


@pytest.fixture
def own_localfly(tmp_path: Path) -> Iterator[Endpoint]:
    """Run a private local Fly for one test (restarts, crashes); stop everything after."""
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    (state_dir / "images.toml").write_text(ECHO_IMAGES)
    endpoint = control.ensure_running(state_dir)
    pids = [endpoint.pid]
    try:
        yield endpoint
    finally:
        pids += machine_pids(state_dir)
        info = control.status(state_dir)
        pids += [info.pid] if info.pid else []
        control.stop(state_dir)
        assert_no_processes(state_dir, pids)
