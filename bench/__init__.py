"""Benchmarks of the orchestrator: planning at scale, and rollouts on the local Fly.

Each script prints one JSON object on stdout and exits 0; ``bench/README.md`` lists the commands
and ``docs/performance.md`` explains what is measured.
"""

from __future__ import annotations
