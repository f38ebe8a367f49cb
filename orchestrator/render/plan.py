"""Draw a Plan as a rich tree: waves → regions → steps (``invoke plan``, ``deploy --dry-run``)."""

from __future__ import annotations

from typing import assert_never

from rich.text import Text
from rich.tree import Tree

from orchestrator.plan.config import META_PROCESS_GROUP
from orchestrator.plan.eta import Estimate, duration_text
from orchestrator.plan.groups import SLOT_BLOCK, local_slot
from orchestrator.plan.model import Plan
from orchestrator.plan.steps import Step, StepKind

__all__ = ["describe_step", "duration_text", "plan_tree"]

_MUTATING = "●"
_READ_ONLY = "○"


def _slots(slots: object) -> str:
    ints = [s for s in slots if isinstance(s, int)] if isinstance(slots, list) else []
    if not ints:
        return "no machines"
    if len(ints) == 1:
        return f"slot {ints[0]}"
    if ints == list(range(ints[0], ints[-1] + 1)):
        return f"slots {ints[0]}-{ints[-1]}"
    return "slots " + ", ".join(str(s) for s in ints)


def _num(value: object) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def _group(step: Step) -> str:
    """Name the process group of a machine outside the default group's slots (else "")."""
    if step.slot is None or step.slot <= SLOT_BLOCK:
        return ""
    config = step.params.get("config")
    metadata = config.get("metadata") if isinstance(config, dict) else None
    group = metadata.get(META_PROCESS_GROUP) if isinstance(metadata, dict) else None
    return f" (process group {group} {local_slot(step.slot)})" if group else ""


def describe_step(step: Step) -> str:
    """Say in a few words what ``step`` will do (plain text, no markup)."""
    p = step.params
    kind = step.kind
    if kind is StepKind.RELEASE_COMMAND:
        command = " ".join(str(a) for a in p.get("command") or [])
        return (
            f"run `{command}` on a temporary machine in {step.region} (new image, env and "
            f"secrets, no volume; timeout {_num(p.get('timeout_s'))}s), before any machine"
        )
    if kind is StepKind.VOLUME_ENSURE:
        if p.get("reuse"):
            return f"reuse volume {p['reuse']}"
        if p.get("fork_from"):
            return f"fork {p['fork_from']} into a {p.get('size_gb')} GB volume {p.get('name')!r}"
        if p.get("fork_from_region"):
            return (
                f"fork a {p['fork_from_region']} volume into a {p.get('size_gb')} GB "
                f"volume {p.get('name')!r}"
            )
        return f"create a {p.get('size_gb')} GB volume {p.get('name')!r}"
    if kind is StepKind.GATE_DATA:
        return (
            f"replicas within {p.get('rpo_records')} records, {_num(p.get('rpo_s'))}s "
            f"of {p.get('primary_region')}"
        )
    if kind is StepKind.VOLUME_SNAPSHOT:
        return f"snapshot {p.get('volume')} (restore point)"
    if kind is StepKind.VOLUME_REPLICATE:
        return f"wait for the data to catch up with {p.get('primary_region')}"
    if kind is StepKind.MACHINE_CREATE:
        extra = f", replacing {p['replaces']}" if p.get("replaces") else ""
        return f"create {p.get('name')}{_group(step)} on {p.get('release')}{extra}"
    if kind is StepKind.MACHINE_UPDATE:
        why = {
            "config": "",
            "drift": " (drifted)",
            "state": " (not running)",
            "adopt": " (adopted from fly deploy)",
        }.get(str(p.get("reason")), f" ({p.get('reason')})")
        same = p.get("from_release") == p.get("release")
        parts = [] if same else [f"{p.get('from_release') or '?'} → {p.get('release')}"]
        if p.get("resize"):
            parts.append(f"resize {p['resize']}")
        changes = p.get("changes")
        if isinstance(changes, list):
            parts.extend(str(c) for c in changes)
        if not parts and p.get("reason") == "config":
            parts.append(f"config changed, release {p.get('release')} unchanged")
        elif not parts:
            parts.append(str(p.get("release")))
        return f"update {step.machine}{_group(step)}: {', '.join(parts)}{why}"
    if kind is StepKind.MACHINE_DESTROY:
        keep = (
            "keep its volume" if p.get("keep_volume", True) else f"destroy volume {p.get('volume')}"
        )
        return f"destroy {step.machine} ({p.get('name')}), {keep}"
    if kind is StepKind.GATE_HEALTH:
        return f"{_slots(p.get('slots'))} started, checks passing, /status answers"
    if kind is StepKind.GATE_METRICS:
        return (
            f"bake {_num(p.get('bake_s'))}s: error rate ≤ {_num(p.get('max_error_rate'))}, "
            f"p95 ≤ {_num(p.get('max_p95_ms'))} ms"
        )
    assert_never(kind)


