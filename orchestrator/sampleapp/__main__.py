"""Run the sample app: ``python -m orchestrator.sampleapp`` (configured by environment)."""

from __future__ import annotations

import os

from orchestrator.sampleapp.server import run


def main() -> None:
    """Run until stopped and exit with the app's exit code."""
    raise SystemExit(run(os.environ))


if __name__ == "__main__":
    main()
