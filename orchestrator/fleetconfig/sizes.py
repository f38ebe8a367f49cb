"""Fly's VM size rules: presets, CPU counts per kind, memory per CPU and its granularity.

The numbers come from fly-go's ``MachinePresets`` and the memory constants flyctl validates
against (``../shared/ref/fly-notes.md`` §2). Where the sources disagree this module follows flyctl,
because flyctl is what rejects a size before the API sees it:

- performance memory moves in steps of 1024 MB (flyctl); the sizing guide says 2048;
- performance CPU counts stop at 16: newer flyctl also accepts 32, 64 and 128, but no preset
  names them and they are not generally available, so asking for them is far more likely a typo
  than a plan;
- GPU presets (``a100-40gb``...) are refused: this tool does not place GPU machines.

Every error names where the value came from (``regions/syd.toml: memory_mb`` or ``--memory``)
through :class:`SizeKeys`, so the loader and ``invoke scale`` share one set of messages.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from orchestrator.errors import ConfigError
from orchestrator.fleetconfig.model import VMSize

__all__ = [
    "CPU_KINDS",
    "DEFAULT_PRESET",
    "FILE_KEYS",
    "FLAG_KEYS",
    "GPU_PRESETS",
    "PRESETS",
    "CpuKind",
    "SizeKeys",
    "allowed_cpus",
    "allowed_memory",
    "cpu_label",
    "default_memory",
    "parse_preset",
    "preset_for",
    "resolve_vm",
]

CpuKind = Literal["shared", "performance"]
CPU_KINDS: tuple[CpuKind, ...] = ("shared", "performance")

_CPUS: Mapping[str, tuple[int, ...]] = {
    "shared": (1, 2, 4, 6, 8),
    "performance": (1, 2, 4, 6, 8, 10, 12, 14, 16),
}
# (min, max) MB per CPU: MIN/MAX_MEMORY_MB_PER_SHARED_CPU and MIN/MAX_MEMORY_MB_PER_CPU.
_MEMORY_PER_CPU: Mapping[str, tuple[int, int]] = {
    "shared": (256, 2048),
    "performance": (2048, 8192),
}
# flyctl's granularity (internal/machine/update.go); see the module docstring.
_MEMORY_STEP: Mapping[str, int] = {"shared": 256, "performance": 1024}
# A preset's memory is the minimum per CPU times its CPUs.
_PRESET_PREFIX: Mapping[str, str] = {"shared": "shared-cpu", "performance": "performance"}

DEFAULT_PRESET = "shared-cpu-1x"
GPU_PRESETS: tuple[str, ...] = ("a100-40gb", "a100-80gb", "l40s", "a10")


def _preset_name(kind: str, cpus: int) -> str:
    return f"{_PRESET_PREFIX[kind]}-{cpus}x"


PRESETS: Mapping[str, VMSize] = {
    _preset_name(kind, n): VMSize(kind, n, _MEMORY_PER_CPU[kind][0] * n, _preset_name(kind, n))
    for kind in CPU_KINDS
    for n in _CPUS[kind]
}


@dataclass(frozen=True, slots=True)
class SizeKeys:
    """How the four size inputs are called where they came from, for error messages.

    Attributes:
        preset: the key or flag that names a preset (``vm``, ``--vm``).
        cpu_kind: the key or flag for the CPU kind.
        cpus: the key or flag for the CPU count.
        memory_mb: the key or flag for memory in MB.
    """

    preset: str = "vm"
    cpu_kind: str = "cpu_kind"
    cpus: str = "cpus"
    memory_mb: str = "memory_mb"


FILE_KEYS = SizeKeys()
"""The keys of ``regions/<code>.toml``."""
FLAG_KEYS = SizeKeys(preset="--vm", cpu_kind="--cpu-kind", cpus="--cpu", memory_mb="--memory")
"""The flags of ``invoke scale``."""


def _where(prefix: str, key: str) -> str:
    return f"{prefix}: {key}" if prefix else key


def allowed_cpus(kind: str) -> tuple[int, ...]:
    """Return the CPU counts Fly allows for ``kind``."""
    return _CPUS[kind]


def allowed_memory(kind: str, cpus: int) -> tuple[int, int, int]:
    """Return ``(min, max, step)`` in MB for a machine of ``cpus`` CPUs of ``kind``."""
    low, high = _MEMORY_PER_CPU[kind]
    return low * cpus, high * cpus, _MEMORY_STEP[kind]


def default_memory(kind: str, cpus: int) -> int:
    """Return the memory Fly gives ``cpus`` CPUs of ``kind`` when none is asked for."""
    return _MEMORY_PER_CPU[kind][0] * cpus


def preset_for(kind: str, cpus: int) -> str:
    """Return the preset named after ``cpus`` CPUs of ``kind`` (``shared-cpu-2x``)."""
    return _preset_name(kind, cpus)


def cpu_label(kind: str, cpus: int) -> str:
    """Describe a CPU configuration for messages: ``shared-cpu-1x (1 shared CPU)``."""
    plural = "" if cpus == 1 else "s"
    return f"{_preset_name(kind, cpus)} ({cpus} {kind} CPU{plural})"


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def parse_preset(name: str, *, where: str = "vm") -> VMSize:
    """Return the size a preset name stands for, with its default memory.

    Raises:
        ConfigError: the name is not a preset; the message lists the valid ones.
    """
    size = PRESETS.get(name)
    if size is not None:
        return size
    valid = ", ".join(PRESETS)
    if name in GPU_PRESETS:
        raise ConfigError(
            f"GPU size {name!r} is not supported by this tool: allowed {valid}", where=where
        )
    raise ConfigError(
        f"unknown VM size {name!r}{_suggest_preset(name)}: allowed {valid}", where=where
    )


def _suggest_preset(name: str) -> str:
    match = re.fullmatch(r"(shared-cpu|performance)-(\d+)x", name)
    if match is None:
        return _suggest(name, list(PRESETS))
    # A real family with a count it lacks: text similarity would pick any digit, so name the
    # allowed counts on either side instead.
    kind = "shared" if match.group(1) == "shared-cpu" else "performance"
    wanted = int(match.group(2))
    lower = [n for n in _CPUS[kind] if n < wanted]
    higher = [n for n in _CPUS[kind] if n > wanted]
    near = [_preset_name(kind, n) for n in (lower[-1:] + higher[:1])]
    return f" (did you mean {' or '.join(near)}?)"


def _check_kind(kind: str, where: str) -> CpuKind:
    if kind == "shared":
        return "shared"
    if kind == "performance":
        return "performance"
    raise ConfigError(
        f"unknown CPU kind {kind!r}{_suggest(kind, list(CPU_KINDS))}: allowed shared, performance",
        where=where,
    )


def _check_cpus(kind: str, cpus: int, where: str) -> None:
    allowed = _CPUS[kind]
    if cpus not in allowed:
        counts = ", ".join(str(n) for n in allowed)
        raise ConfigError(
            f"{cpus} CPUs is not allowed for {kind} CPUs: allowed {counts}", where=where
        )


def _check_memory(kind: str, cpus: int, memory_mb: int, where: str, hint: str = "") -> None:
    low, high, step = allowed_memory(kind, cpus)
    if low <= memory_mb <= high and memory_mb % step == 0:
        return
    nearest = ""
    if low <= memory_mb <= high:
        # Off the grid but in range: name the closest value that works, as flyctl does.
        nearest = f" (nearest: {min(high, round(memory_mb / step) * step)} MB)"
    raise ConfigError(
        f"{memory_mb} MB is not allowed for {cpu_label(kind, cpus)}: "
        f"allowed {low}\u2013{high} MB in steps of {step}{nearest}{hint}",
        where=where,
    )


def resolve_vm(
    preset: str | None = None,
    cpu_kind: str | None = None,
    cpus: int | None = None,
    memory_mb: int | None = None,
    *,
    where_prefix: str = "",
    keys: SizeKeys = FILE_KEYS,
    base: VMSize | None = None,
) -> VMSize:
    """Combine a preset, explicit CPU settings and memory into a size Fly accepts.

    Resolution starts from ``preset`` (or ``base``, or ``shared-cpu-1x``); ``cpu_kind`` and
    ``cpus`` override its CPUs. Memory is ``memory_mb`` when given; otherwise the starting
    memory is kept, except that a starting size at its default memory follows the CPUs to the
    new default (``shared-cpu-1x`` with 2 CPUs is 512 MB, like ``shared-cpu-2x``).

    Args:
        preset: a preset name (``shared-cpu-2x``).
        cpu_kind: ``shared`` or ``performance``.
        cpus: the CPU count.
        memory_mb: memory in MB.
        where_prefix: the file the values came from (``regions/syd.toml``), or ``""`` for
            command-line flags.
        keys: what the inputs are called there (:data:`FILE_KEYS`, :data:`FLAG_KEYS`).
        base: the size to start from when no preset is given (the app-wide default, or a
            region's current size when scaling).

    Raises:
        ConfigError: naming the key or flag and the values allowed for the resulting CPUs.
    """
    if preset is not None:
        start = parse_preset(preset, where=_where(where_prefix, keys.preset))
    else:
        start = base if base is not None else PRESETS[DEFAULT_PRESET]
        # A base read back from a machine may carry a kind this tool does not size (GPUs).
        _check_kind(start.cpu_kind, _where(where_prefix, keys.cpu_kind))
    kind: str = start.cpu_kind
    if cpu_kind is not None:
        kind = _check_kind(cpu_kind, _where(where_prefix, keys.cpu_kind))
    count = start.cpus if cpus is None else cpus
    # Blame the input that moved the CPUs: when only the kind changed, it is the inherited
    # count that no longer fits the new kind.
    if cpus is not None:
        moved_by = keys.cpus
    elif cpu_kind is not None:
        moved_by = keys.cpu_kind
    else:
        moved_by = keys.preset
    _check_cpus(kind, count, _where(where_prefix, moved_by))

    if memory_mb is not None:
        memory = memory_mb
        _check_memory(kind, count, memory, _where(where_prefix, keys.memory_mb))
    else:
        changed = (kind, count) != (start.cpu_kind, start.cpus)
        at_default = start.memory_mb == default_memory(start.cpu_kind, start.cpus)
        memory = default_memory(kind, count) if changed and at_default else start.memory_mb
        _check_memory(
            kind,
            count,
            memory,
            _where(where_prefix, moved_by),
            hint=f"; set {keys.memory_mb} too",
        )
    name = preset_for(kind, count) if memory == default_memory(kind, count) else None
    return VMSize(cpu_kind=kind, cpus=count, memory_mb=memory, preset=name)
