"""``python -m orchestrator.sampleapp migrate``: the sample app's release command.

It stands for a schema migration: it says what release it migrates to, checks the app's
environment the way the server would, and exits 0. Two switches make it misbehave, so an
operator (or a test) can watch a release command fail or time out:

- ``SAMPLE_APP_MIGRATE_FAIL=1`` (or an image tag ending ``-badmigration``): it prints an
  error and exits 1;
- ``SAMPLE_APP_MIGRATE_SECONDS=N``: it works for N seconds first (a slow migration).

A release command runs without a volume (as on Fly), so it writes nothing to ``DATA_DIR``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping

__all__ = ["migrate"]


def _release(environ: Mapping[str, str]) -> str:
    image = environ.get("FLY_IMAGE_REF", "")
    last = image.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"


def migrate(environ: Mapping[str, str]) -> int:
    """Run the migration; return the exit code (0 done, 1 failed, 2 bad switch)."""
    release = _release(environ)
    print(f"migrate: release {release} in {environ.get('FLY_REGION', '?')}", flush=True)
    seconds_text = environ.get("SAMPLE_APP_MIGRATE_SECONDS", "0")
    try:
        seconds = float(seconds_text)
    except ValueError:
        print("migrate: SAMPLE_APP_MIGRATE_SECONDS must be a number", file=sys.stderr)
        return 2
    if seconds > 0:
        print(f"migrate: working for {seconds:g}s", flush=True)
        # The slow migration itself: it stands for work, not for waiting on something.
        time.sleep(seconds)
    failing = environ.get("SAMPLE_APP_MIGRATE_FAIL", "").lower() in ("1", "true", "yes")
    if failing or release.endswith("-badmigration"):
        print("migrate: applying 0002_add_index", flush=True)
        print("migrate: error: relation 'records' is locked; migration aborted", file=sys.stderr)
        return 1
    print("migrate: applying 0002_add_index", flush=True)
    print("migrate: done", flush=True)
    return 0
