"""Run the sample app: ``python -m orchestrator.sampleapp`` (configured by environment).

``python -m orchestrator.sampleapp migrate`` runs its release command instead.

``SAMPLE_APP_CRASH=1`` (or an image tag ending ``-crashloop``) makes it exit 1 at start, after
``SAMPLE_APP_CRASH_AFTER`` seconds (default 0): a release that crash-loops under Fly's restart
policy, for smoke checks to catch.
"""

from __future__ import annotations

import os
import sys
import time

from orchestrator.sampleapp.migrate import migrate
from orchestrator.sampleapp.server import run


def main() -> None:
    """Run until stopped (or run ``migrate``) and exit with its exit code."""
    if sys.argv[1:] == ["migrate"]:
        raise SystemExit(migrate(os.environ))
    if sys.argv[1:]:
        print(f"usage: python -m orchestrator.sampleapp [migrate], got {sys.argv[1:]}")
        raise SystemExit(2)
    tag = os.environ.get("FLY_IMAGE_REF", "").rsplit("/", 1)[-1].rpartition(":")[2]
    if os.environ.get("SAMPLE_APP_CRASH", "").lower() in ("1", "true", "yes") or tag.endswith(
        "-crashloop"
    ):
        after = float(os.environ.get("SAMPLE_APP_CRASH_AFTER") or 0)
        if after > 0:
            time.sleep(after)  # it stands for the work done before the crash
        print("sample-app: fatal: crashing on purpose (SAMPLE_APP_CRASH)", file=sys.stderr)
        raise SystemExit(1)
    raise SystemExit(run(os.environ))


if __name__ == "__main__":
    main()
