"""The observed fleet as pure values: what machines and volumes exist right now.

:func:`observe` is the only function here that does I/O (two list calls through the client);
:func:`fleet_from_api` turns what the Machines API returned into a :class:`Fleet` the planner
can read without ever touching the network again.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from orchestrator.errors import FlyNotFound
from orchestrator.fly.models import Machine, Volume
from orchestrator.plan.config import META_CONFIG_DIGEST, META_RELEASE, META_SLOT

__all__ = [
    "GONE_MACHINE_STATES",
    "GONE_VOLUME_STATES",
    "Fleet",
    "FleetClient",
    "ObservedGuest",
    "ObservedMachine",
    "ObservedVolume",
    "fleet_from_api",
    "observe",
    "observe_fleet",
]

# Machines in these states are on their way out (or never came up: launch_failed ends in
# destroyed), so a slot they held counts as empty.
GONE_MACHINE_STATES = frozenset({"destroyed", "destroying", "launch_failed"})
# Fly soft-deletes volumes (pending_destroy for 24 h); they must never be reused or forked.
GONE_VOLUME_STATES = frozenset({"pending_destroy", "scheduling_destroy", "destroying", "destroyed"})


@dataclass(frozen=True, slots=True)
class ObservedGuest:
    """A machine's size as observed.

    Attributes:
        cpu_kind: ``shared`` or ``performance``.
        cpus: CPU count.
        memory_mb: memory in MB.
    """

    cpu_kind: str
    cpus: int
    memory_mb: int


@dataclass(frozen=True, slots=True)
class ObservedMachine:
    """One machine as the planner sees it.

    Attributes:
        id: the machine id.
        name: its name (``<app>-<region>-<slot>`` for managed machines).
        region: its region code.
        slot: the ``orch_slot`` metadata as an int, or ``None`` for a machine the orchestrator
            does not manage (it is left alone).
        state: Fly's machine state.
        version: the current machine version (what an update's ``current_version`` guards).
        release: the ``fly_release_id`` metadata, or ``None``.
        config_digest: the ``orch_config_digest`` metadata, or ``None``.
        image: the configured image.
        guest: CPU kind, CPUs and memory.
        volume_id: the id of the first volume mounted, or ``None``.
        checks_passing: at least one check result and all pass.
        cordoned: removed from proxy routing.
        metadata: the config's metadata (read-only).
        config: the full config as Fly returned it (a deep copy), to journal before a change and
            to restore on rollback.
    """

    id: str
    name: str
    region: str
    slot: int | None
    state: str
    version: str
    release: str | None
    config_digest: str | None
    image: str
    guest: ObservedGuest
    volume_id: str | None
    checks_passing: bool
    cordoned: bool
    metadata: Mapping[str, str] = field(default_factory=dict, compare=False)
    config: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def managed(self) -> bool:
        """Tell whether the orchestrator manages this machine (it has an ``orch_slot``)."""
        return self.slot is not None

    @classmethod
    def from_machine(cls, machine: Machine) -> ObservedMachine:
        """Build the planner's view of a machine from the API model."""
        cfg = machine.config
        meta = {str(k): str(v) for k, v in cfg.metadata.items()}
        raw_config = dict(cfg.raw) if cfg.raw else cfg.to_api()
        volume_id = next((m.volume for m in cfg.mounts if m.volume), None)
        return cls(
            id=machine.id,
            name=machine.name,
            region=machine.region,
            slot=_parse_slot(meta.get(META_SLOT)),
            state=machine.state,
            version=machine.version,
            release=meta.get(META_RELEASE) or None,
            config_digest=meta.get(META_CONFIG_DIGEST) or None,
            image=cfg.image,
            guest=ObservedGuest(cfg.guest.cpu_kind, cfg.guest.cpus, cfg.guest.memory_mb),
            volume_id=volume_id,
            checks_passing=machine.checks_passing,
            cordoned=machine.cordoned,
            metadata=MappingProxyType(meta),
            config=copy.deepcopy(raw_config),
        )


def _parse_slot(value: str | None) -> int | None:
    # Anything but a positive decimal integer means "not ours": better to leave a machine
    # alone than to guess which slot it fills.
    if value is None or not value.isdigit():
        return None
    slot = int(value)
    return slot if slot > 0 else None


@dataclass(frozen=True, slots=True)
class ObservedVolume:
    """One volume as the planner sees it.

    Attributes:
        id: the volume id.
        name: its name (the mount's ``source``).
        region: its region code.
        size_gb: its size.
        attached_machine_id: the machine it is attached to, or ``None``.
        state: Fly's volume state.
    """

    id: str
    name: str
    region: str
    size_gb: int
    attached_machine_id: str | None
    state: str

    @classmethod
    def from_volume(cls, volume: Volume) -> ObservedVolume:
        """Build the planner's view of a volume from the API model."""
        return cls(
            id=volume.id,
            name=volume.name,
            region=volume.region,
            size_gb=volume.size_gb,
            attached_machine_id=volume.attached_machine_id,
            state=volume.state,
        )


def _machine_key(m: ObservedMachine) -> tuple[str, int, str]:
    return (m.region, m.slot if m.slot is not None else 1 << 30, m.id)


@dataclass(frozen=True, slots=True)
class Fleet:
    """What exists for an app: live machines and volumes, in a canonical order.

    Destroyed (or dying) machines and soft-deleted volumes are dropped on construction, and
    both tuples are sorted (machines by region, slot, id; volumes by region, name, id), so the
    order the API listed them in never leaks into a plan.

    Attributes:
        app: the app name.
        machines: live machines.
        volumes: live volumes.
    """

    app: str
    machines: tuple[ObservedMachine, ...] = ()
    volumes: tuple[ObservedVolume, ...] = ()
    # By id, so a plan over tens of thousands of machines finds one without a scan.
    _machine_by_id: dict[str, ObservedMachine] = field(init=False, repr=False, compare=False)
    _volume_by_id: dict[str, ObservedVolume] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        machines = sorted(
            (m for m in self.machines if m.state not in GONE_MACHINE_STATES), key=_machine_key
        )
        volumes = sorted(
            (v for v in self.volumes if v.state not in GONE_VOLUME_STATES),
            key=lambda v: (v.region, v.name, v.id),
        )
        object.__setattr__(self, "machines", tuple(machines))
        object.__setattr__(self, "volumes", tuple(volumes))
        object.__setattr__(self, "_machine_by_id", {m.id: m for m in reversed(machines)})
        object.__setattr__(self, "_volume_by_id", {v.id: v for v in reversed(volumes)})

    @property
    def regions(self) -> tuple[str, ...]:
        """Return every region with a machine or a volume, sorted."""
        return tuple(sorted({m.region for m in self.machines} | {v.region for v in self.volumes}))

    def machine(self, machine_id: str) -> ObservedMachine | None:
        """Return the live machine with this id, or ``None``."""
        return self._machine_by_id.get(machine_id)

    def volume(self, volume_id: str) -> ObservedVolume | None:
        """Return the live volume with this id, or ``None``."""
        return self._volume_by_id.get(volume_id)

    def machines_in(self, region: str) -> tuple[ObservedMachine, ...]:
        """Return the live machines of ``region`` (managed first, by slot, then by id)."""
        return tuple(m for m in self.machines if m.region == region)

    def volumes_in(self, region: str, name: str | None = None) -> tuple[ObservedVolume, ...]:
        """Return the live volumes of ``region`` (only those called ``name`` if given), by id."""
        return tuple(
            v for v in self.volumes if v.region == region and (name is None or v.name == name)
        )

    def managed_in(self, region: str) -> dict[int, ObservedMachine]:
        """Return slot → machine for the managed machines of ``region``.

        When two machines claim one slot (a manual clone, a create retried by hand) the one
        with the lowest id holds it; :meth:`duplicates_in` returns the others.
        """
        slots: dict[int, ObservedMachine] = {}
        for m in self.machines_in(region):
            if m.slot is not None and m.slot not in slots:
                slots[m.slot] = m
        return slots

    def duplicates_in(self, region: str) -> tuple[ObservedMachine, ...]:
        """Return managed machines of ``region`` whose slot another machine already holds."""
        holders = {m.id for m in self.managed_in(region).values()}
        return tuple(
            m for m in self.machines_in(region) if m.slot is not None and m.id not in holders
        )

    def unmanaged(self) -> tuple[ObservedMachine, ...]:
        """Return machines without ``orch_slot``: the orchestrator never touches them."""
        return tuple(m for m in self.machines if m.slot is None)

    def mounted_volume_ids(self) -> frozenset[str]:
        """Return ids of volumes some live machine mounts, whatever the volume reports."""
        return frozenset(m.volume_id for m in self.machines if m.volume_id)

    def unattached_volumes(self, region: str, name: str) -> tuple[ObservedVolume, ...]:
        """Return volumes of ``region`` called ``name`` that no live machine uses, by id."""
        mounted = self.mounted_volume_ids()
        return tuple(
            v
            for v in self.volumes_in(region, name)
            if v.attached_machine_id is None and v.id not in mounted
        )


def fleet_from_api(app: str, machines: Sequence[Machine], volumes: Sequence[Volume]) -> Fleet:
    """Build a :class:`Fleet` from the Machines API's models (pure)."""
    return Fleet(
        app=app,
        machines=tuple(ObservedMachine.from_machine(m) for m in machines),
        volumes=tuple(ObservedVolume.from_volume(v) for v in volumes),
    )


class FleetClient(Protocol):
    """The two calls :func:`observe` needs from ``orchestrator.fly.client.FlyClient``."""

    async def list_machines(self, app: str, /) -> Sequence[Machine]: ...

    async def list_volumes(self, app: str, /) -> Sequence[Volume]: ...


async def observe(client: FleetClient, app: str) -> Fleet:
    """List the app's machines and volumes through ``client`` and return them as a Fleet."""
    machines = await client.list_machines(app)
    volumes = await client.list_volumes(app)
    return fleet_from_api(app, machines, volumes)


async def observe_fleet(client: FleetClient, app: str) -> Fleet:
    """Observe the app's machines and volumes; an app that does not exist yet has none."""
    try:
        return await observe(client, app)
    except FlyNotFound:
        return Fleet(app=app)