def _step_line(step: Step) -> Text:
    line = Text()
    if step.mutating:
        line.append(f"{_MUTATING} ", style="bold yellow")
    else:
        line.append(f"{_READ_ONLY} ", style="dim")
    name = step.kind.value if step.slot is None else f"{step.kind.value} {step.slot}"
    line.append(name, style="bold" if step.mutating else "cyan")
    if step.params.get("spearhead"):
        line.append(" ★ spearhead", style="bold magenta")
    line.append(f"  {describe_step(step)}", style="default" if step.mutating else "dim")
    return line


def plan_tree(plan: Plan, eta: Estimate | None = None) -> Tree:
    """Return a rich Tree of ``plan``: waves, then regions, then steps in execution order.

    Mutating steps are marked ``●`` (read-only ones ``○``) and the spearhead ``★``; a region
    with nothing to change says so, and the planner's notes and a legend of the marks close
    the tree. With ``eta`` the title and each wave say how long they should take.
    """
    mutating = len(plan.mutating_steps)
    title = Text()
    title.append(f"{plan.app} ", style="bold")
    title.append("restore " if plan.purpose == "restore" else "release ")
    title.append(plan.release, style="bold green")
    title.append(
        f"  {mutating} mutating step{'s' if mutating != 1 else ''}"
        if mutating
        else "  nothing to change",
        style="yellow" if mutating else "green",
    )
    if eta is not None and mutating:
        title.append(f"  expected {duration_text(eta.seconds)}", style="bold")
        title.append(f" ({eta.source})", style="dim")
    tree = Tree(title)
    steps = plan.steps()
    expected = {w.wave: w.seconds for w in eta.waves} if eta is not None else {}
    for step in steps:
        if step.kind is StepKind.RELEASE_COMMAND:
            tree.add(_step_line(step))
    steps = tuple(s for s in steps if s.kind is not StepKind.RELEASE_COMMAND)
    for index, regions in enumerate(plan.waves, start=1):
        spec = plan.wave_specs[index - 1] if index <= len(plan.wave_specs) else None
        label = Text(f"wave {index}", style="bold")
        if index in expected:
            label.append(f"  ~{duration_text(expected[index])}")
        if spec is not None:
            label.append(f"  on failure: {spec.on_failure}", style="dim")
        wave_node = tree.add(label)
        for region in regions:
            own = [s for s in steps if s.region == region and s.wave == index]
            if not own:
                wave_node.add(Text(f"{region}  nothing to change", style="dim"))
                continue
            region_node = wave_node.add(Text(region, style="bold blue"))
            for step in own:
                region_node.add(_step_line(step))
    if plan.notes:
        notes = tree.add(Text("notes", style="bold"))
        for note in plan.notes:
            notes.add(Text(note, style="dim"))
    if mutating:
        tree.add(
            Text(
                f"{_MUTATING} changes the fleet  {_READ_ONLY} only checks  "
                "★ the spearhead: first update, alone",
                style="dim",
            )
        )
    return tree
