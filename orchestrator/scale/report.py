"""Compare each region's desired size (``regions/<code>.toml``) with what runs, and mark drift.

This is what ``invoke scale`` shows without change flags, like ``fly scale show`` but per region
and with the desired values beside the observed ones. It is pure: a spec and an observed
:class:`~orchestrator.plan.fleet.Fleet` in, a :class:`ScaleReport` out.

Observed values are read from the machines and volumes themselves. When a region's machines
disagree (a roll halted half-way, someone ran ``fly scale vm`` on one machine), a key on which
they differ is reported as ``None`` and the distinct sizes are listed in ``sizes``, so a script
never mistakes one machine's size for the region's.

Drift is a key whose observed value differs from the desired one:

- ``count``: live machines in the region (managed or not) against ``count``;
- ``cpu_kind``, ``cpus``, ``memory_mb``: some live machine has another value;
- ``volume_size_gb``: some volume of the mount's name in the region is *smaller* than asked.
  A bigger one is not drift: Fly volumes never shrink, and a fork is at least as big as its
  source, so nothing could ever converge it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.fleetconfig.model import DeploySpec, RegionSpec
from orchestrator.plan.fleet import Fleet, ObservedGuest
from orchestrator.plan.groups import group_fleet
from orchestrator.scale.usage import RegionUsage

__all__ = [
    "SIZE_KEYS",
    "DesiredSize",
    "ObservedSize",
    "RegionScale",
    "ScaleReport",
    "SizeGroup",
    "build_report",
]

SIZE_KEYS: tuple[str, ...] = ("count", "cpu_kind", "cpus", "memory_mb", "volume_size_gb")
"""The keys of ``desired`` and ``observed`` in ``invoke scale --json``, in display order."""


@dataclass(frozen=True, slots=True)
class DesiredSize:
    """A region's size as ``regions/<code>.toml`` asks for it.

    Attributes:
        count: machines wanted.
        cpu_kind: ``shared`` or ``performance``.
        cpus: CPUs per machine.
        memory_mb: memory per machine.
        volume_size_gb: size of each machine's volume (``None`` for an app without a mount).
        preset: the preset name when the size is exactly a preset, else ``None``.
        source: the file it came from (``regions/syd.toml``).
    """

    count: int
    cpu_kind: str
    cpus: int
    memory_mb: int
    volume_size_gb: int | None
    preset: str | None
    source: str

    @classmethod
    def from_region(cls, region: RegionSpec, *, has_mount: bool) -> DesiredSize:
        """Read the desired size of one region of the spec."""
        return cls(
            count=region.count,
            cpu_kind=region.vm.cpu_kind,
            cpus=region.vm.cpus,
            memory_mb=region.vm.memory_mb,
            volume_size_gb=region.volume_size_gb if has_mount else None,
            preset=region.vm.preset,
            source=region.source,
        )

    def value(self, key: str) -> Any:
        """Return the value of one of :data:`SIZE_KEYS`."""
        return getattr(self, key)

    def to_json(self) -> dict[str, Any]:
        """Return DESIGN.md's ``desired`` object (plus ``preset`` and ``source``)."""
        return {
            "count": self.count,
            "cpu_kind": self.cpu_kind,
            "cpus": self.cpus,
            "memory_mb": self.memory_mb,
            "volume_size_gb": self.volume_size_gb,
            "preset": self.preset,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class SizeGroup:
    """Machines of a region that share one size.

    Attributes:
        cpu_kind: ``shared`` or ``performance``.
        cpus: CPUs.
        memory_mb: memory.
        machines: how many machines have this size.
    """

    cpu_kind: str
    cpus: int
    memory_mb: int
    machines: int

    def to_json(self) -> dict[str, Any]:
        """Return the group as JSON."""
        return {
            "cpu_kind": self.cpu_kind,
            "cpus": self.cpus,
            "memory_mb": self.memory_mb,
            "machines": self.machines,
        }


@dataclass(frozen=True, slots=True)
class ObservedSize:
    """A region's size as the Machines API reports it.

    Attributes:
        count: live machines in the region.
        cpu_kind: the machines' CPU kind, or ``None`` (no machines, or they differ).
        cpus: their CPUs, or ``None``.
        memory_mb: their memory, or ``None``.
        volume_size_gb: the size of the region's volumes, or ``None`` (none, or they differ).
        volumes: live volumes of the mount's name in the region, attached or not.
        unattached: how many of those no live machine mounts (left by a scale-down).
        started: machines in the ``started`` state.
        unmanaged: machines without ``orch_slot`` (counted, never touched).
        sizes: each distinct machine size with its number of machines, biggest group first.
        volume_sizes: each distinct volume size, ascending.
    """

    count: int
    cpu_kind: str | None
    cpus: int | None
    memory_mb: int | None
    volume_size_gb: int | None
    volumes: int
    unattached: int
    started: int
    unmanaged: int
    sizes: tuple[SizeGroup, ...]
    volume_sizes: tuple[int, ...]

    def value(self, key: str) -> Any:
        """Return the value of one of :data:`SIZE_KEYS`."""
        return getattr(self, key)

    def to_json(self) -> dict[str, Any]:
        """Return DESIGN.md's ``observed`` object (plus the breakdowns)."""
        return {
            "count": self.count,
            "cpu_kind": self.cpu_kind,
            "cpus": self.cpus,
            "memory_mb": self.memory_mb,
            "volume_size_gb": self.volume_size_gb,
            "volumes": self.volumes,
            "unattached_volumes": self.unattached,
            "started": self.started,
            "unmanaged": self.unmanaged,
            "sizes": [g.to_json() for g in self.sizes],
            "volume_sizes": list(self.volume_sizes),
        }


@dataclass(frozen=True, slots=True)
class RegionScale:
    """One region: desired beside observed.

    Attributes:
        code: the region code.
        role: ``primary``/``replica`` from the spec, or ``None`` for a region without a file.
        desired: the desired size, or ``None`` when ``regions/<code>.toml`` does not exist.
        observed: the observed size.
        drift: the keys of :data:`SIZE_KEYS` that differ, in that order.
        usage: what the machines use (CPU, memory, latency, errors, volume), when measured.
        group: the process group the entry is about, or ``None`` in a one-group fleet.
    """

    code: str
    role: str | None
    desired: DesiredSize | None
    observed: ObservedSize
    drift: tuple[str, ...]
    usage: RegionUsage | None = None
    group: str | None = None

    @property
    def in_sync(self) -> bool:
        """Tell whether nothing drifted."""
        return not self.drift

    def to_json(self) -> dict[str, Any]:
        """Return the region's entry of ``invoke scale --json``."""
        data: dict[str, Any] = {
            "role": self.role,
            "desired": self.desired.to_json() if self.desired is not None else None,
            "observed": self.observed.to_json(),
            "drift": list(self.drift),
        }
        if self.usage is not None:
            data["usage"] = self.usage.to_json()
        return data


@dataclass(frozen=True, slots=True)
class ScaleReport:
    """Every region's desired and observed size.

    Attributes:
        app: the app.
        backend: ``local`` or ``fly``.
        regions: the regions, sorted by code.
    """

    app: str
    backend: str
    regions: tuple[RegionScale, ...]

    @property
    def drifted(self) -> tuple[RegionScale, ...]:
        """Return the regions with drift."""
        return tuple(r for r in self.regions if r.drift)

    def with_usage(self, usage: Mapping[str, RegionUsage]) -> ScaleReport:
        """Return the report with each region's measured usage attached."""
        return dataclasses.replace(
            self,
            regions=tuple(
                dataclasses.replace(r, usage=usage.get(r.code, r.usage)) for r in self.regions
            ),
        )

    def region(self, code: str, group: str | None = None) -> RegionScale:
        """Return one region's entry (of the first group listed, unless ``group`` names one).

        Raises:
            KeyError: the region is not in the report.
        """
        for entry in self.regions:
            if entry.code == code and (group is None or entry.group == group):
                return entry
        raise KeyError(code)

    def to_json(self) -> dict[str, Any]:
        """Return DESIGN.md's ``invoke scale --json`` object (plus ``app``, ``backend``).

        With process groups, ``regions`` holds the default group's entries (as before groups
        existed) and ``groups`` every group's, by name then region.
        """
        data: dict[str, Any] = {"app": self.app, "backend": self.backend, "regions": {}}
        for r in self.regions:
            if r.code not in data["regions"]:
                data["regions"][r.code] = r.to_json()
            if r.group is not None:
                data.setdefault("groups", {}).setdefault(r.group, {})[r.code] = r.to_json()
        return data


def _common(values: Iterable[Any]) -> Any:
    """Return the one value all of ``values`` share, or ``None`` (none, or they differ)."""
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else None


def _observe_region(fleet: Fleet, code: str, volume_name: str | None) -> ObservedSize:
    machines = fleet.machines_in(code)
    guests = Counter(m.guest for m in machines)
    # Biggest group first; ties in a fixed order so the output is deterministic.
    groups = sorted(
        guests.items(), key=lambda kv: (-kv[1], kv[0].cpu_kind, kv[0].cpus, kv[0].memory_mb)
    )
    volumes = fleet.volumes_in(code, volume_name) if volume_name is not None else ()
    unattached = fleet.unattached_volumes(code, volume_name) if volume_name is not None else ()
    return ObservedSize(
        count=len(machines),
        cpu_kind=_common(g.cpu_kind for g in guests),
        cpus=_common(g.cpus for g in guests),
        memory_mb=_common(g.memory_mb for g in guests),
        volume_size_gb=_common(v.size_gb for v in volumes),
        volumes=len(volumes),
        unattached=len(unattached),
        started=sum(1 for m in machines if m.state == "started"),
        unmanaged=sum(1 for m in machines if not m.managed),
        sizes=tuple(SizeGroup(g.cpu_kind, g.cpus, g.memory_mb, n) for g, n in groups),
        volume_sizes=tuple(sorted({v.size_gb for v in volumes})),
    )


def _drift(
    desired: DesiredSize | None, observed: ObservedSize, guests: Sequence[ObservedGuest]
) -> tuple[str, ...]:
    if desired is None:
        # Machines in a region the spec does not list: the count is off (it wants none).
        return ("count",) if observed.count else ()
    keys: list[str] = []
    if observed.count != desired.count:
        keys.append("count")
    for key in ("cpu_kind", "cpus", "memory_mb"):
        if any(getattr(g, key) != desired.value(key) for g in guests):
            keys.append(key)
    if desired.volume_size_gb is not None and any(
        size < desired.volume_size_gb for size in observed.volume_sizes
    ):
        keys.append("volume_size_gb")
    return tuple(keys)


def build_report(
    spec: DeploySpec,
    fleet: Fleet,
    *,
    regions: Sequence[str] | None = None,
    backend: str = "local",
) -> ScaleReport:
    """Put each region's desired size beside the observed one (pure).

    Args:
        spec: the desired fleet.
        fleet: what runs now.
        regions: only these regions (``None`` or empty: every region of the spec, plus any
            region where machines run without a region file).
        backend: ``local`` or ``fly``, for the report's header.
    """
    if spec.groups:
        # One entry per group and region, each group seeing only its own machines, as
        # fly scale show lists groups.
        entries: list[RegionScale] = []
        for name in spec.group_names:
            sub = build_report(
                spec.for_group(name),
                group_fleet(fleet, spec, name),
                regions=regions,
                backend=backend,
            )
            entries += [dataclasses.replace(e, group=name) for e in sub.regions]
        return ScaleReport(app=spec.app, backend=backend, regions=tuple(entries))
    volume_name = spec.mount.source if spec.mount is not None else None
    if regions:
        codes = sorted(set(regions))
    else:
        codes = sorted(set(spec.regions) | {m.region for m in fleet.machines})
    entries = []
    for code in codes:
        region = spec.regions.get(code)
        desired = (
            DesiredSize.from_region(region, has_mount=spec.mount is not None)
            if region is not None
            else None
        )
        observed = _observe_region(fleet, code, volume_name)
        guests = [m.guest for m in fleet.machines_in(code)]
        entries.append(
            RegionScale(
                code=code,
                role=region.role if region is not None else None,
                desired=desired,
                observed=observed,
                drift=_drift(desired, observed, guests),
            )
        )
    return ScaleReport(app=spec.app, backend=backend, regions=tuple(entries))
