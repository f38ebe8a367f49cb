"""The desired fleet: load, validate and edit ``fly.toml`` and ``regions/*.toml``.

``load_spec(root)`` returns a :class:`DeploySpec` or raises a one-line
:class:`~orchestrator.errors.ConfigError` naming the file and key; ``update_region_file`` is what
``invoke scale`` writes with; ``resolve_vm`` and ``validate_region`` hold Fly's rules.
"""

from __future__ import annotations

from orchestrator.fleetconfig.edit import FieldChange, RegionEdit, update_region_file
from orchestrator.fleetconfig.load import load_spec, spec_digest
from orchestrator.fleetconfig.model import (
    CheckSpec,
    DeploySpec,
    DrillObjectives,
    MountSpec,
    OnFailure,
    PortSpec,
    RegionSpec,
    Role,
    ServiceCheckSpec,
    ServiceSpec,
    VMSize,
    WaveSpec,
)
from orchestrator.fleetconfig.regions import REGIONS, Region, nearest_region, validate_region
from orchestrator.fleetconfig.sizes import (
    FILE_KEYS,
    FLAG_KEYS,
    PRESETS,
    SizeKeys,
    allowed_cpus,
    allowed_memory,
    parse_preset,
    resolve_vm,
)
from orchestrator.fleetconfig.values import parse_duration

__all__ = [
    "FILE_KEYS",
    "FLAG_KEYS",
    "PRESETS",
    "REGIONS",
    "CheckSpec",
    "DeploySpec",
    "DrillObjectives",
    "FieldChange",
    "MountSpec",
    "OnFailure",
    "PortSpec",
    "Region",
    "RegionEdit",
    "RegionSpec",
    "Role",
    "ServiceCheckSpec",
    "ServiceSpec",
    "SizeKeys",
    "VMSize",
    "WaveSpec",
    "allowed_cpus",
    "allowed_memory",
    "load_spec",
    "nearest_region",
    "parse_duration",
    "parse_preset",
    "resolve_vm",
    "spec_digest",
    "update_region_file",
    "validate_region",
]
