"""Typed views of the Machines API's JSON, built leniently.

Every model is a frozen, slotted dataclass built with ``from_api(dict)``. Fields the model
does not name are kept in ``raw`` (the whole object as Fly sent it), so an unknown or new
field is never fatal and never lost when a config is sent back in an update.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.fly.checks import all_checks

__all__ = [
    "App",
    "CheckStatus",
    "ExecResult",
    "ExtendResult",
    "Guest",
    "Lease",
    "Machine",
    "MachineConfig",
    "MachineEvent",
    "Mount",
    "Region",
    "Snapshot",
    "Volume",
    "WaitResult",
]

JSON = dict[str, Any]


def _str(v: Any, default: str = "") -> str:
    return v if isinstance(v, str) else default


def _opt_str(v: Any) -> str | None:
    return v if isinstance(v, str) and v != "" else None


def _int(v: Any, default: int = 0) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v)
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            return default
    return default


def _opt_int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _map(v: Any) -> dict[str, Any]:
    return dict(v) if isinstance(v, Mapping) else {}


@dataclass(frozen=True, slots=True)
class Guest:
    """A machine's size.

    Attributes:
        cpu_kind: ``shared`` or ``performance``.
        cpus: number of CPUs.
        memory_mb: memory in MB.
        raw: the object as Fly sent it (``gpu_kind``, ``kernel_args``...).
    """

    cpu_kind: str = "shared"
    cpus: int = 1
    memory_mb: int = 256
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any] | None) -> Guest:
        d = _map(data)
        return cls(
            cpu_kind=_str(d.get("cpu_kind"), "shared"),
            cpus=_int(d.get("cpus"), 1),
            memory_mb=_int(d.get("memory_mb"), 256),
            raw=d,
        )

    def to_api(self) -> JSON:
        out = dict(self.raw)
        out.update(cpu_kind=self.cpu_kind, cpus=self.cpus, memory_mb=self.memory_mb)
        return out


@dataclass(frozen=True, slots=True)
class Mount:
    """A volume mounted into a machine.

    Attributes:
        volume: the volume id.
        path: where it is mounted (``/app/.data``).
        name: the volume name.
        raw: the object as Fly sent it.
    """

    volume: str
    path: str
    name: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Mount:
        d = _map(data)
        return cls(
            volume=_str(d.get("volume")), path=_str(d.get("path")), name=_str(d.get("name")), raw=d
        )

    def to_api(self) -> JSON:
        out = dict(self.raw)
        out.update(volume=self.volume, path=self.path)
        if self.name:
            out["name"] = self.name
        return out


@dataclass(frozen=True, slots=True)
class MachineConfig:
    """The parts of ``fly.MachineConfig`` the orchestrator reads; the rest stays in ``raw``.

    Update sends the FULL config, so ``to_api()`` starts from ``raw`` and lays the named
    fields over it.

    Attributes:
        image: the image reference (the release is its tag).
        guest: CPU kind, CPUs and memory.
        env: environment variables.
        mounts: volumes mounted into the machine.
        metadata: string labels (release id, launch id, role).
        checks: health checks by name, as Fly's ``checks`` map.
        services: Fly's ``services`` list, untouched.
        restart: Fly's ``restart`` object, untouched.
        raw: the whole config as Fly sent it.
    """

    image: str = ""
    guest: Guest = field(default_factory=Guest)
    env: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    checks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    services: tuple[Mapping[str, Any], ...] = ()
    restart: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any] | None) -> MachineConfig:
        d = _map(data)
        mounts = d.get("mounts") if isinstance(d.get("mounts"), list) else []
        services = d.get("services") if isinstance(d.get("services"), list) else []
        return cls(
            image=_str(d.get("image")),
            guest=Guest.from_api(d.get("guest")),
            env={str(k): str(v) for k, v in _map(d.get("env")).items()},
            mounts=tuple(Mount.from_api(m) for m in mounts or [] if isinstance(m, Mapping)),
            metadata={str(k): str(v) for k, v in _map(d.get("metadata")).items()},
            checks={str(k): _map(v) for k, v in _map(d.get("checks")).items()},
            services=tuple(_map(s) for s in services or [] if isinstance(s, Mapping)),
            restart=_map(d.get("restart")),
            raw=d,
        )

    @property
    def all_checks(self) -> dict[str, Mapping[str, Any]]:
        """Return top-level and service checks by the names Fly reports their results under."""
        return all_checks({"checks": self.checks, "services": list(self.services)})

    def to_api(self) -> JSON:
        out = dict(self.raw)
        out["image"] = self.image
        out["guest"] = self.guest.to_api()
        out["env"] = dict(self.env)
        out["mounts"] = [m.to_api() for m in self.mounts]
        out["metadata"] = dict(self.metadata)
        if self.checks:
            out["checks"] = {k: dict(v) for k, v in self.checks.items()}
        if self.services:
            out["services"] = [dict(s) for s in self.services]
        if self.restart:
            out["restart"] = dict(self.restart)
        return out


@dataclass(frozen=True, slots=True)
class CheckStatus:
    """One health check's latest result.

    Attributes:
        name: the check's name from the config.
        status: ``passing``, ``warning`` or ``critical``.
        output: what the check saw (a status line, an error).
        updated_at: ISO timestamp of the result.
    """

    name: str
    status: str
    output: str = ""
    updated_at: str | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> CheckStatus:
        d = _map(data)
        return cls(
            name=_str(d.get("name")),
            status=_str(d.get("status"), "critical"),
            output=_str(d.get("output")),
            updated_at=_opt_str(d.get("updated_at")),
        )

    @property
    def passing(self) -> bool:
        return self.status == "passing"


@dataclass(frozen=True, slots=True)
class MachineEvent:
    """An entry of a machine's event log (``start``, ``exit``, ``update``...)."""

    id: str
    type: str
    status: str
    source: str = ""
    timestamp: int = 0
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> MachineEvent:
        d = _map(data)
        return cls(
            id=_str(d.get("id")),
            type=_str(d.get("type")),
            status=_str(d.get("status")),
            source=_str(d.get("source")),
            timestamp=_int(d.get("timestamp")),
            raw=d,
        )


