"""Write a Plan as text: JSON (``invoke plan --format json``), Graphviz DOT, or Mermaid.

Every function is deterministic: the same plan gives the same text, byte for byte, because
steps come out in :meth:`Plan.steps` order and JSON keys are sorted.
"""

from __future__ import annotations

import json

from orchestrator.plan.model import GATE_KINDS, Plan
from orchestrator.plan.steps import Step

__all__ = ["step_label", "to_dot", "to_json_text", "to_mermaid"]


def to_json_text(plan: Plan) -> str:
    """Return the plan's JSON (DESIGN.md's shape), keys sorted, two-space indent, final newline."""
    return json.dumps(plan.to_json(), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def step_label(step: Step) -> str:
    """Return a short one-line label: the kind, the slot, and the machine or spearhead mark."""
    parts = [step.kind.value if step.slot is None else f"{step.kind.value} {step.slot}"]
    if step.machine:
        parts.append(f"({step.machine})")
    if step.params.get("spearhead"):
        parts.append("spearhead")
    return " ".join(parts)


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(plan: Plan) -> str:
    """Return the plan as a Graphviz digraph: a cluster per wave, a nested one per region.

    Mutating steps are bold, gates are hexagons, the spearhead has a double border.
    """
    steps = plan.steps()
    lines = [
        "digraph plan {",
        f"  label={_dot_quote(f'{plan.app} release {plan.release}')};",
        "  labelloc=t;",
        "  rankdir=TB;",
        '  node [shape=box, fontname="Helvetica", fontsize=10];',
    ]
    for w, regions in enumerate(plan.waves, start=1):
        lines.append(f"  subgraph cluster_wave{w} {{")
        lines.append(f"    label={_dot_quote(f'wave {w}')};")
        for region in regions:
            own = [s for s in steps if s.region == region and s.wave == w]
            if not own:
                continue
            lines.append(f"    subgraph {_dot_quote(f'cluster_wave{w}_{region}')} {{")
            lines.append(f"      label={_dot_quote(region)};")
            for s in own:
                attrs = [f"label={_dot_quote(step_label(s))}"]
                if s.mutating:
                    attrs.append("style=bold")
                if s.kind in GATE_KINDS:
                    attrs.append("shape=hexagon")
                if s.params.get("spearhead"):
                    attrs.append("peripheries=2")
                lines.append(f"      {_dot_quote(s.id)} [{', '.join(attrs)}];")
            lines.append("    }")
        lines.append("  }")
    for s in steps:
        for dep in plan.depends_on(s.id):
            lines.append(f"  {_dot_quote(dep)} -> {_dot_quote(s.id)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    # Mermaid labels cannot hold a double quote; a #quot; entity renders as one.
    return text.replace('"', "#quot;")


def to_mermaid(plan: Plan) -> str:
    """Return the plan as a Mermaid flowchart: a subgraph per wave and per region."""
    steps = plan.steps()
    node = {s.id: f"s{i}" for i, s in enumerate(steps)}
    lines = ["flowchart TD"]
    for w, regions in enumerate(plan.waves, start=1):
        lines.append(f'  subgraph wave{w}["wave {w}"]')
        for region in regions:
            own = [s for s in steps if s.region == region and s.wave == w]
            if not own:
                continue
            lines.append(f'    subgraph wave{w}_{region}["{_mermaid_text(region)}"]')
            for s in own:
                label = _mermaid_text(step_label(s))
                shape = f'{{{{"{label}"}}}}' if s.kind in GATE_KINDS else f'["{label}"]'
                cls = ":::mutating" if s.mutating else ""
                lines.append(f"      {node[s.id]}{shape}{cls}")
            lines.append("    end")
        lines.append("  end")
    for s in steps:
        for dep in plan.depends_on(s.id):
            lines.append(f"  {node[dep]} --> {node[s.id]}")
    lines.append("  classDef mutating font-weight:bold,stroke-width:2px")
    return "\n".join(lines) + "\n"
