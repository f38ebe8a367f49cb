"""Build the deploy graph: which steps bring the fleet to the spec, and in what order.

:func:`build_plan` compares a :class:`~orchestrator.fleetconfig.model.DeploySpec` with an observed
:class:`~orchestrator.plan.fleet.Fleet` and returns a :class:`~orchestrator.plan.model.Plan`: a
networkx DiGraph of :class:`~orchestrator.plan.steps.Step` nodes grouped in waves. It is pure
and deterministic; docs/planning.md explains the rules. The rollback counterpart is
:func:`~orchestrator.plan.rollback.build_rollback_plan`, re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from orchestrator.errors import ConfigError
from orchestrator.fleetconfig.model import DeploySpec, WaveSpec
from orchestrator.plan.assemble import Assembler, VolumePlan, fork_source, plan_waves
from orchestrator.plan.changes import env_changes
from orchestrator.plan.config import (
    META_PLATFORM_VERSION,
    META_PROCESS_GROUP,
    META_RELEASE,
    META_SECRETS,
    META_SECRETS_VERSION,
    RELEASE_COMMAND_GROUP,
    RegionConfigs,
    Secrets,
    autostops,
    machine_name,
    release_id,
)
from orchestrator.plan.datagate import add_data_gates
from orchestrator.plan.fleet import Fleet, ObservedGuest, ObservedMachine, ObservedVolume
from orchestrator.plan.groups import check_slot_blocks, group_fleet, slot_base
from orchestrator.plan.model import Plan
from orchestrator.plan.restorepoints import add_snapshots
from orchestrator.plan.rollback import build_rollback_plan
from orchestrator.plan.steps import Step, StepKind, step_id

__all__ = ["Plan", "build_plan", "build_rollback_plan", "release_command_config", "spec_waves"]

# A stopped machine is fine only when Fly's proxy stops idle machines on purpose (autostop).
_COLD_STATES = frozenset({"stopped", "suspended", "created"})


def spec_waves(spec: DeploySpec) -> tuple[WaveSpec, ...]:
    """Return the spec's rollout waves, checking that every region is in one.

    A spec without waves rolls out the primary region first, then all others together.

    Raises:
        ConfigError: a region of the spec is in no wave (names ``regions/waves.toml``).
    """
    if not spec.waves:
        first = (spec.primary_region,) if spec.primary_region in spec.regions else ()
        others = tuple(sorted(r for r in spec.regions if r != spec.primary_region))
        return tuple(
            WaveSpec(index=i + 1, regions=w) for i, w in enumerate(w for w in (first, others) if w)
        )
    placed = {r for w in spec.waves for r in w.regions}
    missing = sorted(set(spec.regions) - placed)
    if missing:
        raise ConfigError(f"region {missing[0]!r} is in no wave", where="regions/waves.toml")
    return tuple(spec.waves)


def _select(spec: DeploySpec, regions: Sequence[str] | None) -> list[str]:
    if not regions:
        return sorted(spec.regions)
    unknown = [r for r in regions if r not in spec.regions]
    if unknown:
        known = ", ".join(sorted(spec.regions)) or "none"
        raise ConfigError(f"unknown region {unknown[0]!r}; the spec has {known}", option="region")
    return sorted(set(regions))


def _update_reason(
    m: ObservedMachine, desired: RegionConfigs, guest: ObservedGuest, autostop: bool
) -> str | None:
    """Say why an existing machine needs an update (``config``, ``drift``, ``state``), or None."""
    if m.config_digest != desired.digest:
        return "config"
    secrets = desired.secrets
    if (
        secrets is not None
        and secrets.rollout
        and m.metadata.get(META_SECRETS, "") != (secrets.fingerprint)
    ):
        # The machine runs other secrets than the app has now (a staged `secrets set`).
        return "secrets"
    # Someone changed the machine behind our back (fly scale vm, fly deploy) but kept our
    # metadata: the two fields Fly echoes back verbatim are enough to notice.
    if m.image != desired.image or m.guest != guest:
        return "drift"
    if m.state == "failed" or (m.state in _COLD_STATES and not autostop):
        return "state"
    return None


def _guest_text(g: ObservedGuest) -> str:
    kind = "shared-cpu" if g.cpu_kind == "shared" else g.cpu_kind
    return f"{kind}-{g.cpus}x {g.memory_mb} MB"


def _resize(observed: ObservedGuest, desired: ObservedGuest) -> dict[str, str]:
    """Return ``{"resize": "<from> → <to>"}`` when the machine's size changes, else ``{}``."""
    if observed == desired:
        return {}
    return {"resize": f"{_guest_text(observed)} → {_guest_text(desired)}"}