@dataclass(frozen=True, slots=True)
class Lease:
    """A machine lease.

    Fly's documentation and fly-go return ``{"status": "success", "data": {...}}`` while the
    OpenAPI ``Lease`` schema is flat; ``from_api`` accepts both.

    Attributes:
        nonce: the secret to send as ``fly-machine-lease-nonce``.
        expires_at: unix seconds.
        owner: who holds it.
        description: why it is held.
        version: the lease's version.
    """

    nonce: str
    expires_at: int = 0
    owner: str = ""
    description: str = ""
    version: str = ""

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Lease:
        d = _map(data)
        if isinstance(d.get("data"), Mapping):
            d = _map(d["data"])
        return cls(
            nonce=_str(d.get("nonce")),
            expires_at=_int(d.get("expires_at")),
            owner=_str(d.get("owner")),
            description=_str(d.get("description")),
            version=_str(d.get("version")),
        )


@dataclass(frozen=True, slots=True)
class Machine:
    """A Fly Machine.

    Attributes:
        id: the machine id.
        name: its name.
        state: ``created``, ``starting``, ``started``, ``stopping``, ``stopped``, ``destroyed``...
        region: its region code.
        version: the current version (``instance_id`` is Fly's deprecated alias).
        config: its configuration.
        checks: the latest health check results.
        events: the latest events.
        cordoned: removed from proxy routing.
        host_status: ``ok``, ``unknown`` or ``unreachable``.
        nonce: a lease nonce, returned by a create with ``lease_ttl``.
        private_ip: the 6PN address.
        created_at: ISO timestamp.
        updated_at: ISO timestamp.
        raw: the whole object as Fly sent it.
    """

    id: str
    state: str
    region: str
    name: str = ""
    version: str = ""
    config: MachineConfig = field(default_factory=MachineConfig)
    checks: tuple[CheckStatus, ...] = ()
    events: tuple[MachineEvent, ...] = ()
    cordoned: bool = False
    host_status: str = "ok"
    nonce: str | None = None
    private_ip: str = ""
    created_at: str | None = None
    updated_at: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Machine:
        d = _map(data)
        checks = d.get("checks") if isinstance(d.get("checks"), list) else []
        events = d.get("events") if isinstance(d.get("events"), list) else []
        return cls(
            id=_str(d.get("id")),
            state=_str(d.get("state")),
            region=_str(d.get("region")),
            name=_str(d.get("name")),
            version=_str(d.get("version")) or _str(d.get("instance_id")),
            config=MachineConfig.from_api(d.get("config")),
            checks=tuple(CheckStatus.from_api(c) for c in checks or [] if isinstance(c, Mapping)),
            events=tuple(MachineEvent.from_api(e) for e in events or [] if isinstance(e, Mapping)),
            cordoned=bool(d.get("cordoned", False)),
            host_status=_str(d.get("host_status"), "ok"),
            nonce=_opt_str(d.get("nonce")),
            private_ip=_str(d.get("private_ip")),
            created_at=_opt_str(d.get("created_at")),
            updated_at=_opt_str(d.get("updated_at")),
            raw=d,
        )

    @property
    def metadata(self) -> Mapping[str, str]:
        return self.config.metadata

    @property
    def checks_passing(self) -> bool:
        """At least one check result exists and every check passes (flyctl's rule)."""
        return bool(self.checks) and all(c.passing for c in self.checks)


@dataclass(frozen=True, slots=True)
class WaitResult:
    """The answer of ``/wait``: the machine reached ``state`` (at ``version``)."""

    ok: bool
    state: str = ""
    version: str = ""
    event_id: str = ""

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> WaitResult:
        d = _map(data)
        return cls(
            ok=bool(d.get("ok", True)),
            state=_str(d.get("state")),
            version=_str(d.get("version")),
            event_id=_str(d.get("event_id")),
        )


