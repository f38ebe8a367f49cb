"""What ``invoke local.up / local.down / local.status`` call: the local Fly of a project.

A project's local Fly keeps its state in ``<root>/.localfly/`` (``root`` holds
``fly.toml``).
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.localfly import control
from orchestrator.localfly.control import Endpoint, LocalStatus, StopSummary
from orchestrator.localfly.prometheus import PromServer

__all__ = ["down", "prometheus", "state_dir", "status", "up"]


def state_dir(root: Path | str) -> Path:
    """Return the local Fly's state dir for a project root."""
    return Path(root).resolve() / ".localfly"


def up(root: Path | str, profile: str = "fast", time_factor: float = 1.0) -> Endpoint:
    """Start the project's local Fly (if it is not running) and return where it answers."""
    return control.ensure_running(state_dir(root), profile=profile, time_factor=time_factor)


def prometheus(root: Path | str) -> PromServer:
    """Start a Prometheus scraping the project's local Fly (if none runs) and return it."""
    from orchestrator.localfly import prometheus as prom
    from orchestrator.localfly.state import MachineRecord, read_records

    found = state_dir(root)
    # Seeds the targets file when the running server has not written one yet.
    return prom.start(found, read_records(found / "state.db", MachineRecord))


def down(root: Path | str, purge: bool = False) -> StopSummary:
    """Stop the project's local Fly and every machine process; ``purge`` deletes its data."""
    return control.stop(state_dir(root), purge=purge)


def status(root: Path | str) -> LocalStatus:
    """Describe the project's local Fly without starting it."""
    return control.status(state_dir(root))
