"""The desired state of a deployment: pure, frozen values loaded from the user's TOML files.

``orchestrator.fleetconfig.load`` builds a :class:`DeploySpec` from ``fly.toml``,
``regions/<code>.toml`` and ``regions/waves.toml``; the planner reads it and never touches the
files again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from orchestrator.fleetconfig.promql import PromQuery

__all__ = [
    "CheckSpec",
    "DeploySpec",
    "DrillObjectives",
    "GroupSpec",
    "MountSpec",
    "OnFailure",
    "PortSpec",
    "RegionSpec",
    "ReleaseCommand",
    "Role",
    "ServiceCheckSpec",
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
    """One top-level health check, from ``[checks.<name>]`` (informational on Fly: no routing).

    Attributes:
        name: the check's name.
        type: ``http`` or ``tcp``.
        port: the internal port it probes.
        path: the HTTP path (http only).
        method: the HTTP method (http only).
        interval_s: seconds between probes.
        timeout_s: seconds a probe may take.
        grace_period_s: seconds after start before failures count.
        headers: extra HTTP request headers, as (name, value) pairs sorted by name.
    """

    name: str
    type: Literal["http", "tcp"]
    port: int
    path: str = "/"
    method: str = "GET"
    interval_s: float = 15.0
    timeout_s: float = 2.0
    grace_period_s: float = 1.0
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceCheckSpec:
    """One check of a service (``[[services.http_checks]]``, ``[[services.tcp_checks]]``,
    ``[[http_service.checks]]``), kept as written: Fly fills in what is left out.

    Attributes:
        type: ``http`` or ``tcp``.
        interval_s: seconds between probes, or ``None`` (Fly's default, 15s).
        timeout_s: seconds a probe may take, or ``None`` (Fly's default, 2s).
        grace_period_s: seconds after start before failures count, or ``None``.
        method: the HTTP method (http only), or ``None`` (GET).
        path: the HTTP path (http only), or ``None`` (``/``).
        protocol: ``http`` or ``https`` (http only), or ``None``.
        tls_skip_verify: do not verify the certificate of an https check.
        tls_server_name: the name an https check expects.
        headers: extra request headers, as (name, value) pairs sorted by name.
    """

    type: Literal["http", "tcp"]
    interval_s: float | None = None
    timeout_s: float | None = None
    grace_period_s: float | None = None
    method: str | None = None
    path: str | None = None
    protocol: str | None = None
    tls_skip_verify: bool | None = None
    tls_server_name: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class PortSpec:
    """One public port (or port range) of a service, as Fly's ``MachinePort``.

    Attributes:
        port: the port, or ``None`` for a range.
        start_port: first port of a range.
        end_port: last port of a range.
        handlers: Fly proxy handlers (``http``, ``tls``, ``pg_tls``, ``proxy_proto``...).
        force_https: redirect plain HTTP to HTTPS.
        options: ``tls_options``, ``http_options`` and ``proxy_proto_options`` as canonical JSON
            text (passed to Fly unchanged), or ``""``.
    """

    port: int | None = None
    start_port: int | None = None
    end_port: int | None = None
    handlers: tuple[str, ...] = ()
    force_https: bool = False
    options: str = ""


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A service of fly.toml: ``[http_service]`` (``ports`` empty) or one ``[[services]]``.

    Attributes:
        internal_port: the port the app listens on.
        protocol: ``tcp`` or ``udp``.
        ports: public ports; empty means ``[http_service]``'s two (80 http, 443 tls+http).
        force_https: ``[http_service]``'s redirect of port 80 to HTTPS.
        auto_stop_machines: ``off``, ``stop`` or ``suspend``.
        auto_start_machines: the proxy starts stopped machines on demand.
        min_machines_running: machines the proxy keeps running in the primary region.
        concurrency: ``type``, ``soft_limit``, ``hard_limit`` as canonical JSON text, or ``""``.
        checks: the service's checks, in flyctl's order (tcp checks, then http checks).
        processes: the process groups it applies to (empty: the default group).
    """

    internal_port: int
    force_https: bool = True
    auto_stop_machines: str = "off"
    auto_start_machines: bool = True
    min_machines_running: int = 0
    protocol: str = "tcp"
    ports: tuple[PortSpec, ...] = ()
    concurrency: str = ""
    checks: tuple[ServiceCheckSpec, ...] = ()
    processes: tuple[str, ...] = ()


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
        snapshot_before: snapshot the volumes of the machines the wave changes before it
            changes them (restore points); ``None``: only in the primary region's wave.
        queries: PromQL checks the metrics gate runs against ``[prometheus]`` instead of
            reading the app's ``/metrics`` (empty: the app's ``/metrics``).
    """

    index: int
    regions: tuple[str, ...]
    bake_s: float = 0.0
    max_error_rate: float = 0.05
    max_p95_ms: float = 1000.0
    on_failure: OnFailure = "rollback_region"
    max_concurrency: int = 8
    pause: bool = False
    snapshot_before: bool | None = None
    queries: tuple[PromQuery, ...] = ()


@dataclass(frozen=True, slots=True)
class ReleaseCommand:
    """``[deploy] release_command`` of fly.toml: run once per release before machines change.

    Attributes:
        argv: the command, split into words as a shell would.
        timeout_s: ``release_command_timeout`` (flyctl's default: 5 minutes).
    """

    argv: tuple[str, ...]
    timeout_s: float = 300.0
    ignored_keys: tuple[str, ...] = field(default=(), compare=False)


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
        max_age_s: ``invoke deploy`` warns when the primary region's last passing drill is
            older than this (``max_age``, default 30 days).
    """

    rto_s: float = 120.0
    rpo_records: int = 0
    rpo_s: float = 5.0
    max_error_rate: float = 0.5
    max_duration_s: float = 600.0
    baseline_s: float = 5.0
    scale_survivors: bool = False
    max_age_s: float = 30 * 86400.0


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """A process group besides the fleet's default one: its own machines in every region.

    Attributes:
        name: the group name (``fly_process_group``).
        command: its command from ``[processes]`` (the machine's ``init.cmd``).
        mount: its ``[[mounts]]``, or ``None``.
        checks: its ``[checks.*]``, sorted by name.
        service: ``[http_service]`` when it names this group, or ``None``.
        services: the ``[[services]]`` naming this group, in file order.
        regions: region code → the group's count, size, volume size and budget there.
    """

    name: str
    command: tuple[str, ...] = ()
    mount: MountSpec | None = None
    checks: tuple[CheckSpec, ...] = ()
    service: ServiceSpec | None = None
    services: tuple[ServiceSpec, ...] = ()
    regions: Mapping[str, RegionSpec] = field(default_factory=dict)


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
        service: the HTTP service (``[http_service]``), or ``None``.
        services: ``[[services]]``, in file order.
        process_group: the process group the machines run (``fly_process_group``).
        command: the group's command from ``[processes]`` (the machine's ``init.cmd``), or
            empty for the image's own.
        kill_signal: the signal that stops a machine (``stop_config.signal``), or ``None``.
        kill_timeout_s: how long a stop waits before SIGKILL (``stop_config.timeout``).
        regions: region code → region spec, sorted by code.
        waves: the rollout order.
        drill: drill objectives.
        root: the directory holding fly.toml (as a string, for messages).
        digest: sha256 of the canonical spec, for the journal.
        ignored_keys: fly.toml keys flyctl knows that this tool accepts but does not act on
            (``fly.toml: kill_signal``), so the command line can say so.
        notes: one line per key not acted on, with the reason (the plan lists them).
        release: ``[deploy] release_command``, or ``None``.
        groups: the other process groups of ``[processes]``, by name; the fields above
            (``process_group``, ``command``, ``mount``, ``checks``, services, ``regions``) are
            the default group's.
    """

    app: str
    primary_region: str
    image: str
    env: Mapping[str, str] = field(default_factory=dict)
    mount: MountSpec | None = None
    checks: tuple[CheckSpec, ...] = ()
    service: ServiceSpec | None = None
    services: tuple[ServiceSpec, ...] = ()
    process_group: str = "app"
    command: tuple[str, ...] = ()
    kill_signal: str | None = None
    kill_timeout_s: float | None = None
    regions: Mapping[str, RegionSpec] = field(default_factory=dict)
    waves: tuple[WaveSpec, ...] = ()
    drill: DrillObjectives = field(default_factory=DrillObjectives)
    root: str = ""
    digest: str = ""
    ignored_keys: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    release: ReleaseCommand | None = None
    groups: tuple[GroupSpec, ...] = ()

    @property
    def group_names(self) -> tuple[str, ...]:
        """Return every process group: the default one first, then the others by name."""
        return (self.process_group, *(g.name for g in self.groups))

    def for_group(self, name: str) -> DeploySpec:
        """Return the spec as one group sees it: its command, mount, checks, services, regions.

        Raises:
            KeyError: the spec has no group ``name``.
        """
        if name == self.process_group:
            return self if not self.groups else replace(self, groups=())
        for group in self.groups:
            if group.name == name:
                return replace(
                    self,
                    process_group=group.name,
                    command=group.command,
                    mount=group.mount,
                    checks=group.checks,
                    service=group.service,
                    services=group.services,
                    regions=group.regions,
                    groups=(),
                )
        raise KeyError(name)

    def wave_of(self, region: str) -> WaveSpec:
        """Return the wave that deploys ``region``."""
        for wave in self.waves:
            if region in wave.regions:
                return wave
        raise KeyError(region)
