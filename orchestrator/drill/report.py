"""The drill's report: what happened, what it measured, and whether the objectives were met.

`DrillReport.to_json` is DESIGN.md's ``invoke drill --json`` shape::

    {"region", "promoted", "verdict": "passed"|"failed"|"aborted", "rto_s", "rpo_records",
     "rpo_s", "phases": [{"name", "started_at", "finished_at"}], "objectives": {...}}

plus ``app``, ``backend``, ``reason``, ``probes``, ``canary``, ``rto``, ``rpo``, ``integrity``
and ``details``. `judge` decides the verdict from the measurements and the ``[drill]``
objectives; it is pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrator.drill.measure import RpoResult, RtoResult, TrafficStats
from orchestrator.drill.phases import PhaseSpan, iso_utc
from orchestrator.fleetconfig.model import DrillObjectives

__all__ = [
    "GUARD_MIN_SAMPLES",
    "DrillReport",
    "Integrity",
    "Objective",
    "Verdict",
    "guard_reason",
    "judge",
]

# The guard judges an error rate only over at least this many survivor requests.
GUARD_MIN_SAMPLES = 8

Verdict = Literal["passed", "failed", "aborted", "ready"]


@dataclass(frozen=True, slots=True)
class Objective:
    """One objective: its target, what was measured, and whether it was met.

    Attributes:
        name: ``rto_s``, ``rpo_records``, ``rpo_s``, ``max_error_rate``, ``max_duration_s``.
        target: the limit from ``[drill]``.
        measured: the measurement, or ``None`` when it could not be taken.
        met: ``measured <= target`` (a missing measurement is not met).
    """

    name: str
    target: float
    measured: float | None
    met: bool

    def to_json(self) -> dict[str, Any]:
        """Return the objective as JSON."""
        measured = None if self.measured is None else round(self.measured, 4)
        return {"target": self.target, "measured": measured, "met": self.met}


@dataclass(frozen=True, slots=True)
class Integrity:
    """The fleet after the drill: one primary, replicas holding the primary's data.

    Attributes:
        primaries: machine ids whose ``/status`` says ``primary``.
        primary_region: the region they are in (``None`` unless exactly one region).
        last_seq: the primary's ``last_seq``.
        digest: sha256 of the primary's records.
        mismatched: machine id → what differs from the primary (last_seq or digest).
        at_spec: whether every machine runs the spec's config and every region has its count.
        spec_problems: why the fleet is not at the spec, one line each.
        checked: whether the check ran at all.
    """

    primaries: tuple[str, ...] = ()
    primary_region: str | None = None
    last_seq: int | None = None
    digest: str | None = None
    mismatched: Mapping[str, str] = field(default_factory=dict)
    at_spec: bool = False
    spec_problems: tuple[str, ...] = ()
    checked: bool = False

    @property
    def ok(self) -> bool:
        """Tell whether there is exactly one primary and every replica matches it."""
        return self.checked and len(self.primaries) == 1 and not self.mismatched

    def problems(self) -> list[str]:
        """Return what is wrong, one line each."""
        if not self.checked:
            return ["the integrity check did not run"]
        out = []
        if len(self.primaries) != 1:
            names = ", ".join(self.primaries) or "none"
            out.append(f"expected exactly one primary, found {len(self.primaries)} ({names})")
        out += [f"{mid}: {why}" for mid, why in sorted(self.mismatched.items())]
        return out

    def to_json(self) -> dict[str, Any]:
        """Return the check as JSON."""
        return {
            "checked": self.checked,
            "ok": self.ok,
            "primaries": list(self.primaries),
            "primary_region": self.primary_region,
            "last_seq": self.last_seq,
            "digest": self.digest,
            "mismatched": dict(sorted(self.mismatched.items())),
            "at_spec": self.at_spec,
            "spec_problems": list(self.spec_problems),
        }


def judge(
    objectives: DrillObjectives,
    *,
    rto: RtoResult | None,
    rpo: RpoResult | None,
    error_rate: float | None,
    duration_s: float | None,
) -> dict[str, Objective]:
    """Compare the measurements with the ``[drill]`` objectives, one `Objective` each."""

    def check(name: str, target: float, measured: float | None) -> Objective:
        met = measured is not None and measured <= target + 1e-9
        return Objective(name, target, measured, met)

    return {
        "rto_s": check("rto_s", objectives.rto_s, rto.rto_s if rto else None),
        "rpo_records": check(
            "rpo_records", float(objectives.rpo_records), float(rpo.records) if rpo else None
        ),
        "rpo_s": check("rpo_s", objectives.rpo_s, rpo.seconds if rpo else None),
        "max_error_rate": check("max_error_rate", objectives.max_error_rate, error_rate),
        "max_duration_s": check("max_duration_s", objectives.max_duration_s, duration_s),
    }


def guard_reason(
    objectives: DrillObjectives, elapsed_s: float, window: TrafficStats | None
) -> str | None:
    """Say why the guard must abort the drill now, or ``None`` to go on.

    Args:
        objectives: the ``[drill]`` limits.
        elapsed_s: seconds since the drill started.
        window: the survivors' recent traffic (``None`` before the fault: no survivors yet).
    """
    if elapsed_s > objectives.max_duration_s:
        return f"the drill passed max_duration ({objectives.max_duration_s:g}s)"
    if (
        window is not None
        and window.requests >= GUARD_MIN_SAMPLES
        and window.error_rate > objectives.max_error_rate
    ):
        return (
            f"the survivors' error rate reached {window.error_rate:.2f} "
            f"({window.errors} of the last {window.requests} requests failed), above "
            f"max_error_rate {objectives.max_error_rate:g}"
        )
    return None


@dataclass(frozen=True, slots=True)
class DrillReport:
    """Everything a drill found.

    Attributes:
        app: the app.
        backend: ``local`` or ``fly``.
        region: the region taken down.
        primary_region: the primary region before the drill.
        promoted: the region promoted to primary (``None`` when the region was a replica).
        verdict: ``passed``, ``failed`` or ``aborted``.
        reason: why it failed or was aborted, one line.
        started_at: when the drill started (epoch seconds).
        finished_at: when it ended.
        t0: when the fault was injected, if it was.
        phases: the phases as they ran.
        objectives: each objective, measured.
        rto: the recovery-time breakdown.
        rpo: the recovery-point measurement (``None`` when nothing was failed over).
        baseline: traffic before the fault.
        during: survivor traffic from the fault until the end of verification.
        canary: the canary writer's counters.
        integrity: the final fleet check.
        dry_run: nothing was changed.
        details: everything else worth keeping (preflight, snapshots, volumes, notes).
    """

    app: str
    backend: str
    region: str
    primary_region: str
    promoted: str | None
    verdict: Verdict
    reason: str | None
    started_at: float
    finished_at: float
    t0: float | None = None
    phases: Sequence[PhaseSpan] = ()
    objectives: Mapping[str, Objective] = field(default_factory=dict)
    rto: RtoResult | None = None
    rpo: RpoResult | None = None
    baseline: TrafficStats | None = None
    during: TrafficStats | None = None
    canary: Mapping[str, Any] = field(default_factory=dict)
    integrity: Integrity = field(default_factory=Integrity)
    dry_run: bool = False
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """Return 0 when the objectives were met (or a dry run found the drill ready), else 1."""
        return 0 if self.verdict in ("passed", "ready") else 1

    @property
    def duration_s(self) -> float:
        """Return how long the drill took."""
        return self.finished_at - self.started_at

    def to_json(self) -> dict[str, Any]:
        """Return DESIGN.md's ``invoke drill --json`` object (plus more keys)."""
        rto_s = self.rto.rto_s if self.rto else None
        return {
            "app": self.app,
            "backend": self.backend,
            "region": self.region,
            "primary_region": self.primary_region,
            "promoted": self.promoted,
            "verdict": self.verdict,
            "reason": self.reason,
            "dry_run": self.dry_run,
            "started_at": iso_utc(self.started_at),
            "finished_at": iso_utc(self.finished_at),
            "duration_s": round(self.duration_s, 3),
            "t0": None if self.t0 is None else iso_utc(self.t0),
            "rto_s": None if rto_s is None else round(rto_s, 3),
            # null when the drill did not get as far as measuring it (dry run, abort).
            "rpo_records": self.rpo.records if self.rpo else None,
            "rpo_s": round(self.rpo.seconds, 3) if self.rpo else None,
            "phases": [s.to_json() for s in self.phases],
            "objectives": {k: o.to_json() for k, o in self.objectives.items()},
            "rto": self.rto.to_json() if self.rto else None,
            "rpo": self.rpo.to_json() if self.rpo else None,
            "probes": {
                "baseline": self.baseline.to_json() if self.baseline else None,
                "during": self.during.to_json() if self.during else None,
            },
            "canary": dict(self.canary),
            "integrity": self.integrity.to_json(),
            "details": dict(self.details),
        }
