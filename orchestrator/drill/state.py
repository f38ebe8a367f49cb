"""One drill's state: what was asked, how far it got, and what it measured.

`DrillState` is the one record of a drill. The runner and its fail-over and fail-back steps
write into it; the report is read from it. Part of it is kept in ``.orchestrator/drill.json``
(written when a phase starts and ends, when the fault is injected and when a region is chosen
for promotion; removed once the fleet is put back), so ``invoke drill --resume`` and
``--abort`` can take up a drill that Ctrl-C, SIGTERM or ``kill -9`` stopped (docs/drills.md).
The rest is this run's timeline and measurements, measured afresh by a resumed drill.

Each write replaces the file whole (a temporary file renamed over it), so a reader sees the
previous state or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from orchestrator.drill.measure import Ack, RpoResult, TrafficStats
from orchestrator.drill.preflight import Preflight
from orchestrator.errors import ConfigError
from orchestrator.execute.journal import JOURNAL_DIR

__all__ = ["STATE_FILE", "DrillRequest", "DrillState"]

STATE_FILE = "drill.json"

# Marks a field this run measures: not saved, so a resumed drill starts it afresh.
_RUN_ONLY = {"saved": False}


@dataclass(frozen=True, slots=True)
class DrillRequest:
    """What the operator asked for.

    Attributes:
        region: the region to take down.
        promote: the region to promote when ``region`` holds the primary (default: nearest).
        dry_run: run the preflight, say what would happen, change nothing.
        failback: move the primary back to ``region`` at the end.
        destroy_old_volumes: destroy the old primary's volumes once replaced (default: keep).
        hook: a shell command run after each phase (see ``orchestrator.drill.hooks``).
    """

    region: str
    promote: str | None = None
    dry_run: bool = False
    failback: bool = True
    destroy_old_volumes: bool = False
    hook: str | None = None
    resume: bool = False
    abort: bool = False


@dataclass
class DrillState:
    """Hold a drill's state: where it got to (saved) and what this run measured (not saved).

    Saved attributes:
        drill_id: the drill's id (its canary writes carry it).
        app: the app.
        region: the region taken down.
        primary: the primary region before the drill.
        fault_kind: ``local-outage`` or ``stop-and-cordon``.
        failback: whether the primary moves back at the end.
        destroy_old_volumes: ``--destroy-old-volumes``.
        phase: the last phase that started.
        finished_phases: the phases that ended, in order.
        fault_injected: whether the region was taken down.
        fault_cleared: whether it was brought back since (fenced or not).
        promoting: the region chosen for promotion (its machines may be part-way; once the
            drill goes on, the promoted region), or ``None``.
        stopped_machines: machines the Fly.io fault stopped (to start again).
        acks: every acknowledged canary write: ``[n, seq, region, machine_id, sent, acked]``.
        started_at: when the drill started (epoch seconds).
        t0: when the fault was injected, or ``None``.
        stopped: how the drill was stopped (``Ctrl-C after verify``...), or ``None``.
        stop_requested: what asked it to stop (``Ctrl-C``) while it ran on to a safe point.

    This run's attributes (times are epoch seconds):
        run_started_at: when this run started (a resumed drill's own start).
        prior_phases: the phases a stopped run finished (a resumed drill skips them).
        hard_stop: why the drill is being cancelled at once (a second Ctrl-C, SIGTERM).
        fault_applied_at: when the fault call returned: the region is down for new requests.
        detected_at, promoted_at, first_write_at, steady_at, verified_at: the RTO's milestones.
        preflight: what the preflight found.
        baseline: the probes' figures before the fault.
        during: the survivors' figures from T0 to verification.
        rpo: the acknowledged writes the new primary lacks.
        scaled: machines added per surviving region.
        served_by: who answered the lost region's requests while it was down.
        new_primary_wrote: a resumed drill found the promoted region had taken over.
        abort_reason: why the guard aborted the fail-over, or ``None``.
        failure: the first thing that went wrong, one line, or ``None``.
        notes: the warnings and errors said during the drill, for the report.
        extra_details: more facts for the report's ``details`` (old volumes, lost writes...).
    """

    drill_id: str
    app: str
    region: str
    primary: str
    fault_kind: str
    failback: bool = True
    destroy_old_volumes: bool = False
    phase: str | None = None
    finished_phases: list[str] = field(default_factory=list)
    fault_injected: bool = False
    fault_cleared: bool = False
    promoting: str | None = None
    stopped_machines: list[str] = field(default_factory=list)
    acks: list[list[Any]] = field(default_factory=list)
    started_at: float = 0.0
    t0: float | None = None
    stopped: str | None = None
    stop_requested: str | None = None
    run_started_at: float = field(default=0.0, metadata=_RUN_ONLY)
    prior_phases: list[str] = field(default_factory=list, metadata=_RUN_ONLY)
    hard_stop: str | None = field(default=None, metadata=_RUN_ONLY)
    fault_applied_at: float | None = field(default=None, metadata=_RUN_ONLY)
    detected_at: float | None = field(default=None, metadata=_RUN_ONLY)
    promoted_at: float | None = field(default=None, metadata=_RUN_ONLY)
    first_write_at: float | None = field(default=None, metadata=_RUN_ONLY)
    steady_at: float | None = field(default=None, metadata=_RUN_ONLY)
    verified_at: float | None = field(default=None, metadata=_RUN_ONLY)
    preflight: Preflight | None = field(default=None, metadata=_RUN_ONLY)
    baseline: TrafficStats | None = field(default=None, metadata=_RUN_ONLY)
    during: TrafficStats | None = field(default=None, metadata=_RUN_ONLY)
    rpo: RpoResult | None = field(default=None, metadata=_RUN_ONLY)
    scaled: dict[str, int] = field(default_factory=dict, metadata=_RUN_ONLY)
    served_by: dict[str, int] = field(default_factory=dict, metadata=_RUN_ONLY)
    new_primary_wrote: bool = field(default=False, metadata=_RUN_ONLY)
    abort_reason: str | None = field(default=None, metadata=_RUN_ONLY)
    failure: str | None = field(default=None, metadata=_RUN_ONLY)
    notes: list[str] = field(default_factory=list, metadata=_RUN_ONLY)
    extra_details: dict[str, object] = field(default_factory=dict, metadata=_RUN_ONLY)

    @staticmethod
    def path(root: Path) -> Path:
        """Return where the state of the fleet in ``root`` is kept."""
        return root / JOURNAL_DIR / STATE_FILE

    def save(self, root: Path) -> None:
        """Write the saved part of the state (atomically)."""
        path = self.path(root)
        path.parent.mkdir(parents=True, exist_ok=True)
        saved = {
            f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("saved", True)
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, root: Path) -> DrillState | None:
        """Return the saved state, or ``None`` when no drill was left unfinished.

        Raises:
            ConfigError: the file exists but cannot be read as a drill's state.
        """
        path = cls.path(root)
        try:
            data = json.loads(path.read_text())
            saved = {f.name for f in fields(cls) if f.metadata.get("saved", True)}
            if isinstance(data, dict) and not set(data) <= saved:
                # This run's measurements are never saved: a file holding them is not ours.
                raise TypeError(f"unexpected key(s) {', '.join(sorted(set(data) - saved))}")
            return cls(**data)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"not a drill's state ({exc}); move it away", where=str(path)
            ) from None

    @classmethod
    def clear(cls, root: Path) -> None:
        """Forget the drill: it has finished or was resolved."""
        cls.path(root).unlink(missing_ok=True)

    def set_acks(self, acks: list[Ack]) -> None:
        """Record the canary's acknowledged writes."""
        self.acks = [[a.n, a.seq, a.region, a.machine_id, a.sent_at, a.acked_at] for a in acks]

    def ack_list(self) -> list[Ack]:
        """Return the recorded acknowledged writes."""
        return [
            Ack(
                n=int(n),
                seq=int(seq),
                region=str(region),
                machine_id=mid,
                sent_at=sent,
                acked_at=acked,
            )
            for n, seq, region, mid, sent, acked in self.acks
        ]

    def describe(self) -> str:
        """Return one line: which drill, where it stopped."""
        where = f"after {self.phase}" if self.phase else "before it began"
        how = f" ({self.stopped})" if self.stopped else ""
        promoted = f", {self.promoting} promoted or being promoted" if self.promoting else ""
        return f"drill {self.drill_id} of {self.region} stopped {where}{how}{promoted}"
