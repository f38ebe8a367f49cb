"""Run the sample app: ``python -m orchestrator.sampleapp [serve|worker|migrate]``.

The argument is the image's command, which a ``[processes]`` group's command replaces (Fly
sends it as ``init.cmd``): ``serve`` (the default) is the HTTP app, ``worker`` the consumer of
its records, ``migrate`` its release command (``[deploy] release_command = "migrate"``).

``SAMPLE_APP_CRASH=1`` (or an image tag ending ``-crashloop``) makes the app exit 1 at start,
after ``SAMPLE_APP_CRASH_AFTER`` seconds (default 0): a release that crash-loops under Fly's
restart policy, for smoke checks to catch.
"""

from __future__ import annotations

import os
import sys
import time

from orchestrator.sampleapp.migrate import migrate
from orchestrator.sampleapp.server import run
from orchestrator.sampleapp.worker import run_worker

_COMMANDS = ("serve", "worker", "migrate")


def main(argv: list[str] | None = None) -> None:
    """Run the command named in ``argv`` until stopped and exit with its exit code."""
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "serve"
    if command not in _COMMANDS or len(args) > 1:
        print(
            f"sample-app: command: {' '.join(args)!r} is not a command: use one of "
            f"{', '.join(_COMMANDS)}",
            file=sys.stderr,
        )
        raise SystemExit(2)
    if command == "migrate":
        raise SystemExit(migrate(os.environ))
    if command == "worker":
        raise SystemExit(run_worker(os.environ))
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
