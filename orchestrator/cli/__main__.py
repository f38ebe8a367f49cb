"""Run the tasks as a program of their own: ``fly-orchestrator deploy --region syd``."""

from __future__ import annotations

import os
import sys

from invoke.program import Program

from orchestrator import __version__ as _version
from orchestrator.cli.tasks import ns

program = Program(
    namespace=ns, name="fly-orchestrator", binary="fly-orchestrator", version=_version
)


def main() -> None:
    """Run the program on this process's arguments."""
    try:
        program.run()
    except BrokenPipeError:
        # `fly-orchestrator --help | head`: the reader left; end as SIGPIPE would, quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)


if __name__ == "__main__":
    main()
