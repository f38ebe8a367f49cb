"""The unit of work a plan is made of: one Step per volume, machine or gate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["MUTATING_KINDS", "Step", "StepKind", "step_id"]


class StepKind(StrEnum):
    """What a step does."""

    # First: it runs before any machine of the release changes.
    RELEASE_COMMAND = "release.command"
    # Before a wave: every replica region within the drill's RPO budget of the primary.
    GATE_DATA = "gate.data"
    VOLUME_ENSURE = "volume.ensure"
    # A restore point: a snapshot of a machine's volume before the wave changes the machine.
    VOLUME_SNAPSHOT = "volume.snapshot"
    VOLUME_REPLICATE = "volume.replicate"
    MACHINE_CREATE = "machine.create"
    MACHINE_UPDATE = "machine.update"
    MACHINE_DESTROY = "machine.destroy"
    GATE_HEALTH = "gate.health"
    GATE_METRICS = "gate.metrics"


MUTATING_KINDS = frozenset(
    {
        StepKind.RELEASE_COMMAND,
        StepKind.VOLUME_ENSURE,
        StepKind.MACHINE_CREATE,
        StepKind.MACHINE_UPDATE,
        StepKind.MACHINE_DESTROY,
    }
)


def step_id(region: str, kind: StepKind, slot: int | None = None) -> str:
    """Return the stable id of a step: ``syd:machine.update:2`` or ``syd:gate.health``."""
    return f"{region}:{kind.value}" if slot is None else f"{region}:{kind.value}:{slot}"


@dataclass(frozen=True, slots=True)
class Step:
    """One node of the plan's graph.

    Attributes:
        id: stable id (see :func:`step_id`), unique in a plan.
        kind: what it does.
        region: the region it acts on.
        wave: the 1-based wave it belongs to.
        slot: the machine slot (1..count) for per-machine steps, else ``None``.
        machine: the id of an existing machine it acts on (update, destroy), else ``None``.
        params: JSON-ready parameters for the executor (desired config, volume to reuse...).
        mutating: whether running it changes the fleet.
    """

    id: str
    kind: StepKind
    region: str
    wave: int
    slot: int | None = None
    machine: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def mutating(self) -> bool:
        return self.kind in MUTATING_KINDS
