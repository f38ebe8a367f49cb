"""Run the sample app: ``python -m orchestrator.sampleapp [serve|worker]``.

The argument is the image's command, which a ``[processes]`` group's command replaces (Fly
sends it as ``init.cmd``): ``serve`` (the default) is the HTTP app, ``worker`` the consumer of
its records.
"""

from __future__ import annotations

import os
import sys

from orchestrator.sampleapp.server import run
from orchestrator.sampleapp.worker import run_worker

_COMMANDS = ("serve", "worker")


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
    raise SystemExit(run_worker(os.environ) if command == "worker" else run(os.environ))


if __name__ == "__main__":
    main()
