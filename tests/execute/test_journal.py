"""The journal: runs, steps and machine configs survive the process that wrote them."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orchestrator.errors import DeployError
from orchestrator.execute.events import EventBus, ReleaseFinished, StepFinished, StepStarted
from orchestrator.execute.journal import Journal
from orchestrator.plan.steps import Step, StepKind

CREATE = Step(id="syd:machine.create:1", kind=StepKind.MACHINE_CREATE, region="syd", wave=1, slot=1)
GATE = Step(id="syd:gate.health", kind=StepKind.GATE_HEALTH, region="syd", wave=1)


def test_a_run_and_its_steps_are_recorded_through_events(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as journal:
        run = journal.begin_run(
            app="a",
            release="v1-x",
            spec_digest="d",
            image="img:v1",
            regions=["syd"],
            steps=[CREATE, GATE],
        )
        bus = EventBus(journal.recorder(run))
        bus.emit(StepStarted(CREATE))
        bus.emit(StepFinished(CREATE, "succeeded"))
        bus.emit(StepFinished(GATE, "skipped"))
        bus.emit(ReleaseFinished("v1-x", "failed", "syd:gate.health: boom"))

        record = journal.run(run)
        steps = {s.step_id: s for s in journal.steps(run)}

    assert record is not None
    assert (record.outcome, record.error, record.regions) == (
        "failed",
        "syd:gate.health: boom",
        ("syd",),
    )
    assert steps[CREATE.id].outcome == "succeeded"
    assert steps[CREATE.id].started_at is not None
    assert steps[GATE.id].outcome == "skipped"
    assert steps[GATE.id].started_at is None
    assert (tmp_path / ".orchestrator" / "journal.db").is_file()


def test_a_run_whose_start_cannot_be_written_whole_leaves_nothing_behind(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as journal:
        # The same step twice: the second row is refused after the run's row and the first.
        with pytest.raises(DeployError, match="journal write failed"):
            journal.begin_run(
                app="a",
                release="v1-x",
                spec_digest="d",
                image="img:v1",
                regions=["syd"],
                steps=[CREATE, GATE, CREATE],
            )
        # No half-recorded run that `--resume` would find and try to finish.
        assert journal.last_unfinished("a") is None
        assert journal.runs("a") == []


def test_a_launch_id_journaled_before_a_create_is_found_by_the_next_run(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as journal:
        first = journal.begin_run(
            app="a", release="v1-x", spec_digest="d", image="i", regions=["syd"]
        )
        row = journal.record_launch(
            first, app="a", release="v1-x", step=CREATE, launch_id="L-1", config_digest="cd"
        )
        journal.set_machine(row, "m1")
        assert journal.launch_for("a", "v1-x", CREATE.id, "cd") == "L-1"
        # A different desired config is a different create.
        assert journal.launch_for("a", "v1-x", CREATE.id, "other") is None
        assert journal.launch_for("a", "v2-y", CREATE.id, "cd") is None
        assert journal.machine_configs(first)[0].machine_id == "m1"


def test_what_was_written_before_a_kill_9_is_there_afterwards(tmp_path: Path) -> None:
    # A child process writes a run, a step start and a machine's config before it is changed,
    # then is killed with SIGKILL without closing anything.
    code = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from orchestrator.execute.journal import Journal
        from orchestrator.plan.steps import Step, StepKind
        step = Step(id="syd:machine.update:1", kind=StepKind.MACHINE_UPDATE, region="syd",
                    wave=1, slot=1, machine="m1")
        j = Journal.open(Path({str(tmp_path)!r}))
        run = j.begin_run(app="a", release="v2-x", spec_digest="d", image="i", regions=["syd"],
                          steps=[step])
        j.step_started(run, step)
        j.record_before(run, app="a", release="v2-x", step=step, machine_id="m1",
                        version="01V1", config={{"image": "img:v1"}})
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False, timeout=60)
    assert proc.returncode == -9

    with Journal.open(tmp_path) as journal:
        unfinished = journal.last_unfinished("a")
        assert unfinished is not None
        assert unfinished.release == "v2-x"
        [row] = journal.machine_configs(unfinished.run)
        [step] = journal.steps(unfinished.run)
    assert (row.machine_id, row.version_before, row.config_before) == (
        "m1",
        "01V1",
        {"image": "img:v1"},
    )
    assert row.version_after is None
    assert step.started_at is not None
    assert step.finished_at is None


def test_the_journal_never_holds_the_token(tmp_path: Path) -> None:
    secret = "fo1_supersecret"
    with Journal.open(tmp_path) as journal:
        run = journal.begin_run(app="a", release="v1", spec_digest="d", image="i", regions=[])
        journal.finish_run(run, "succeeded")
    data = b"".join(p.read_bytes() for p in (tmp_path / ".orchestrator").iterdir() if p.is_file())
    assert secret.encode() not in data


def test_a_journal_written_before_rollbacks_gains_their_columns(tmp_path: Path) -> None:
    # Version 1 had no releases.rollback_of and no steps.detail.
    directory = tmp_path / ".orchestrator"
    directory.mkdir()
    db = sqlite3.connect(directory / "journal.db")
    db.executescript(
        """
        CREATE TABLE releases (run INTEGER PRIMARY KEY AUTOINCREMENT, release TEXT NOT NULL,
            app TEXT NOT NULL, command TEXT NOT NULL, spec_digest TEXT NOT NULL,
            image TEXT NOT NULL, regions TEXT NOT NULL, started_at TEXT NOT NULL,
            finished_at TEXT, outcome TEXT, error TEXT, resumed_from INTEGER);
        CREATE TABLE steps (run INTEGER NOT NULL, step_id TEXT NOT NULL, kind TEXT NOT NULL,
            region TEXT NOT NULL, wave INTEGER NOT NULL, slot INTEGER, machine TEXT,
            mutating INTEGER NOT NULL, started_at TEXT, finished_at TEXT, outcome TEXT,
            error TEXT, result TEXT, PRIMARY KEY (run, step_id));
        INSERT INTO releases (release, app, command, spec_digest, image, regions, started_at)
            VALUES ('v1-x', 'a', 'deploy', 'd', 'i', '["syd"]', '2026-01-01T00:00:00Z');
        """
    )
    db.close()

    with Journal.open(tmp_path) as journal:
        old = journal.run(1)
        undo = journal.begin_run(
            app="a",
            release="v0-y",
            spec_digest="d",
            image="i",
            regions=["syd"],
            steps=[GATE],
            command="rollback",
            rollback_of=1,
        )
        journal.step_finished(undo, GATE, "succeeded", detail="syd: 2 machine(s) healthy")
        record = journal.run(undo)
        [step] = journal.steps(undo)

    assert old is not None
    assert old.rollback_of is None
    assert record is not None
    assert (record.command, record.rollback_of) == ("rollback", 1)
    assert step.detail == "syd: 2 machine(s) healthy"
