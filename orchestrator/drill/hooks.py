"""Run an operator's command after each phase of a drill (``invoke drill --hook CMD``).

The command runs through the shell, with the drill's state in its environment, and the drill
waits for it (at most `HOOK_TIMEOUT_S`) before the next phase, so what it looks at holds
still: ``invoke status --json`` after ``promote`` sees the promoted fleet. The canary and the
probes keep running meanwhile, so a slow hook shows in the timeline, not in the measurements.

Environment: ``DRILL_PHASE`` (``promote``...), ``DRILL_OUTCOME`` (``ok``, ``failed``,
``aborted``, ``skipped``), ``DRILL_REGION``, ``DRILL_PROMOTED`` (empty when none) and
``DRILL_APP``. Its output goes to stderr, never into ``--json``'s stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable

from orchestrator.drill.phases import PhaseSpan
from orchestrator.errors import DrillError

__all__ = ["HOOK_TIMEOUT_S", "shell_hook"]

HOOK_TIMEOUT_S = 120.0


def shell_hook(
    command: str, *, app: str, region: str, promoted: Callable[[], str | None]
) -> Callable[[PhaseSpan], Awaitable[None]]:
    """Return a hook that runs ``command`` after each phase with the drill's state in its env."""

    async def hook(span: PhaseSpan) -> None:
        env = {
            **os.environ,
            "DRILL_PHASE": span.phase.value,
            "DRILL_OUTCOME": span.outcome,
            "DRILL_REGION": region,
            "DRILL_PROMOTED": promoted() or "",
            "DRILL_APP": app,
        }
        # The process's own stderr (fd 2), never stdout: that is where --json's report goes.
        proc = await asyncio.create_subprocess_shell(
            command, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=2, stderr=2
        )
        try:
            code = await asyncio.wait_for(proc.wait(), HOOK_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise DrillError(f"the hook ran longer than {HOOK_TIMEOUT_S:g}s; killed it") from None
        if code != 0:
            raise DrillError(f"the hook exited with status {code}")

    return hook
