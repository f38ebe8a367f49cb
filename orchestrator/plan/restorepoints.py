"""Restore points in a deploy plan: snapshot a wave's volumes before the wave changes them.

Fly's own rollback guide warns that a rollback puts the image back, not the data. A wave with
``snapshot_before`` (by default the wave that holds the primary region) therefore gets one
``volume.snapshot`` step per machine it updates or destroys that has a volume; every first step
of the region waits for them, and they wait for what the region's first steps waited for (the
previous wave's gates), so a snapshot is taken right before its region changes and after the
earlier waves passed. `invoke rollback --restore-data` puts the machines back on volumes
restored from them (`orchestrator.plan.restoredata`).

Pure: the plan's graph, the fleet and the waves in, steps added to the graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.fleetconfig.model import WaveSpec
from orchestrator.plan.fleet import Fleet
from orchestrator.plan.steps import Step, StepKind, step_id

__all__ = ["add_snapshots", "snapshots_wanted"]

# The steps that change a machine's volume's data: the app on a new release writes to it (an
# update) or it stops being used (a destroy).
_CHANGING = frozenset({StepKind.MACHINE_UPDATE, StepKind.MACHINE_DESTROY})


def snapshots_wanted(wave: WaveSpec, primary_region: str) -> bool:
    """Tell whether ``wave`` takes restore points: as set, else when it holds the primary."""
    if wave.snapshot_before is not None:
        return wave.snapshot_before
    return primary_region in wave.regions


def add_snapshots(
    graph: Any,
    fleet: Fleet,
    waves: Sequence[WaveSpec],
    primary_region: str,
    release: str,
) -> list[str]:
    """Add ``volume.snapshot`` steps before each snapshotting region's first steps.

    Returns the ids of the steps added, in region and slot order.
    """
    added: list[str] = []
    for wave in waves:
        if not snapshots_wanted(wave, primary_region):
            continue
        for region in wave.regions:
            added.extend(_region_snapshots(graph, fleet, wave.index, region, release))
    return added


def _region_snapshots(graph: Any, fleet: Fleet, wave: int, region: str, release: str) -> list[str]:
    steps = [graph.nodes[n]["step"] for n in graph.nodes]
    own = {s.id for s in steps if s.region == region}
    changing = sorted(
        (s for s in steps if s.region == region and s.kind in _CHANGING and s.machine),
        key=lambda s: (s.slot or 0, s.id),
    )
    snaps: list[Step] = []
    for s in changing:
        machine = fleet.machine(str(s.machine))
        if machine is None or not machine.volume_id:
            continue
        snaps.append(
            Step(
                id=step_id(region, StepKind.VOLUME_SNAPSHOT, s.slot),
                kind=StepKind.VOLUME_SNAPSHOT,
                region=region,
                wave=wave,
                slot=s.slot,
                machine=machine.id,
                params={
                    "volume": machine.volume_id,
                    "name": machine.name,
                    "release_before": machine.release,
                    "release": release,
                },
            )
        )
    if not snaps:
        return []
    roots = [sid for sid in sorted(own) if not any(p in own for p in graph.predecessors(sid))]
    outside = sorted({p for r in roots for p in graph.predecessors(r)})
    for snap in snaps:
        graph.add_node(snap.id, step=snap)
        for dep in outside:
            graph.add_edge(dep, snap.id)
        for root in roots:
            graph.add_edge(snap.id, root)
    return [s.id for s in snaps]
