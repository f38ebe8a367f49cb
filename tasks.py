"""This fleet's tasks: the orchestrator's, as `invoke --list` shows them."""

from orchestrator.cli.tasks import ns  # noqa: F401
