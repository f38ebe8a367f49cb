"""Failpoints (tests only; a no-op outside them): kill the process at a named point.

Never set this in production. ``ORCH_TEST_KILL_AT`` names one point; when the running process
reaches it, it sends itself ``SIGKILL`` (no cleanup, no ``finally``, like a power cut of the
orchestrator alone). The crash-matrix tests (``tests/rollout/test_crash_matrix.py``) use it to
stop a deploy exactly where they want and then check that ``invoke deploy --resume`` converges.

Points are ``<event>:<step id>`` or ``<event>:<n>`` (the n-th such event of the process):

- ``step_started`` — the step's start is in the journal, nothing of it has been sent;
- ``step_finished`` — the step's end is in the journal, the next step has not started;
- ``launch_recorded`` — a create's launch id is in the journal, the create is not sent;
- ``create_sent`` — Fly answered the create; the machine is not yet checked;
- ``update_sent`` — Fly answered the update; the new version is not yet checked;
- ``volume_created`` — Fly answered a volume create; it may still be hydrating;
- ``rollback_started`` — an automatic rollback's run is in the journal, no step has started
  (no step id: ``rollback_started`` alone, or ``rollback_started:1``).

- ``drill_phase_started`` / ``drill_phase_finished`` — a drill phase's state is saved on the
  way in / out (step id: the phase, ``promote``);
- ``drill_promoting`` — the region to promote is chosen and saved, no machine changed yet.

A point prefixed ``sigint@`` (``sigint@drill_phase_started:promote``) sends the process
``SIGINT`` instead, as an operator's Ctrl-C would, and the process carries on handling it.

The variable is read once per process. With ``ORCH_TEST_KILL_MARK`` set to a path, the point
is written there just before the kill: evidence of where the process died for a harness that
cannot see the exit status itself (a child of a forkserver may report 255 instead of -9).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

__all__ = ["KILL_ENV", "MARK_ENV", "failpoint"]

KILL_ENV = "ORCH_TEST_KILL_AT"
MARK_ENV = "ORCH_TEST_KILL_MARK"

_SIGINT = "sigint@"
_target: str | None = os.environ.get(KILL_ENV) or None
_seen: Counter[str] = Counter()


def failpoint(event: str, step_id: str | None = None) -> None:
    """SIGKILL this process if ``ORCH_TEST_KILL_AT`` names this point (test only)."""
    if _target is None:
        return
    _seen[event] += 1
    wanted = {f"{event}:{_seen[event]}"}
    if step_id is not None:
        wanted.add(f"{event}:{step_id}")
    else:
        wanted.add(event)
    if _target.startswith(_SIGINT) and _target[len(_SIGINT) :] in wanted:
        os.kill(os.getpid(), signal.SIGINT)
        return
    if _target in wanted:
        mark = os.environ.get(MARK_ENV)
        if mark:
            with open(mark, "w", encoding="utf-8") as f:
                f.write(_target)
        os.kill(os.getpid(), signal.SIGKILL)
