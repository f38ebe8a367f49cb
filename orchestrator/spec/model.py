"""The desired state of a deployment: pure, frozen values loaded from the user's TOML files.

``orchestrator.spec.load`` builds a :class:`DeploySpec` from ``fly.toml``, ``regions/<code>.toml``
and ``regions/waves.toml``; the planner reads it and never touches the files again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "CheckSpec",
    "DeploySpec",
    "DrillObjectives",
    "MountSpec",
    "OnFailure",
    "RegionSpec",
    "Role",
    "ServiceSpec",
    "VMSize",
    "WaveSpec",
]

Role = Literal["primary", "replica"]
OnFailure = Literal["rollback_region", "rollback_wave", "rollback_all", "halt"]


@dataclass(frozen=True, slots=True)
class VMSize:
    """A machine size that satisfies Fly's rules.

    Attributes:
        cpu_kind: ``shared`` or ``performance``.
        cpus: CPU count, allowed for the kind.
        memory_mb: memory, within the kind's range per CPU and its granularity.
        preset: the preset name (``shared-cpu-1x``...) when the size is exactly a preset's
            default, else ``None``.
    """

    cpu_kind: str
    cpus: int
    memory_mb: int
    preset: str | None = None

    def guest(self) -> dict[str, str | int]:
        """Return the Machines API ``guest`` object for this size."""
        return {"cpu_kind": self.cpu_kind, "cpus": self.cpus, "memory_mb": self.memory_mb}


@dataclass(frozen=True, slots=True)
class MountSpec:
    """``[[mounts]]`` of fly.toml: a volume named ``source`` mounted at ``destination``."""

    source: str
    destination: str
    initial_size_gb: int = 1


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """One health check, from ``[checks.<name>]`` or ``[[http_service.checks]]``.

    Attributes:
        name: the check's name.
        type: ``http`` or ``tcp``.
        port: the internal port it probes.
        path: the HTTP path (http only).
        method: the HTTP method (http only).
        interval_s: seconds between probes.
        timeout_s: seconds a probe may take.
        grace_period_s: seconds after start before failures count.
    """

    name: str
    type: Literal["http", "tcp"]
    port: int
    path: str = "/"
    method: str = "GET"
    interval_s: float = 15.0
    timeout_s: float = 2.0
    grace_period_s: float = 1.0


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """``[http_service]`` of fly.toml."""

    internal_port: int
    force_https: bool = True
    auto_stop_machines: str = "off"
    auto_start_machines: bool = True
    min_machines_running: int = 0


@dataclass(frozen=True, slots=True)
class RegionSpec:
    """One region of the fleet, from ``regions/<code>.toml``.

    Attributes:
        code: the Fly region code.
        count: machines wanted (0 allowed: the region is emptied, volumes kept).
        vm: their size.
        volume_size_gb: size of each machine's volume.
        role: ``primary`` for the primary region, else ``replica``.
        max_unavailable: machines of the region that may be down at once during a rollout
            (an absolute count, already resolved from a fraction).
        source: the file it came from, for error messages.
    """

    code: str
    count: int
    vm: VMSize
    volume_size_gb: int
    role: Role
    max_unavailable: int = 1
    source: str = ""


@dataclass(frozen=True, slots=True)
class WaveSpec:
    """One wave of a global rollout, from ``regions/waves.toml``.

    Attributes:
        index: 1-based position.
        regions: region codes deployed in parallel in this wave.
        bake_s: seconds the metrics gate watches the region after its health gate.
        max_error_rate: highest allowed share of 5xx responses (0..1) during the bake.
        max_p95_ms: highest allowed p95 latency in ms during the bake.
        on_failure: what happens when a gate of this wave fails.
        max_concurrency: API operations in flight at once for this wave.
        pause: once this wave's gates pass, wait for ``invoke promote`` before the next wave.
    """

    index: int
    regions: tuple[str, ...]
    bake_s: float = 0.0
    max_error_rate: float = 0.05
    max_p95_ms: float = 1000.0
    on_failure: OnFailure = "rollback_region"
    max_concurrency: int = 8
    pause: bool = False


@dataclass(frozen=True, slots=True)
class DrillObjectives:
    """``[drill]`` of ``regions/waves.toml``: what a disaster-recovery drill must achieve.

    Attributes:
        rto_s: recovery time objective, seconds.
        rpo_records: records the new primary may lack.
        rpo_s: how old the newest lost record may be, seconds.
        max_error_rate: highest share of failed survivor requests through the proxy.
        max_duration_s: the whole drill's time limit, seconds.
        baseline_s: how long traffic is measured before the fault (``baseline``).
        scale_survivors: add the lost region's machine count to the surviving replica regions
            while it is down (``scale_survivors``).
    """

    rto_s: float = 120.0
    rpo_records: int = 0
    rpo_s: float = 5.0
    max_error_rate: float = 0.5
    max_duration_s: float = 600.0
    baseline_s: float = 5.0
    scale_survivors: bool = False


@dataclass(frozen=True, slots=True)
class DeploySpec:
    """Everything the planner needs to know about the desired fleet.

    Attributes:
        app: the app name (``FLY_APP_NAME`` overrides fly.toml's ``app``).
        primary_region: the region that accepts writes.
        image: the image to run (``[build] image`` or ``--image``).
        env: ``[env]`` of fly.toml (``PRIMARY_REGION`` is added by the planner).
        mount: the volume mount, or ``None`` for a stateless app.
        checks: health checks, sorted by name.
        service: the HTTP service, or ``None``.
        regions: region code → region spec, sorted by code.
        waves: the rollout order.
        drill: drill objectives.
        root: the directory holding fly.toml (as a string, for messages).
        digest: sha256 of the canonical spec, for the journal.
        ignored_keys: fly.toml keys flyctl knows that this tool accepts but does not act on
            (``fly.toml: kill_signal``), so the command line can say so.
    """

    app: str
    primary_region: str
    image: str
    env: Mapping[str, str] = field(default_factory=dict)
    mount: MountSpec | None = None
    checks: tuple[CheckSpec, ...] = ()
    service: ServiceSpec | None = None
    regions: Mapping[str, RegionSpec] = field(default_factory=dict)
    waves: tuple[WaveSpec, ...] = ()
    drill: DrillObjectives = field(default_factory=DrillObjectives)
    root: str = ""
    digest: str = ""
    ignored_keys: tuple[str, ...] = ()

    def wave_of(self, region: str) -> WaveSpec:
        """Return the wave that deploys ``region``."""
        for wave in self.waves:
            if region in wave.regions:
                return wave
        raise KeyError(region)