def _destroyed_volumes(
    spec: DeploySpec, fleet: Fleet, selected: Sequence[str], base: int = 0
) -> set[str]:
    """Return the volumes a scale-down with ``destroy_volumes`` removes from the primary."""
    primary = spec.primary_region
    if primary not in selected or primary not in spec.regions:
        return set()
    count = base + spec.regions[primary].count
    return {
        m.volume_id for slot, m in fleet.managed_in(primary).items() if slot > count and m.volume_id
    }


def _adoptable(
    spec: DeploySpec, fleet: Fleet, region: str, base: int = 0
) -> dict[int, ObservedMachine]:
    """Return slot → machine for machines ``fly deploy`` made that fill the region's free slots.

    flyctl marks its machines with ``fly_platform_version`` and ``fly_process_group``; those of
    the spec's group take the lowest free slots, by id, so a fleet first deployed with flyctl
    is taken over rather than duplicated. Any beyond ``count`` are left alone.
    """
    rs = spec.regions.get(region)
    if rs is None:
        return {}
    managed = fleet.managed_in(region)
    free = [s for s in range(base + 1, base + rs.count + 1) if s not in managed]
    theirs = [
        m
        for m in fleet.machines_in(region)
        if m.slot is None
        and m.metadata.get(META_PLATFORM_VERSION)
        and m.metadata.get(META_PROCESS_GROUP, "app") == spec.process_group
    ]
    return {
        slot: replace(m, slot=slot)
        for slot, m in zip(free, sorted(theirs, key=lambda m: m.id), strict=False)
    }


def build_plan(
    spec: DeploySpec,
    fleet: Fleet,
    *,
    regions: Sequence[str] | None = None,
    image: str | None = None,
    destroy_volumes: bool = False,
    secrets: Secrets | None = None,
    release_command: bool = False,
    leader: str | None = None,
    data_gate: bool = False,
) -> Plan:
    """Plan the steps that bring ``fleet`` to ``spec`` (pure, deterministic).

    Args:
        spec: the desired state.
        fleet: what exists now.
        regions: regions to deploy (``None`` or empty: every region of the spec).
        image: an image that replaces the spec's (``invoke deploy --image``).
        destroy_volumes: scaling down also destroys the removed machines' volumes.
        secrets: the app's secrets now; a machine launched with others is updated (reason
            ``secrets``) when ``secrets.rollout``. ``None``: not known, not compared.
        release_command: run the spec's release command first when the plan starts machines
            on a new release (a deploy does; a scale or a drill does not, as with flyctl).
        leader: the machine that holds the primary role (from the app's ``/status``), when
            known. In the primary region its update comes last, after every other update
            there, so writes pause once, for its hand-off, instead of on every update.
        data_gate: start each wave with a data-health gate (a deploy does).

    Raises:
        ConfigError: an unknown region (option ``region``), an empty image (``image``), or
            a region in no wave (``regions/waves.toml``).
    """
    if image is not None:
        if not image.strip():
            raise ConfigError("the image reference is empty", option="image")
        spec = replace(spec, image=image.strip())
    selected = _select(spec, regions)
    waves = plan_waves(spec_waves(spec), selected)
    release = release_id(spec, secrets)
    asm = Assembler()
    notes: list[str] = []
    if spec.groups:
        check_slot_blocks(spec)
    # Each process group plans its own machines in every region; the region's gates wait for
    # all of them.
    views = []
    for group in spec.group_names:
        view = spec.for_group(group)
        base = slot_base(spec, group)
        seen = group_fleet(fleet, spec, group)
        source = None
        if view.mount is not None:
            source = fork_source(
                seen,
                view.primary_region,
                view.mount.source,
                exclude=_destroyed_volumes(view, seen, selected, base) if destroy_volumes else (),
            )
        views.append((view, seen, base, source))

    for wave in waves:
        for region in wave.regions:
            slots: list[int] = []
            digest: str | None = None
            for view, seen, base, source in views:
                wanted, desired = _plan_region(
                    view,
                    seen,
                    region,
                    wave,
                    release,
                    destroy_volumes,
                    source,
                    asm,
                    notes,
                    base,
                    secrets,
                    leader if region == spec.primary_region else None,
                )
                slots += wanted
                digest = digest or desired
            asm.add_gates(
                region,
                slots=slots,
                bake=wave,
                params={"release": release, "config_digest": digest},
            )

    adopted = {
        m.id
        for view, seen, base, _ in views
        for region in selected
        for m in _adoptable(view, seen, region, base).values()
    }
    for m in fleet.unmanaged():
        if m.region in selected and m.id not in adopted:
            notes.append(
                f"{m.region}: machine {m.id} ({m.name or 'unnamed'}) has no orch_slot; left alone"
            )
    if not regions:
        for code in fleet.regions:
            if code in spec.regions:
                continue
            stray = [m for m in fleet.machines_in(code) if m.managed]
            if stray:
                notes.append(
                    f"{code}: {len(stray)} managed machine(s) in a region the spec does not "
                    f"list; left alone (add regions/{code}.toml with count = 0 to remove them)"
                )
    asm.resolve_primary_waits(spec.primary_region, notes)
    # What fly.toml and the region files say that this tool does not act on, and why.
    notes.extend(spec.notes)
    graph = asm.link(waves, spec.primary_region)
    add_snapshots(graph, fleet, waves, spec.primary_region, release)
    if data_gate:
        add_data_gates(graph, spec, fleet, waves)
    if (
        release_command
        and spec.release is not None
        and waves
        and _new_release(fleet, graph, release)
    ):
        _add_release_command(spec, graph, release, secrets)
    return Plan(
        app=spec.app,
        release=release,
        waves=tuple(w.regions for w in waves),
        graph=graph,
        notes=tuple(notes),
        wave_specs=waves,
    )


