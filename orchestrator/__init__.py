"""Staged, multi-region deploys on Fly.io Machines, with an embedded local Fly."""

from __future__ import annotations

from orchestrator.errors import ConfigError, DeployError, FlyAPIError, OrchestratorError

__all__ = ["ConfigError", "DeployError", "FlyAPIError", "OrchestratorError", "__version__"]
__version__ = "0.1.0"
