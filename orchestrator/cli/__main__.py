"""Run the tasks as a program of their own: ``fly-orchestrator deploy --region syd``."""

from __future__ import annotations

from invoke.program import Program

from orchestrator import __version__ as _version
from orchestrator.cli.tasks import ns

program = Program(
    namespace=ns, name="fly-orchestrator", binary="fly-orchestrator", version=_version
)


def main() -> None:
    """Run the program on this process's arguments."""
    program.run()


if __name__ == "__main__":
    main()
