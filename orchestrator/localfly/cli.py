"""What ``invoke local.up / local.down / local.status`` call: the local Fly of a project.

A project's local Fly keeps its state in ``<root>/.localfly/`` (``root`` holds
``fly.toml``).
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.localfly import control
from orchestrator.localfly.control import Endpoint, LocalStatus, StopSummary

__all__ = ["down", "state_dir", "status", "up"]


def state_dir(root: Path | str) -> Path:
    """Return the local Fly's state dir for a project root."""
    return Path(root).resolve() / ".localfly"


def up(root: Path | str, profile: str = "fast", time_factor: float = 1.0) -> Endpoint:
    """Start the project's local Fly (if it is not running) and return where it answers."""
    return control.ensure_running(state_dir(root), profile=profile, time_factor=time_factor)


def down(root: Path | str, purge: bool = False) -> StopSummary:
    """Stop the project's local Fly and every machine process; ``purge`` deletes its data."""
    return control.stop(state_dir(root), purge=purge)


def status(root: Path | str) -> LocalStatus:
    """Describe the project's local Fly without starting it."""
    return control.status(state_dir(root))
