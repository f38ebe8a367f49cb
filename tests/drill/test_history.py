"""Drill results on disk, and when a deploy says the primary's last passing drill is too old."""

from __future__ import annotations

from pathlib import Path

from orchestrator.drill.history import DrillRecord, read_drills, record_drill, stale_drill

DAY = 86400.0
NOW = 1_800_000_000.0


def test_records_survive_a_damaged_line_and_come_back_in_order(tmp_path: Path) -> None:
    record_drill(tmp_path, DrillRecord("syd", "syd", "failed", NOW - 3 * DAY))
    with (tmp_path / ".orchestrator" / "drills.jsonl").open("a") as out:
        out.write('{"region": "syd", "verd')  # a write cut short by a crash
        out.write("\n")
    record_drill(tmp_path, DrillRecord("syd", "syd", "passed", NOW - DAY))
    assert [r.verdict for r in read_drills(tmp_path)] == ["failed", "passed"]


def test_the_last_passing_primary_drill_older_than_max_age_is_said_with_its_age() -> None:
    records = [
        DrillRecord("syd", "syd", "passed", NOW - 45 * DAY),
        DrillRecord("syd", "syd", "failed", NOW - 2 * DAY),
        DrillRecord("dfw", "syd", "passed", NOW - DAY),  # a replica's drill does not count
    ]
    said = stale_drill(records, "syd", 30 * DAY, NOW)
    assert said is not None
    assert "45 days ago" in said
    assert "max_age 30 days" in said
    assert stale_drill(records, "syd", 60 * DAY, NOW) is None


def test_drills_that_never_passed_warn_and_a_fleet_never_drilled_does_not() -> None:
    failed = [DrillRecord("syd", "syd", "failed", NOW - DAY)]
    said = stale_drill(failed, "syd", 30 * DAY, NOW)
    assert said is not None
    assert "no drill of the primary region syd has passed" in said
    assert stale_drill([], "syd", 30 * DAY, NOW) is None
