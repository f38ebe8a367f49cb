"""Planning: the observed fleet, desired machine configs, and the pure deploy graph.

``observe`` (the only I/O here) → :class:`Fleet`; ``build_plan(spec, fleet)`` → :class:`Plan`;
``build_rollback_plan`` for rollbacks; ``serialize`` writes plans as JSON, DOT or Mermaid.
"""

from __future__ import annotations

from orchestrator.plan.config import config_digest, desired_config, machine_name, release_id
from orchestrator.plan.fleet import (
    Fleet,
    ObservedGuest,
    ObservedMachine,
    ObservedVolume,
    fleet_from_api,
    observe,
)
from orchestrator.plan.graph import build_plan, spec_waves
from orchestrator.plan.model import Plan
from orchestrator.plan.rollback import build_rollback_plan
from orchestrator.plan.serialize import to_dot, to_json_text, to_mermaid
from orchestrator.plan.steps import MUTATING_KINDS, Step, StepKind, step_id

__all__ = [
    "MUTATING_KINDS",
    "Fleet",
    "ObservedGuest",
    "ObservedMachine",
    "ObservedVolume",
    "Plan",
    "Step",
    "StepKind",
    "build_plan",
    "build_rollback_plan",
    "config_digest",
    "desired_config",
    "fleet_from_api",
    "machine_name",
    "observe",
    "release_id",
    "spec_waves",
    "step_id",
    "to_dot",
    "to_json_text",
    "to_mermaid",
]
