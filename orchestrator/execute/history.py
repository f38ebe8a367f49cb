"""Read an app's release history from Fly itself, so a rollback works from any checkout.

Two things on Fly carry it, both written by the executor as it changes machines:

- each machine's **versions** (``GET /machines/{id}/versions``): Fly keeps the full config of
  every version a machine had, and each config's metadata names its release
  (``fly_release_id``); that is where a rollback finds the configs to put back;
- each machine's metadata **``orch_prev_release``**: the release the machine ran before the
  deploy that put its current one there. An automatic rollback restores a config exactly, with
  its own predecessor, so a release that was rolled back is never named as "the previous one";
  a manual rollback names the release it rolled back from, so a second ``invoke rollback`` goes
  forward again.

The local journal stays the detailed log and is still read; what Fly says comes first.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, MutableMapping
from typing import Any

from orchestrator.execute.journal import MachineConfigRecord
from orchestrator.fly.client import FlyClient
from orchestrator.plan.config import META_RELEASE, META_SLOT
from orchestrator.plan.fleet import Fleet

__all__ = [
    "META_PREV_RELEASE",
    "fly_history",
    "previous_from_fly",
    "with_predecessor",
]

META_PREV_RELEASE = "orch_prev_release"
# Rows made from Fly's versions sort before every journal row (positive ids), so a journaled
# config of the same release wins where the journal has one.
_FLY_ROW_BASE = -(10**9)


def _meta(config: Mapping[str, Any] | None) -> Mapping[str, Any]:
    meta = config.get("metadata") if isinstance(config, Mapping) else None
    return meta if isinstance(meta, Mapping) else {}


def with_predecessor(config: MutableMapping[str, Any], before: Mapping[str, Any] | None) -> None:
    """Name the release ``config`` replaces in its metadata (pure; changes ``config``).

    A config that already names one (a restore puts back a config as it was) keeps it; one
    that changes the release names the old one; one that keeps the release keeps the old
    predecessor.
    """
    meta = config.get("metadata")
    if not isinstance(meta, MutableMapping):
        meta = config["metadata"] = dict(meta or {})
    if meta.get(META_PREV_RELEASE):
        return
    new, old = meta.get(META_RELEASE), _meta(before).get(META_RELEASE)
    if old and new and old != new:
        meta[META_PREV_RELEASE] = old
    elif _meta(before).get(META_PREV_RELEASE):
        meta[META_PREV_RELEASE] = _meta(before)[META_PREV_RELEASE]


def previous_from_fly(fleet: Fleet, regions: Collection[str]) -> str | None:
    """Return the release the machines of ``regions`` name as their predecessor, if they agree.

    ``None`` when they run several releases, or name no predecessor or several (the journal
    is asked then).
    """
    machines = [m for r in regions for m in fleet.managed_in(r).values()]
    current = {m.release for m in machines}
    named = {m.metadata.get(META_PREV_RELEASE) for m in machines} - {None, ""}
    if len(current) != 1 or len(named) != 1:
        return None
    (prev,) = named
    return prev if prev not in current else None


async def fly_history(
    client: FlyClient, app: str, fleet: Fleet, regions: Collection[str]
) -> list[MachineConfigRecord]:
    """Return the versions Fly kept of the managed machines of ``regions`` as history rows.

    Each version becomes one row (``config_after``), oldest first, with ids that sort before
    the journal's; ``run`` is 0 (no journal run).
    """
    rows: list[MachineConfigRecord] = []
    next_id = _FLY_ROW_BASE
    for region in sorted(regions):
        for slot, machine in sorted(fleet.managed_in(region).items()):
            versions = await client.list_versions(app, machine.id)
            for version, config in reversed(versions):
                if not _meta(config).get(META_RELEASE):
                    continue
                rows.append(
                    MachineConfigRecord(
                        id=next_id,
                        run=0,
                        step_id="fly:versions",
                        machine_id=machine.id,
                        region=region,
                        slot=_slot(config, slot),
                        launch_id=None,
                        config_digest=None,
                        version_before=None,
                        config_before=None,
                        version_after=version,
                        config_after=config,
                        recorded_at="",
                        updated_at=None,
                    )
                )
                next_id += 1
    return rows


def _slot(config: Mapping[str, Any], default: int) -> int:
    value = _meta(config).get(META_SLOT)
    return int(value) if isinstance(value, str) and value.isdigit() else default
