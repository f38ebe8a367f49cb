"""Run the sample app: ``python -m orchestrator.sampleapp`` (configured by environment).

``python -m orchestrator.sampleapp migrate`` runs its release command instead.
"""

from __future__ import annotations

import os
import sys

from orchestrator.sampleapp.migrate import migrate
from orchestrator.sampleapp.server import run


def main() -> None:
    """Run until stopped (or run ``migrate``) and exit with its exit code."""
    if sys.argv[1:] == ["migrate"]:
        raise SystemExit(migrate(os.environ))
    if sys.argv[1:]:
        print(f"usage: python -m orchestrator.sampleapp [migrate], got {sys.argv[1:]}")
        raise SystemExit(2)
    raise SystemExit(run(os.environ))


if __name__ == "__main__":
    main()