@dataclass(frozen=True, slots=True)
class ExecResult:
    """What ``exec`` returned: the command's exit code and output."""

    exit_code: int
    stdout: str = ""
    stderr: str = ""

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ExecResult:
        d = _map(data)
        return cls(
            exit_code=_int(d.get("exit_code")),
            stdout=_str(d.get("stdout")),
            stderr=_str(d.get("stderr")),
        )


@dataclass(frozen=True, slots=True)
class Volume:
    """A Fly volume.

    Attributes:
        id: the volume id.
        name: its name (the mount's ``source`` in fly.toml).
        state: ``creating``, ``created``, ``hydrating``, ``pending_destroy``...
        region: its region code.
        size_gb: its size.
        zone: its zone (host group).
        encrypted: encrypted at rest.
        attached_machine_id: the machine it is attached to, or ``None``.
        created_at: ISO timestamp.
        snapshot_retention: days snapshots are kept.
        auto_backup_enabled: daily snapshots on.
        bytes_used: bytes in use on its filesystem, or ``None`` when Fly did not say (a
            ``summary`` list, a volume being created).
        raw: the whole object as Fly sent it.
    """

    id: str
    name: str
    region: str
    state: str = "created"
    size_gb: int = 1
    zone: str = ""
    encrypted: bool = True
    attached_machine_id: str | None = None
    created_at: str | None = None
    snapshot_retention: int = 5
    auto_backup_enabled: bool = True
    bytes_used: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Volume:
        d = _map(data)
        return cls(
            id=_str(d.get("id")),
            name=_str(d.get("name")),
            region=_str(d.get("region")),
            state=_str(d.get("state"), "created"),
            size_gb=_int(d.get("size_gb"), 1),
            zone=_str(d.get("zone")),
            encrypted=bool(d.get("encrypted", True)),
            attached_machine_id=_opt_str(d.get("attached_machine_id")),
            created_at=_opt_str(d.get("created_at")),
            snapshot_retention=_int(d.get("snapshot_retention"), 5),
            auto_backup_enabled=bool(d.get("auto_backup_enabled", True)),
            bytes_used=_opt_int(d.get("bytes_used")),
            raw=d,
        )

    @property
    def destroyed(self) -> bool:
        return self.state in ("pending_destroy", "scheduling_destroy", "destroyed", "destroying")


@dataclass(frozen=True, slots=True)
class ExtendResult:
    """The answer of a volume extend."""

    volume: Volume
    needs_restart: bool


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A volume snapshot.

    Attributes:
        id: the snapshot id.
        created_at: ISO timestamp.
        digest: a digest of the data.
        size: bytes of data.
        volume_size: the volume's size in bytes when taken.
        status: ``created``, ``running``...
        retention_days: days it is kept.
    """

    id: str
    created_at: str | None = None
    digest: str = ""
    size: int = 0
    volume_size: int = 0
    status: str = ""
    retention_days: int = 5

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Snapshot:
        d = _map(data)
        return cls(
            id=_str(d.get("id")),
            created_at=_opt_str(d.get("created_at")),
            digest=_str(d.get("digest")),
            size=_int(d.get("size")),
            volume_size=_int(d.get("volume_size")),
            status=_str(d.get("status")),
            retention_days=_int(d.get("retention_days"), 5),
        )


@dataclass(frozen=True, slots=True)
class App:
    """A Fly app."""

    id: str
    name: str
    status: str = ""
    organization: str = ""
    machine_count: int = 0
    volume_count: int = 0
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> App:
        d = _map(data)
        org = d.get("organization")
        return cls(
            id=_str(d.get("id")),
            name=_str(d.get("name")),
            status=_str(d.get("status")),
            organization=_str(_map(org).get("slug")) if isinstance(org, Mapping) else "",
            machine_count=_int(d.get("machine_count")),
            volume_count=_int(d.get("volume_count")),
            raw=d,
        )


@dataclass(frozen=True, slots=True)
class Region:
    """A Fly region from ``/platform/regions``."""

    code: str
    name: str = ""
    gateway_available: bool = False
    requires_paid_plan: bool = False
    deprecated: bool = False
    latitude: float = 0.0
    longitude: float = 0.0

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Region:
        d = _map(data)
        lat = d.get("latitude", 0.0)
        lon = d.get("longitude", 0.0)
        return cls(
            code=_str(d.get("code")),
            name=_str(d.get("name")),
            gateway_available=bool(d.get("gateway_available", False)),
            requires_paid_plan=bool(d.get("requires_paid_plan", False)),
            deprecated=bool(d.get("deprecated", False)),
            latitude=float(lat) if isinstance(lat, int | float) else 0.0,
            longitude=float(lon) if isinstance(lon, int | float) else 0.0,
        )
