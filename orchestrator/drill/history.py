"""Drill results kept beside the journal, so a deploy can say when the last drill passed.

Each finished drill (not a dry run) appends one JSON line to ``.orchestrator/drills.jsonl``:
the region taken down, the primary region then, the verdict and when it finished. `stale_drill`
reads them back for ``invoke deploy``: a warning when the primary region's last passing drill is
older than ``[drill] max_age``, or when its drills were recorded and none passed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from orchestrator.execute.journal import JOURNAL_DIR

__all__ = ["DRILLS_FILE", "DrillRecord", "read_drills", "record_drill", "stale_drill"]

DRILLS_FILE = "drills.jsonl"
_DAY = 86400.0


@dataclass(frozen=True, slots=True)
class DrillRecord:
    """One finished drill.

    Attributes:
        region: the region taken down.
        primary_region: the primary region before the drill.
        verdict: ``passed``, ``failed`` or ``aborted``.
        finished_at: when it ended (epoch seconds).
    """

    region: str
    primary_region: str
    verdict: str
    finished_at: float


def _path(root: Path) -> Path:
    return root / JOURNAL_DIR / DRILLS_FILE


def record_drill(root: Path, record: DrillRecord) -> None:
    """Append ``record`` (one line, flushed to disk: a drill is rare and worth keeping)."""
    path = _path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(asdict(record), sort_keys=True) + "\n")
        out.flush()
        os.fsync(out.fileno())


def read_drills(root: Path) -> list[DrillRecord]:
    """Return every recorded drill, oldest first; a damaged line is skipped."""
    path = _path(root)
    if not path.exists():
        return []
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            d = json.loads(line)
            found.append(
                DrillRecord(
                    region=str(d["region"]),
                    primary_region=str(d["primary_region"]),
                    verdict=str(d["verdict"]),
                    finished_at=float(d["finished_at"]),
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return found


def stale_drill(
    records: list[DrillRecord], primary: str, max_age_s: float, now: float
) -> str | None:
    """Say why the primary region's drills are out of date, or ``None`` when they are not.

    Only drills of the primary region count (the region taken down was the primary). A fleet
    never drilled gets ``None``: there is no clock to have run out.
    """
    mine = [r for r in records if r.region == primary]
    if not mine:
        return None
    passed = [r for r in mine if r.verdict == "passed"]
    limit = f"[drill] max_age {max_age_s / _DAY:g} days"
    if not passed:
        return (
            f"no drill of the primary region {primary} has passed ({len(mine)} recorded); "
            f"`invoke drill --region {primary}` proves a fail-over works"
        )
    age = now - max(r.finished_at for r in passed)
    if age <= max_age_s:
        return None
    return (
        f"the last passing drill of the primary region {primary} was {age / _DAY:.0f} days ago, "
        f"older than {limit}; `invoke drill --region {primary}` proves a fail-over still works"
    )
