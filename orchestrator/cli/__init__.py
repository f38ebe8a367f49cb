"""The command line: invoke tasks, and the ``fly-orchestrator`` program that serves them."""
