"""Process groups in the plan: each group's machines, and the slots that keep them apart.

A region's machines are numbered by ``orch_slot``, and every step, gate and journal row names
a machine by region and slot. The default group keeps slots 1, 2, ... (so a one-group fleet
plans exactly as before groups existed); each other group gets its own block of a thousand
slots, placed by its name, so adding, removing or renaming one group never renumbers another.
"""

from __future__ import annotations

import hashlib

from orchestrator.errors import ConfigError
from orchestrator.fleetconfig.model import DeploySpec
from orchestrator.fleetconfig.values import MAX_COUNT
from orchestrator.plan.config import META_PROCESS_GROUP
from orchestrator.plan.fleet import Fleet, ObservedMachine

__all__ = [
    "SLOT_BLOCK",
    "check_slot_blocks",
    "gate_slots",
    "group_fleet",
    "group_of",
    "local_slot",
    "slot_base",
]

SLOT_BLOCK = MAX_COUNT
"""Slots one group may use: a whole region's count."""
_BLOCKS = 900


def slot_base(spec: DeploySpec, group: str) -> int:
    """Return the slot before a group's first: 0 for the default group, else its block."""
    if group == spec.process_group:
        return 0
    digest = int(hashlib.sha256(group.encode("utf-8")).hexdigest()[:8], 16)
    return SLOT_BLOCK * (100 + digest % _BLOCKS)


def check_slot_blocks(spec: DeploySpec) -> None:
    """Refuse two groups whose slot blocks coincide (about one pair in 900).

    Raises:
        ConfigError: names ``fly.toml: processes`` and the two groups.
    """
    seen: dict[int, str] = {}
    for name in spec.group_names:
        base = slot_base(spec, name)
        if base in seen:
            raise ConfigError(
                f"process groups {seen[base]!r} and {name!r} would share machine slots in this "
                "tool; rename one of them",
                where="fly.toml: processes",
            )
        seen[base] = name


def group_of(spec: DeploySpec, m: ObservedMachine) -> str:
    """Return the group a machine runs in (``fly_process_group``; the default without one)."""
    return m.metadata.get(META_PROCESS_GROUP) or spec.process_group


def group_fleet(fleet: Fleet, spec: DeploySpec, group: str) -> Fleet:
    """Return the fleet as one group's plan sees it: only that group's machines.

    The default group also sees managed machines of groups fly.toml no longer names that hold
    its slots (1..1000). Volumes are kept whole: a group finds its own by the mount's name. A
    one-group spec sees the fleet as it is.
    """
    if not spec.groups:
        return fleet
    known = set(spec.group_names)

    def mine(m: ObservedMachine) -> bool:
        theirs = group_of(spec, m)
        if theirs == group:
            return True
        # A managed machine of a group fly.toml no longer names, in the default group's slots
        # (the default group renamed, say): the default group's, as with one group, so its
        # slot is not created twice.
        return (
            group == spec.process_group
            and theirs not in known
            and m.slot is not None
            and m.slot <= SLOT_BLOCK
        )

    return Fleet(
        app=fleet.app,
        machines=tuple(m for m in fleet.machines if mine(m)),
        volumes=fleet.volumes,
    )


def local_slot(slot: int) -> int:
    """Return a slot's number within its group (1, 2...), for people to read."""
    return slot if slot <= SLOT_BLOCK else (slot - 1) % SLOT_BLOCK + 1


def gate_slots(spec: DeploySpec, region: str) -> list[int]:
    """Return the slots of every group's machines ``region`` should have, in order."""
    slots: list[int] = []
    for name in spec.group_names:
        rs = spec.for_group(name).regions.get(region)
        base = slot_base(spec, name)
        slots += range(base + 1, base + (rs.count if rs is not None else 0) + 1)
    return slots
