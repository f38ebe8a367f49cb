"""Per-region scaling: desired beside observed, the request's shape, its cost and usage.

The command itself (``show_scale``, ``scale``) is `orchestrator.commands.scale`;
docs/scaling.md is the operators' guide.
"""

from __future__ import annotations

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
    "DesiredSize",
    "ObservedSize",
    "RegionScale",
    "ScaleReport",
    "ScaleRequest",
    "SizeGroup",
    "build_report",
    "parse_scale_flags",
]
