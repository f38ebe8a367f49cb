"""Turn ``invoke scale``'s flags into a checked :class:`ScaleRequest`, before anything runs.

Only the shape of the command is checked here (numbers are numbers, a change names its regions);
Fly's size rules and the fleet's files are checked by
:func:`orchestrator.fleetconfig.edit.update_region_file`, which names the same flags. Every
error is a :class:`~orchestrator.errors.ConfigError` (exit code 2) naming the flag.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from orchestrator.errors import ConfigError

__all__ = ["CHANGE_FLAGS", "ScaleRequest", "parse_scale_flags"]

CHANGE_FLAGS: tuple[str, ...] = ("--count", "--vm", "--cpu", "--memory", "--volume-size")
"""The flags that change a region, in the order errors list them."""


@dataclass(frozen=True, slots=True)
class ScaleRequest:
    """What ``invoke scale`` was asked to do.

    Attributes:
        regions: the regions to change, in the order given, without repeats.
        count: machines wanted per region.
        vm: a preset name.
        cpus: a CPU count within the current CPU kind.
        memory_mb: memory per machine.
        volume_size_gb: each machine's volume size (only grows).
        dry_run: show the changes and the plan; write and change nothing.
        destroy_volumes: destroy the volumes of machines a scale-down removes.
        group: the process group to change or show (``--group``), or ``None`` for all.
    """

    regions: tuple[str, ...] = ()
    count: int | None = None
    vm: str | None = None
    cpus: int | None = None
    memory_mb: int | None = None
    volume_size_gb: int | None = None
    dry_run: bool = False
    destroy_volumes: bool = False
    group: str | None = None

    @property
    def given(self) -> tuple[str, ...]:
        """Return the change flags given, in :data:`CHANGE_FLAGS` order."""
        values = (self.count, self.vm, self.cpus, self.memory_mb, self.volume_size_gb)
        return tuple(f for f, v in zip(CHANGE_FLAGS, values, strict=True) if v is not None)

    @property
    def changes(self) -> bool:
        """Tell whether any change flag was given (otherwise the command only shows)."""
        return bool(self.given)


def _whole(value: int | str | None, flag: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"expected a whole number, got {value!r}", where=flag)
    if isinstance(value, int):
        return value
    text = str(value).strip()
    try:
        return int(text, 10)
    except ValueError:
        raise ConfigError(f"expected a whole number, got {text!r}", where=flag) from None


def _group(value: str | None) -> str | None:
    if value is None:
        return None
    name = value.strip()
    if not name:
        raise ConfigError("empty process group name", where="--group")
    return name


def parse_scale_flags(
    *,
    region: Iterable[str] | str | None = None,
    count: int | str | None = None,
    vm: str | None = None,
    cpu: int | str | None = None,
    memory: int | str | None = None,
    volume_size: int | str | None = None,
    dry_run: bool = False,
    destroy_volumes: bool = False,
    fleet_regions: Iterable[str] = (),
    group: str | None = None,
) -> ScaleRequest:
    """Check the flags' shape and return the request (no file or network is read).

    ``fleet_regions`` (the regions with a file) only makes the missing ``--region`` error
    name the choices.

    Raises:
        ConfigError: a number that is not one, a change without ``--region``, or
            ``--dry-run``/``--destroy-volumes`` without a change; the message names the flag.
    """
    if region is None:
        regions: list[str] = []
    elif isinstance(region, str):
        regions = [region]
    else:
        regions = list(region)
    seen: list[str] = []
    for code in regions:
        code = code.strip().lower()
        if not code:
            raise ConfigError("empty region code", where="--region")
        if code not in seen:
            seen.append(code)
    preset = vm.strip() if isinstance(vm, str) else vm
    if preset == "":
        raise ConfigError("empty VM preset", where="--vm")
    request = ScaleRequest(
        regions=tuple(seen),
        count=_whole(count, "--count"),
        vm=preset,
        cpus=_whole(cpu, "--cpu"),
        memory_mb=_whole(memory, "--memory"),
        volume_size_gb=_whole(volume_size, "--volume-size"),
        dry_run=dry_run,
        destroy_volumes=destroy_volumes,
        group=_group(group),
    )
    if request.changes and not request.regions:
        choices = ", ".join(sorted(fleet_regions))
        raise ConfigError(
            f"{request.given[0]} changes a region: name it with --region CODE (repeat for "
            f"several){f'; the fleet has {choices}' if choices else ''}",
            where="--region",
        )
    if not request.changes:
        for flag, on in (("--dry-run", dry_run), ("--destroy-volumes", destroy_volumes)):
            if on:
                raise ConfigError(
                    f"nothing to change: add one of {', '.join(CHANGE_FLAGS)}", where=flag
                )
    return request