def _new_release(fleet: Fleet, graph: Any, release: str) -> bool:
    """Tell whether the plan starts machines on a release no managed machine runs yet."""
    launches = any(
        data["step"].kind in (StepKind.MACHINE_CREATE, StepKind.MACHINE_UPDATE)
        for _, data in graph.nodes(data=True)
    )
    return launches and not any(m.managed and m.release == release for m in fleet.machines)


def release_command_config(
    spec: DeploySpec, release: str, secrets: Secrets | None = None
) -> dict[str, Any]:
    """Return the config of the temporary machine that runs the release command.

    As Fly runs it: the new image with the app's env (and secrets), in the primary region, no
    volume, no services or checks, never restarted; ``init.cmd`` is the command.
    """
    if spec.release is None:
        raise ValueError("the spec has no release command")
    config = RegionConfigs(spec, spec.primary_region, release=release, secrets=secrets).config(1)
    for key in ("mounts", "services", "checks"):
        config.pop(key, None)
    config["restart"] = {"policy": "no"}
    config["init"] = {"cmd": list(spec.release.argv)}
    meta = config["metadata"]
    config["metadata"] = {
        META_PLATFORM_VERSION: "v2",
        META_PROCESS_GROUP: RELEASE_COMMAND_GROUP,
        META_RELEASE: release,
        **{k: meta[k] for k in (META_SECRETS, META_SECRETS_VERSION) if k in meta},
    }
    return config


def _add_release_command(
    spec: DeploySpec, graph: Any, release: str, secrets: Secrets | None
) -> None:
    """Put the release command before every other step of the plan."""
    if spec.release is None:
        return
    primary = spec.primary_region
    roots = [n for n in graph.nodes if graph.in_degree(n) == 0]
    step = Step(
        id=step_id(primary, StepKind.RELEASE_COMMAND),
        kind=StepKind.RELEASE_COMMAND,
        region=primary,
        wave=1,
        params={
            "command": list(spec.release.argv),
            "timeout_s": spec.release.timeout_s,
            "release": release,
            "config": release_command_config(spec, release, secrets),
        },
    )
    graph.add_node(step.id, step=step)
    for root in roots:
        graph.add_edge(step.id, root)


