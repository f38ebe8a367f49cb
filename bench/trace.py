"""Take a rollout apart per machine: where each update's time went, from the local Fly's logs.

Two sources, both the local Fly's own records, so the orchestrator being measured is not
instrumented at all:

- ``requests.log``: one JSON line per API request, written when the answer went out, with its
  duration (so its start is known too), operation and path;
- each machine's events (``update``/``replacing`` when the update was accepted, ``start``/
  ``started`` when the new process was spawned), as the machines list returns them.

For every machine changed in a window this gives the phases of its update:

- ``before_update_s``: first request about the machine → the update request sent (lease, reads);
- ``update_call_s``: the update request itself;
- ``replace_s``: update accepted → new process spawned (the profile's update delay, plus the
  local Fly stopping the old process and spawning the new one);
- ``to_healthy_s``: spawned → the answer of the last ``GET machine`` before the lease release,
  i.e. when the orchestrator saw the checks pass (grace period, first probe, polling delay);
- ``release_s``: the lease release request;
- ``total_s``: first request → last request about the machine;

and the number of requests per operation per machine.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["Request", "machine_phases", "read_requests"]

_MACHINE_PATH = re.compile(r"^/v1/apps/[^/]+/machines/([^/?]+)")


@dataclass(frozen=True, slots=True)
class Request:
    """One API request from ``requests.log`` (epoch seconds)."""

    start: float
    end: float
    operation: str
    machine: str | None
    status: int


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def read_requests(path: Path, since: float, until: float) -> list[Request]:
    """Return the requests answered between ``since`` and ``until`` (epoch seconds)."""
    out: list[Request] = []
    if not path.exists():
        return out
    with path.open() as f:
        for line in f:
            try:
                row = json.loads(line)
                end = _epoch(str(row["time"]))
            except (ValueError, KeyError):
                continue
            if not since <= end <= until:
                continue
            found = _MACHINE_PATH.match(str(row.get("path", "")))
            out.append(
                Request(
                    start=end - float(row.get("duration_ms", 0.0)) / 1000.0,
                    end=end,
                    operation=str(row.get("operation", "")),
                    machine=found.group(1) if found else None,
                    status=int(row.get("status", 0)),
                )
            )
    return out


@dataclass(slots=True)
class _Phases:
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float | None) -> None:
        if value is not None:
            self.values.setdefault(name, []).append(value)

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            name: {
                "mean": round(statistics.fmean(v), 3),
                "p50": round(statistics.median(v), 3),
                "max": round(max(v), 3),
            }
            for name, v in self.values.items()
        }


def _event_time(events: Sequence[Mapping[str, Any]], type_: str, status: str) -> float | None:
    """Return the newest event of that type and status, in epoch seconds."""
    times = [
        float(e["timestamp"]) / 1000.0
        for e in events
        if e.get("type") == type_ and e.get("status") == status and e.get("timestamp")
    ]
    return max(times) if times else None


def machine_phases(
    requests: Sequence[Request], events: Mapping[str, Sequence[Mapping[str, Any]]]
) -> dict[str, Any]:
    """Return per-phase statistics over every machine updated in ``requests`` (see module doc)."""
    by_machine: dict[str, list[Request]] = {}
    for r in requests:
        if r.machine is not None:
            by_machine.setdefault(r.machine, []).append(r)
    phases = _Phases()
    per_machine_ops: Counter[str] = Counter()
    updated = 0
    for mid, reqs in by_machine.items():
        reqs.sort(key=lambda r: r.start)
        update = next((r for r in reqs if r.operation == "Machines_update"), None)
        if update is None:
            continue
        updated += 1
        per_machine_ops.update(r.operation for r in reqs)
        release = next((r for r in reversed(reqs) if r.operation == "Machines_release_lease"), None)
        last_show = max(
            (
                r.end
                for r in reqs
                if r.operation == "Machines_show"
                and r.start > update.end
                and (release is None or r.end <= release.start)
            ),
            default=None,
        )
        spawned = _event_time(events.get(mid, ()), "start", "started")
        accepted = _event_time(events.get(mid, ()), "update", "replacing")
        phases.add("before_update_s", update.start - reqs[0].start)
        phases.add("update_call_s", update.end - update.start)
        if accepted is not None and spawned is not None and spawned >= accepted:
            phases.add("replace_s", spawned - accepted)
        if spawned is not None and last_show is not None and last_show >= spawned:
            phases.add("to_healthy_s", last_show - spawned)
        if release is not None:
            phases.add("release_s", release.end - release.start)
        phases.add("total_s", reqs[-1].end - reqs[0].start)
    n = max(1, updated)
    return {
        "machines": updated,
        "phases": phases.summary(),
        "calls_per_machine": {op: round(c / n, 2) for op, c in sorted(per_machine_ops.items())},
    }
