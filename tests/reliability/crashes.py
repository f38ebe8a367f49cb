"""The crash matrix: SIGKILL the orchestrator at a step boundary, then ``deploy --resume``.

The kill comes from the orchestrator's test-only hook (`orchestrator.execute.failpoints`,
``ORCH_TEST_KILL_AT``): the process sends itself SIGKILL exactly at the named point, with no
cleanup, like a power cut of the orchestrator alone. Points of a two-wave rollout of the sample
fleet (syd, then dfw + ams; five machine updates and three health gates):

- ``step_started:<step>``: the step's start is journaled, nothing of it sent yet;
- ``update_sent:<step>``: Fly answered the update, the new version is not verified yet (the
  machine's lease is still held by the dead process);
- ``step_finished:<step>``: the step's end is journaled, the next one not started.

That is 21 points per rollout. On first deploys (creates), points inside the creates are hit
too: ``volume_created``, ``launch_recorded``, ``create_sent`` (`CREATE_CHAINS`).

After each kill, a fresh ``invoke deploy --resume`` must take over the stale lock, wait out the
dead run's leases and carry on. To keep the suite fast, several points share a rollout
(`chains`): the deploy is killed at the first, its resume at the next, and so on, and a last
resume runs to the end; then `check_converged` must hold (desired release, one machine per
slot, no orphan volume, no stuck lease, every acknowledged record everywhere).
``bench/reliability.py --independent`` resumes every point to the end on its own.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.commands import deploy as deploying
from orchestrator.plan.steps import StepKind

from .harness import RecordWriter, Rig, check_converged

__all__ = [
    "CREATE_CHAINS",
    "CrashReport",
    "chains",
    "rollout_points",
    "run_chains",
    "run_crash_chain",
]

# First deploys (creates), killed inside the creates: one chain per fleet that starts empty.
CREATE_CHAINS: tuple[tuple[str, ...], ...] = (
    (
        "launch_recorded:syd:machine.create:1",
        "volume_created:dfw:volume.ensure:1",
        "create_sent:dfw:machine.create:1",
    ),
    (
        "create_sent:syd:machine.create:2",
        "launch_recorded:ams:machine.create:1",
        "step_finished:ams:volume.replicate:1",
    ),
)


def rollout_points(rig: Rig) -> list[str]:
    """Return every kill point of the rollout a deploy would run now, in step order."""
    import asyncio

    plan = asyncio.run(deploying.plan(rig.settings()))
    points: list[str] = []
    for step in plan.steps():
        points.append(f"step_started:{step.id}")
        if step.kind is StepKind.MACHINE_UPDATE:
            points.append(f"update_sent:{step.id}")
        points.append(f"step_finished:{step.id}")
    return points


def chains(points: Sequence[str], first_wave: Sequence[str]) -> list[list[str]]:
    """Group the points into rollouts: one first-wave point, then later points in order.

    A chain ``[a, b, c]`` is one rollout killed at ``a``, whose resume is killed at ``b``,
    whose resume is killed at ``c``, whose resume runs to the end. Each later point must be
    reached by the resume before it, whatever the kill before did:

    - ``a`` is in the first wave, whose regions pass their gates before any later wave
      starts, so nothing of the later waves has run when ``a`` kills;
    - ``b``, ``c``... are the same event (start, update sent, end) of successive steps of one
      later region; its steps form a chain (spearhead, the other updates, the gate), so a
      step after the killed one has not started, and its id stays the same on re-planning.

    Points left over (more first-wave points than later groups) make chains of one.
    """
    early = [p for p in points if _region(p) in first_wave]
    groups: dict[tuple[str, str], list[str]] = {}
    for p in points:
        if _region(p) not in first_wave:
            groups.setdefault((_region(p), p.split(":", 1)[0]), []).append(p)
    late = list(groups.values())
    out = [[a, *group] for a, group in zip(early, late, strict=False)]
    out.extend([p] for p in early[len(late) :])
    out.extend(group for group in late[len(early) :])
    return out


def _region(point: str) -> str:
    return point.split(":", 2)[1]


@dataclass
class CrashReport:
    """One rollout killed at one or more points, each followed by a resume."""

    points: list[str]
    killed: list[str]
    resumed: int
    seconds: float
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{' then '.join(self.points)}: killed at {len(self.killed)}, "
            f"last resume exit {self.resumed}, {self.seconds:.1f}s"
        )


def run_crash_chain(
    rig: Rig, points: Sequence[str], tag: str | None, acked: list[tuple[int, str]]
) -> CrashReport:
    """Deploy ``sample-app:TAG`` killed at ``points[0]``, resume killed at the next... resume.

    After every kill the journal must show the dead run unfinished and the next run resuming
    it; after the last resume `check_converged` must hold.
    """
    started = time.monotonic()
    if tag is not None:
        rig.set_image(tag)
    volumes_before = rig.volume_ids()
    report = CrashReport(list(points), [], 0, 0.0)
    with RecordWriter(rig, f"crash-{tag or 'first'}") as writer:
        command = ["deploy", "--json"]
        for point in points:
            mark = rig.runs_dir / f"killed-{next(_marks)}"
            code, child = rig.run_child(
                *command, env={"ORCH_TEST_KILL_AT": point, "ORCH_TEST_KILL_MARK": str(mark)}
            )
            # -9; or 255 when the forkserver lost the status (seen under load) and the hook
            # left its mark just before SIGKILL.
            if code == -9 or (code == 255 and _read(mark) == point):
                report.killed.append(point)
            else:
                report.problems.append(f"not killed at {point}: exit {code}: {child.stderr[-500:]}")
            command = ["deploy", "--resume", "--json"]
        report.resumed, last = rig.run_child(*command)
    acked.extend(writer.acked)
    if report.resumed != 0:
        report.problems.append(f"resume exit {report.resumed}: {last.stderr[-800:]}")
    runs = rig.journal_rows(
        "SELECT run, outcome, finished_at, resumed_from FROM releases ORDER BY run DESC LIMIT ?",
        len(points) + 1,
    )
    runs = list(reversed(runs))
    for dead, resume in itertools.pairwise(runs):
        if dead["finished_at"] is not None:
            report.problems.append(f"killed run {dead['run']} has an end in the journal")
        if resume["resumed_from"] != dead["run"]:
            report.problems.append(f"run {resume['run']} did not resume run {dead['run']}")
    seen = check_converged(rig, volumes_before=volumes_before, acked=acked)
    report.problems.extend(seen.problems)
    report.seconds = round(time.monotonic() - started, 2)
    return report


_marks = itertools.count()


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def run_chains(
    rig: Rig, work: Sequence[tuple[Sequence[str], str | None]], log: Any = None
) -> list[CrashReport]:
    """Run ``(points, tag)`` chains one after the other on ``rig``."""
    acked: list[tuple[int, str]] = []
    reports = []
    for points, tag in work:
        report = run_crash_chain(rig, points, tag, acked)
        reports.append(report)
        if log is not None:
            log(report.line())
    return reports