def _plan_region(
    spec: DeploySpec,
    fleet: Fleet,
    region: str,
    wave: WaveSpec,
    release: str,
    destroy_volumes: bool,
    source: ObservedVolume | None,
    asm: Assembler,
    notes: list[str],
    base: int = 0,
    secrets: Secrets | None = None,
    leader: str | None = None,
) -> tuple[list[int], str | None]:
    """Add the steps of one group in one region: updates, creates with their volumes, destroys.

    Returns the slots the region's health gate waits for and the config digest they share
    (``None`` for an emptied region). ``base`` is the slot before the group's first.
    """
    rs = spec.regions[region]
    mount = spec.mount
    managed = fleet.managed_in(region)
    # One config and one digest per region: slots differ only in orch_slot and their volume.
    desired = RegionConfigs(spec, region, release=release, secrets=secrets)
    guest = ObservedGuest(**desired.guest)
    autostop = autostops(spec)
    lane = str(base) if base else ""

    for dup in fleet.duplicates_in(region):
        holder = managed[dup.slot].id if dup.slot in managed else "?"
        notes.append(
            f"{region}: machine {dup.id} claims slot {dup.slot}, held by {holder}; left alone"
        )

    adopt = _adoptable(spec, fleet, region, base)
    last = base + rs.count
    kept = sorted(s for s in [*managed, *adopt] if base < s <= last)
    # The leader's update goes last (a stable sort keeps the others in slot order).
    kept.sort(key=lambda s: s in managed and managed[s].id == leader)
    updates: list[str] = []
    for slot in kept:
        m = managed[slot] if slot in managed else adopt[slot]
        # A machine fly deploy made has no digest of ours: it always gets this tool's config.
        reason = "adopt" if slot in adopt else _update_reason(m, desired, guest, autostop)
        if reason is None:
            continue
        if mount is not None and m.volume_id is None:
            notes.append(f"{region}: machine {m.id} (slot {slot}) has no volume mounted")
        hands_off = leader is not None and m.id == leader
        update = asm.add_update(
            region,
            wave.index,
            m,
            {
                "name": m.name,
                "config": desired.config(slot, m.volume_id),
                "release": release,
                "from_version": m.version,
                "from_release": m.release,
                "reason": reason,
                **_resize(m.guest, guest),
                **env_changes(m.config, desired.config(slot, m.volume_id)),
                **({"leader": True} if hands_off else {}),
            },
            lane=lane,
            # The leader stops only once every other machine runs the new release, so the one
            # that takes over its writes is already updated: one hand-off, not two.
            after=list(updates) if hands_off else (),
        )
        updates.append(update)

    # Orphaned volumes of the mount's name are reused first, by id, as fly scale count does.
    missing = [s for s in range(base + 1, last + 1) if s not in managed and s not in adopt]
    free = iter(fleet.unattached_volumes(region, mount.source) if mount and missing else ())
    # A primary region without a machine (a first deploy) gets its first machine alone: an
    # app that elects its writer among the region's machines (the sample app, LiteFS without
    # a lease) then elects that one, and the others find it and follow. Started together,
    # each found nobody and took writes, and the one that stepped down set aside writes it
    # had acknowledged.
    first_alone = (
        region == spec.primary_region
        and not managed
        and not adopt
        and (base == 0 or mount is not None)
    )
    first_create: str | None = None
    for slot in missing:
        volume: VolumePlan | None = None
        if mount is not None:
            reuse = next(free, None)
            if reuse is not None:
                if reuse.size_gb < rs.volume_size_gb:
                    notes.append(
                        f"{region}: reusing volume {reuse.id} of {reuse.size_gb} GB for slot "
                        f"{slot}; the spec asks {rs.volume_size_gb} GB"
                    )
                volume = VolumePlan(mount.source, rs.volume_size_gb, reuse=reuse.id)
            elif region == spec.primary_region:
                volume = VolumePlan(mount.source, rs.volume_size_gb)
            elif source is not None:
                # A fork is a copy of its source: it cannot be smaller.
                size = max(rs.volume_size_gb, source.size_gb)
                volume = VolumePlan(mount.source, size, fork_from=source.id)
            else:
                volume = VolumePlan(
                    mount.source, rs.volume_size_gb, fork_from_region=spec.primary_region
                )
        create = asm.add_create(
            region,
            wave.index,
            slot,
            params={
                "name": machine_name(spec.app, region, slot),
                "config": desired.config(slot),
                "release": release,
            },
            volume=volume,
            primary_region=spec.primary_region,
            after=[first_create] if first_alone and first_create else (),
            lane=lane,
        )
        first_create = first_create or create

    asm.add_destroys(
        region,
        wave.index,
        [managed[s] for s in managed if s > last],
        destroy_volumes=destroy_volumes,
    )
    return list(range(base + 1, last + 1)), desired.digest if rs.count > 0 else None
