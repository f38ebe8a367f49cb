"""Fixtures: a launcher of sample-app processes and a stand-in edge proxy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import EdgeProxy, Launcher


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    """Start sample apps; every one is stopped by PID at teardown, even when the test failed."""
    apps = Launcher(tmp_path)
    try:
        yield apps
    finally:
        apps.stop_all()
        apps.http.close()


@pytest.fixture
def edge(launcher: Launcher) -> Iterator[EdgeProxy]:
    """Run a stand-in edge proxy that answers with ``fly-region`` like the local Fly's does."""
    proxy = EdgeProxy()
    try:
        yield proxy
    finally:
        # The apps go first: a primary stopping gracefully still talks to its followers.
        launcher.stop_all()
        proxy.close()
