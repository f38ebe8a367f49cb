"""A drill's progress on disk, so an interrupted drill can be resumed or aborted.

The runner writes ``.orchestrator/drill.json`` when a phase starts and ends, when the fault is
injected and when a region is chosen for promotion; it removes the file when the drill has
put the fleet back. A drill stopped by Ctrl-C, SIGTERM or ``kill -9`` leaves the file behind:
``invoke drill --resume`` finishes the drill from it (restore, re-seed, fail back, integrity)
and ``invoke drill --abort`` returns the fleet to the pre-drill primary region. Both report
the acknowledged writes that did not survive, by record sequence.

Each write replaces the file whole (a temporary file renamed over it), so a reader sees the
previous state or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.drill.measure import Ack
from orchestrator.errors import ConfigError
from orchestrator.execute.journal import JOURNAL_DIR

__all__ = ["STATE_FILE", "DrillState"]

STATE_FILE = "drill.json"


@dataclass
class DrillState:
    """Where a drill had got to.

    Attributes:
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
        promoting: the region chosen for promotion (its machines may be part-way), or ``None``.
        stopped_machines: machines the Fly.io fault stopped (to start again).
        acks: every acknowledged canary write: ``[n, seq, region, machine_id, sent, acked]``.
        started_at: when the drill started (epoch seconds).
        t0: when the fault was injected, or ``None``.
        stopped: how the drill was stopped (``Ctrl-C after verify``...), or ``None``.
        stop_requested: what asked it to stop (``Ctrl-C``) while it ran on to a safe point.
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

    @staticmethod
    def path(root: Path) -> Path:
        """Return where the state of the fleet in ``root`` is kept."""
        return root / JOURNAL_DIR / STATE_FILE

    def save(self, root: Path) -> None:
        """Write the state (atomically)."""
        path = self.path(root)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
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
