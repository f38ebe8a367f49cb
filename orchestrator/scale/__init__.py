"""Per-region scaling: desired beside observed, and changes rolled out like a deploy.

``show_scale`` reads ``regions/*.toml`` and the Machines API and returns a :class:`ScaleReport`
(``invoke scale``); ``parse_scale_flags`` checks the command line's shape; ``scale`` writes the
region files and rolls the change out through the deploy planner and executor
(``invoke scale --region R --count N ...``). docs/scaling.md is the operators' guide.
"""

from __future__ import annotations

from orchestrator.scale.apply import (
    VOLUME_EXTEND,
    ScaleDryRun,
    ScaleResult,
    VolumeExtend,
    check_scale,
    fleet_regions,
    plan_extends,
    preview_impact,
    run_scale,
    scale,
    show_scale,
)
from orchestrator.scale.report import (
    SIZE_KEYS,
    DesiredSize,
    ObservedSize,
    RegionScale,
    ScaleReport,
    SizeGroup,
    build_report,
)
from orchestrator.scale.request import CHANGE_FLAGS, ScaleRequest, parse_scale_flags

__all__ = [
    "CHANGE_FLAGS",
    "SIZE_KEYS",
    "VOLUME_EXTEND",
    "DesiredSize",
    "ObservedSize",
    "RegionScale",
    "ScaleDryRun",
    "ScaleReport",
    "ScaleRequest",
    "ScaleResult",
    "SizeGroup",
    "VolumeExtend",
    "build_report",
    "check_scale",
    "fleet_regions",
    "parse_scale_flags",
    "plan_extends",
    "preview_impact",
    "run_scale",
    "scale",
    "show_scale",
]
