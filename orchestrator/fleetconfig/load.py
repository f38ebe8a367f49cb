"""Load and validate ``fly.toml``, ``regions/<code>.toml`` and ``regions/waves.toml``.

:func:`load_spec` reads the three file kinds under a root directory and returns a
:class:`~orchestrator.fleetconfig.model.DeploySpec`, or raises one :class:`ConfigError` whose
message is a single line naming the file (relative to the root) and the key, and saying what
is allowed. Nothing here touches the network or the clock; the only I/O is reading the files.
fly.toml is read by :mod:`orchestrator.fleetconfig.flytoml`; this module reads the
``regions/`` files, which are this tool's own, so every unknown key there is an error.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any, TypeVar, cast

from orchestrator.errors import ConfigError, ConfigProblems
from orchestrator.fleetconfig.flytoml import FLY_TOML, FlyApp, FlyGroup, read_fly_toml
from orchestrator.fleetconfig.model import (
    DeploySpec,
    DrillObjectives,
    GroupSpec,
    MountSpec,
    OnFailure,
    RegionSpec,
    Role,
    VMSize,
    WaveSpec,
)
from orchestrator.fleetconfig.promql import check_prometheus, read_queries
from orchestrator.fleetconfig.regions import validate_region
from orchestrator.fleetconfig.release import read_release_command
from orchestrator.fleetconfig.sizes import FILE_KEYS, resolve_vm
from orchestrator.fleetconfig.values import (
    DAY_S,
    MAX_COUNT,
    MAX_VOLUME_GB,
    Table,
    describe,
    format_seconds,
    read_toml,
    resolve_max_unavailable,
    show_key,
)

__all__ = [
    "DEFAULT_MAX_UNAVAILABLE",
    "FLY_TOML",
    "ON_FAILURE",
    "REGIONS_DIR",
    "WAVES_TOML",
    "check_pause_after",
    "load_checked_spec",
    "load_spec",
    "primary_roles",
    "spec_digest",
]

T = TypeVar("T")

REGIONS_DIR = "regions"
WAVES_TOML = "regions/waves.toml"
DEFAULT_MAX_UNAVAILABLE = 0.33
"""flyctl's ``--max-unavailable`` default: a third of a region's machines, rounded up."""
ON_FAILURE: tuple[OnFailure, ...] = ("rollback_region", "rollback_wave", "rollback_all", "halt")


# What a [groups.<name>] table of a region file may set for one process group.
_GROUP_KEYS = (
    "count",
    "vm",
    "cpu_kind",
    "cpus",
    "memory_mb",
    "volume_size_gb",
    "max_unavailable",
)
_REGION_KEYS = (*_GROUP_KEYS, "role", "groups")
_SIZE_KEYS = ("vm", "cpu_kind", "cpus", "memory_mb")


class _Collect:
    """Call readers, keeping each `ConfigError` in ``problems`` so all are reported at once."""

    def __init__(self, problems: list[ConfigError]) -> None:
        self.problems = problems

    def __call__(self, read: Callable[..., T], *args: Any) -> T | None:
        try:
            return read(*args)
        except ConfigError as exc:
            self.problems.append(exc)
            return None


def _read_region(
    root: Path,
    code: str,
    *,
    overlay: Mapping[str, str],
    base_vm: VMSize | None,
    mount: MountSpec | None,
    primary: str | None,
    notes: list[str],
    groups: tuple[str, ...] | None = None,
) -> RegionSpec:
    """Read one region file, reporting every problem in it at once.

    ``groups`` are the process groups fly.toml defines (``None`` when it could not be read):
    a ``[groups.<name>]`` table must name one of them.

    Without ``base_vm`` and ``primary`` (fly.toml has problems of its own) the checks that
    depend on them are left out, and the file is read only for its own problems.

    Raises:
        ConfigProblems: one line per problem, each naming the file and the key.
    """
    rel = f"{REGIONS_DIR}/{code}.toml"
    problems: list[ConfigError] = []
    attempt = _Collect(problems)
    table = Table(read_toml(root, rel, overlay), rel, "", _REGION_KEYS, problems=problems)
    named = table.data.get("groups", {})
    if not isinstance(named, dict):
        problems.append(
            ConfigError(
                f"expected tables [groups.<name>], got {describe(named)}", where=table.at("groups")
            )
        )
    elif groups is not None:
        for name, body in named.items():
            where = f"{rel}: groups.{show_key(name)}"
            if name not in groups:
                problems.append(
                    ConfigError(
                        f"{name!r} is not a process group: fly.toml's [processes] defines "
                        f"{', '.join(groups) if len(groups) > 1 else 'none besides ' + groups[0]}",
                        where=where,
                    )
                )
            elif not isinstance(body, dict):
                problems.append(ConfigError(f"expected a table, got {describe(body)}", where=where))
    count = attempt(table.integer, "count", 0, MAX_COUNT)
    if count is None and "count" not in table.data:
        problems.append(
            ConfigError(
                f"missing: set the number of machines (0 to {MAX_COUNT})", where=table.at("count")
            )
        )
    role = attempt(table.choice, "role", ("primary", "replica"))
    expected: Role = "primary" if code == primary else "replica"
    if role is not None and role != expected and primary is not None:
        problems.append(
            ConfigError(
                f"{role!r} disagrees with fly.toml primary_region = {primary!r}: "
                f"this region is the {expected}",
                where=table.at("role"),
            )
        )
    if code == primary and count == 0:
        problems.append(
            ConfigError(
                "the primary region needs at least 1 machine (it takes the writes)",
                where=table.at("count"),
            )
        )
    before = len(problems)
    cpus = attempt(table.integer, "cpus", 1, 128)
    memory = attempt(table.integer, "memory_mb", 1, 10**7, " MB")
    preset = attempt(table.string, "vm")
    kind = attempt(table.string, "cpu_kind")
    vm = None
    # A region that names its preset does not depend on fly.toml's [[vm]].
    if len(problems) == before and (base_vm is not None or preset is not None):
        vm = attempt(
            lambda: resolve_vm(
                preset, kind, cpus, memory, where_prefix=rel, keys=FILE_KEYS, base=base_vm
            )
        )
    volume = attempt(table.integer, "volume_size_gb", 1, MAX_VOLUME_GB, " GB")
    if volume is not None and mount is None:
        notes.append(
            f"{table.at('volume_size_gb')}: not acted on: fly.toml has no [[mounts]], so "
            "machines here get no volume"
        )
        volume = None
    max_unavailable = attempt(
        resolve_max_unavailable,
        table.data.get("max_unavailable", DEFAULT_MAX_UNAVAILABLE),
        count or 0,
        table.at("max_unavailable"),
    )
    if problems or count is None or vm is None or max_unavailable is None:
        raise ConfigProblems(problems)
    return RegionSpec(
        code=code,
        count=count,
        vm=vm,
        volume_size_gb=volume or (mount.initial_size_gb if mount else 0),
        role=expected,
        max_unavailable=max_unavailable,
        source=rel,
    )


def _read_group_region(
    root: Path,
    code: str,
    *,
    overlay: Mapping[str, str],
    group: FlyGroup,
    region: RegionSpec,
    notes: list[str],
) -> RegionSpec:
    """Read one more process group's values in a region file (already read for the default).

    The file's flat keys apply to every group; its ``[groups.<name>]`` table overrides them.
    A table that sets any size key sizes the group on its own, from fly.toml's ``[[vm]]`` for
    the group; otherwise the flat size keys apply to the group's ``[[vm]]``.

    Raises:
        ConfigProblems: one line per problem, each naming the file and the key.
    """
    rel = f"{REGIONS_DIR}/{code}.toml"
    problems: list[ConfigError] = []
    attempt = _Collect(problems)
    data = read_toml(root, rel, overlay)
    named = data.get("groups")
    body = named.get(group.name) if isinstance(named, dict) else None
    own = Table(
        body if isinstance(body, dict) else {},
        rel,
        f"groups.{show_key(group.name)}",
        _GROUP_KEYS,
        problems=problems,
    )
    flat = Table({k: v for k, v in data.items() if k in _GROUP_KEYS}, rel, "", _GROUP_KEYS)
    count = region.count
    if own.has("count"):
        own_count: int | None = attempt(own.integer, "count", 0, MAX_COUNT)
        count = own_count or 0
    source = own if any(own.has(k) for k in _SIZE_KEYS) else flat
    vm = attempt(
        lambda: resolve_vm(
            attempt(source.string, "vm"),
            attempt(source.string, "cpu_kind"),
            attempt(source.integer, "cpus", 1, 128),
            attempt(source.integer, "memory_mb", 1, 10**7, " MB"),
            where_prefix=rel if source is flat else f"{rel}: groups.{show_key(group.name)}",
            keys=FILE_KEYS,
            base=group.vm,
        )
    )
    volume: int | None = None
    if own.has("volume_size_gb"):
        volume = attempt(own.integer, "volume_size_gb", 1, MAX_VOLUME_GB, " GB")
        if volume is not None and group.mount is None:
            notes.append(
                f"{own.at('volume_size_gb')}: not acted on: process group {group.name!r} has no "
                "[[mounts]], so its machines get no volume"
            )
            volume = None
    elif group.mount is not None and flat.has("volume_size_gb"):
        volume = attempt(flat.integer, "volume_size_gb", 1, MAX_VOLUME_GB, " GB")
    budget = own if own.has("max_unavailable") else flat
    max_unavailable = attempt(
        resolve_max_unavailable,
        budget.data.get("max_unavailable", DEFAULT_MAX_UNAVAILABLE),
        count,
        budget.at("max_unavailable"),
    )
    if problems or vm is None or max_unavailable is None:
        raise ConfigProblems(problems)
    return RegionSpec(
        code=code,
        count=count,
        vm=vm,
        volume_size_gb=volume or (group.mount.initial_size_gb if group.mount else 0),
        role=region.role,
        max_unavailable=max_unavailable,
        source=rel,
    )


def _region_codes(root: Path, overlay: Mapping[str, str]) -> list[str]:
    folder = root / REGIONS_DIR
    if not folder.is_dir():
        raise ConfigError(
            f"no {REGIONS_DIR}/ directory in {root}: add one file per region, e.g. "
            f"{REGIONS_DIR}/syd.toml",
            where=f"{REGIONS_DIR}/",
        )
    # Dotfiles are editor leftovers (".#syd.toml", ".syd.toml.swp"), not regions.
    names = {p.name for p in folder.iterdir() if p.suffix == ".toml" and p.is_file()}
    names = {n for n in names if not n.startswith(".")}
    names |= {rel.split("/", 1)[1] for rel in overlay if rel.startswith(f"{REGIONS_DIR}/")}
    codes = []
    for name in sorted(names - {Path(WAVES_TOML).name}):
        code = name.removesuffix(".toml")
        validate_region(code, where=f"{REGIONS_DIR}/{show_key(code)}.toml")
        codes.append(code)
    if not codes:
        raise ConfigError(
            f"no region files: add one per region, e.g. {REGIONS_DIR}/syd.toml",
            where=f"{REGIONS_DIR}/",
        )
    return codes


# ---------------------------------------------------------------------------------------------
# regions/waves.toml

_WAVE_SETTINGS = (
    "bake_time",
    "max_error_rate",
    "max_p95_ms",
    "on_failure",
    "max_concurrency",
    "pause",
    "snapshot_before",
    "query",
)
_DRILL_KEYS = (
    "rto",
    "rpo_records",
    "rpo_seconds",
    "max_error_rate",
    "max_duration",
    "baseline",
    "scale_survivors",
    "max_age",
)


def _wave_settings(table: Table, inherited: WaveSpec) -> WaveSpec:
    bake = table.duration("bake_time", positive=False)
    error_rate = table.number("max_error_rate", 0.0, 1.0)
    p95 = table.number("max_p95_ms", 0.0, 600_000.0, above_low=True)
    on_failure = table.choice("on_failure", ON_FAILURE)
    concurrency = table.integer("max_concurrency", 1, 64)
    pause = table.boolean("pause")
    snapshot = table.boolean("snapshot_before")
    return replace(
        inherited,
        bake_s=inherited.bake_s if bake is None else bake,
        max_error_rate=inherited.max_error_rate if error_rate is None else error_rate,
        max_p95_ms=inherited.max_p95_ms if p95 is None else p95,
        on_failure=cast("OnFailure", on_failure or inherited.on_failure),
        max_concurrency=concurrency or inherited.max_concurrency,
        pause=inherited.pause if pause is None else pause,
        snapshot_before=inherited.snapshot_before if snapshot is None else snapshot,
    )


def _read_drill(top: Table) -> DrillObjectives:
    body = top.table("drill")
    if body is None:
        return DrillObjectives()
    drill = Table(body, WAVES_TOML, "drill", _DRILL_KEYS)
    default = DrillObjectives()
    rto = drill.duration("rto", positive=True)
    max_duration = drill.duration("max_duration", positive=True)
    rpo_records = drill.integer("rpo_records", 0, 10**9)
    rpo_s = drill.number("rpo_seconds", 0.0, DAY_S)
    error_rate = drill.number("max_error_rate", 0.0, 1.0)
    baseline = drill.duration("baseline", positive=True, limit_s=3600.0)
    scale_survivors = drill.boolean("scale_survivors")
    max_age = drill.duration("max_age", positive=True, limit_s=3660 * DAY_S)
    objectives = DrillObjectives(
        rto_s=default.rto_s if rto is None else rto,
        rpo_records=default.rpo_records if rpo_records is None else rpo_records,
        rpo_s=default.rpo_s if rpo_s is None else rpo_s,
        max_error_rate=default.max_error_rate if error_rate is None else error_rate,
        max_duration_s=default.max_duration_s if max_duration is None else max_duration,
        baseline_s=default.baseline_s if baseline is None else baseline,
        scale_survivors=default.scale_survivors if scale_survivors is None else scale_survivors,
        max_age_s=default.max_age_s if max_age is None else max_age,
    )
    if objectives.rto_s > objectives.max_duration_s:
        raise ConfigError(
            f"{format_seconds(objectives.rto_s)} is longer than the whole drill may take "
            f"(max_duration {format_seconds(objectives.max_duration_s)})",
            where=drill.at("rto"),
        )
    return objectives


def _read_waves(
    root: Path, codes: list[str], primary: str, overlay: Mapping[str, str]
) -> tuple[tuple[WaveSpec, ...], DrillObjectives]:
    if WAVES_TOML not in overlay and not (root / WAVES_TOML).exists():
        # No waves file: the primary first, then every other region together.
        others = tuple(c for c in codes if c != primary)
        waves = [WaveSpec(index=1, regions=(primary,))]
        if others:
            waves.append(WaveSpec(index=2, regions=others))
        return tuple(waves), DrillObjectives()
    problems: list[ConfigError] = []
    attempt = _Collect(problems)
    top = Table(
        read_toml(root, WAVES_TOML, overlay),
        WAVES_TOML,
        "",
        ("defaults", "wave", "drill", "notify", "prometheus"),
        problems=problems,
    )
    defaults = WaveSpec(index=0, regions=())
    body = attempt(top.table, "defaults")
    if body is not None:
        table = Table(body, WAVES_TOML, "defaults", _WAVE_SETTINGS, problems=problems)
        defaults = attempt(_wave_settings, table, defaults) or defaults
        queries = read_queries(body, "defaults", defaults.bake_s, problems)
        defaults = replace(defaults, queries=queries or ())
    entries: list[Mapping[str, Any]] = []
    if isinstance(top.data.get("wave"), dict):
        problems.append(
            ConfigError(
                "expected an array of tables: write [[wave]], not [wave]", where=top.at("wave")
            )
        )
    else:
        entries = attempt(top.tables, "wave") or []
        if not entries and "wave" not in top.data:
            problems.append(
                ConfigError(
                    "missing: add at least one [[wave]] with regions = [...]",
                    where=top.at("wave"),
                )
            )
    seen: dict[str, int] = {}
    waves = []
    for index, entry in enumerate(entries, start=1):
        wave = attempt(_read_wave, entry, index, defaults, codes, seen)
        if wave is not None:
            waves.append(_with_queries(wave, entry, index, defaults, problems))
    missing = [c for c in codes if c not in seen]
    # A wave that could not be read may hold the missing region: only say so when all were.
    if missing and entries and len(waves) == len(entries):
        problems.append(
            ConfigError(
                f"{REGIONS_DIR}/{missing[0]}.toml is in no wave: add {missing[0]!r} to the "
                "regions of a [[wave]]",
                where=top.at("wave"),
            )
        )
    drill = attempt(_read_drill, top)
    source = check_prometheus(top.data.get("prometheus"), problems)
    if source is None and "prometheus" not in top.data and any(w.queries for w in waves):
        problems.append(
            ConfigError(
                'PromQL queries need a Prometheus: add [prometheus] with url = "local", "fly" '
                "or the URL of a Prometheus-compatible API",
                where=top.at("prometheus"),
            )
        )
    if problems or drill is None:
        raise ConfigProblems(problems)
    return tuple(waves), drill


def _with_queries(
    wave: WaveSpec,
    entry: Mapping[str, Any],
    index: int,
    defaults: WaveSpec,
    problems: list[ConfigError],
) -> WaveSpec:
    """Give the wave its own queries, or check the inherited ones against its bake time."""
    own = read_queries(entry, f"wave[{index}]", wave.bake_s, problems)
    if own is not None:
        return replace(wave, queries=own)
    for q in wave.queries:
        if q.window_s > wave.bake_s:
            problems.append(
                ConfigError(
                    f"{format_seconds(wave.bake_s)} is shorter than the window of the query "
                    f"{q.name!r} of [defaults] ({format_seconds(q.window_s)}): lengthen "
                    "bake_time or give this wave its own queries",
                    where=f"{WAVES_TOML}: wave[{index}].bake_time",
                )
            )
    return wave


def _read_wave(
    entry: Mapping[str, Any],
    index: int,
    defaults: WaveSpec,
    codes: list[str],
    seen: dict[str, int],
) -> WaveSpec:
    table = Table(entry, WAVES_TOML, f"wave[{index}]", ("regions", *_WAVE_SETTINGS))
    where = table.at("regions")
    regions = table.required("regions", 'list the regions of this wave, e.g. ["syd"]')
    if not isinstance(regions, list):
        raise ConfigError(
            f"expected an array of region codes, got {describe(regions)}", where=where
        )
    if not regions:
        raise ConfigError("empty: a wave needs at least one region", where=where)
    for code in regions:
        validate_region(code, where=where)
        if code in seen:
            earlier = seen[code]
            again = "twice in this wave" if earlier == index else f"already in wave {earlier}"
            raise ConfigError(
                f"{code!r} is {again}: a region deploys in exactly one wave", where=where
            )
        if code not in codes:
            raise ConfigError(
                f"{code!r} has no region file: create {REGIONS_DIR}/{code}.toml or remove it "
                "from this wave",
                where=where,
            )
        seen[code] = index
    return _wave_settings(table, replace(defaults, index=index, regions=tuple(regions)))


# ---------------------------------------------------------------------------------------------
# The whole spec


def _plain(value: Any) -> Any:
    """Turn a spec into JSON-ready values for its digest."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def spec_digest(spec: DeploySpec) -> str:
    """Return the sha256 of the spec's canonical JSON, ignoring where it was loaded from."""
    body = _plain(replace(spec, root="", digest="", ignored_keys=(), notes=()))
    if not spec.groups:
        # A one-group spec digests as it did before groups existed (journals keep their ids).
        del body["groups"]
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_spec(
    root: Path | str,
    *,
    app_override: str | None = None,
    image_override: str | None = None,
    overlay: Mapping[str, str] | None = None,
) -> DeploySpec:
    """Read and validate the fleet's files under ``root`` into a DeploySpec.

    Args:
        root: the directory holding ``fly.toml`` and ``regions/``.
        app_override: ``FLY_APP_NAME``, which wins over fly.toml's ``app``.
        image_override: ``--image``, which wins over ``[build] image``.
        overlay: texts to read instead of files, by path relative to ``root``
            (``{"regions/syd.toml": "..."}``), so an edit can be validated before it is written.

    Raises:
        ConfigProblems: every problem found in fly.toml and the region files, one line each
            naming the file (relative to ``root``) and key, or the override.
    """
    root = Path(root)
    overlay = overlay or {}
    problems: list[ConfigError] = []
    fly: FlyApp | None = None
    try:
        fly = read_fly_toml(root, overlay, app_override=app_override, image_override=image_override)
    except ConfigProblems as exc:
        problems.extend(exc.problems)
    except ConfigError as exc:
        # The file cannot be read at all: nothing else can be checked against it.
        raise ConfigProblems([exc]) from None
    codes = _region_codes(root, overlay)
    primary = fly.primary_region if fly is not None else None
    if fly is not None and primary is None:
        primary = _primary_from_roles(root, codes, overlay, problems)
    elif primary is not None and primary not in codes:
        problems.append(
            ConfigError(
                f"{primary!r} has no region file ({REGIONS_DIR}/{primary}.toml); the fleet has "
                f"{', '.join(codes)}",
                where=f"{FLY_TOML}: primary_region",
            )
        )
        primary = None
    if fly is None:
        # fly.toml has problems; its primary_region, if it names a region file, still lets
        # the region files be checked against it.
        named = read_toml(root, FLY_TOML, overlay).get("primary_region")
        primary = named if isinstance(named, str) and named in codes else None
    notes = list(fly.notes) if fly is not None else []
    regions: dict[str, RegionSpec] = {}
    for code in codes:
        try:
            regions[code] = _read_region(
                root,
                code,
                overlay=overlay,
                base_vm=fly.vm if fly is not None else None,
                mount=fly.mount if fly is not None else None,
                primary=primary,
                notes=notes,
                groups=(fly.process_group, *(g.name for g in fly.groups))
                if fly is not None
                else None,
            )
        except ConfigProblems as exc:
            problems.extend(exc.problems)
        except ConfigError as exc:
            problems.append(exc)
    others: list[GroupSpec] = []
    for group in fly.groups if fly is not None else ():
        group_regions: dict[str, RegionSpec] = {}
        for code, region in regions.items():
            try:
                group_regions[code] = _read_group_region(
                    root, code, overlay=overlay, group=group, region=region, notes=notes
                )
            except ConfigProblems as exc:
                seen = {str(p) for p in problems}
                problems.extend(p for p in exc.problems if str(p) not in seen)
        others.append(
            GroupSpec(
                name=group.name,
                command=group.command,
                mount=group.mount,
                checks=group.checks,
                service=group.service,
                services=group.services,
                regions=group_regions,
            )
        )
    if fly is None or primary is None:
        raise ConfigProblems(problems)
    try:
        waves, drill = _read_waves(root, codes, primary, overlay)
    except ConfigProblems as exc:
        problems.extend(exc.problems)
    except ConfigError as exc:
        problems.append(exc)
    if problems:
        raise ConfigProblems(problems)
    spec = DeploySpec(
        app=fly.app,
        primary_region=primary,
        image=fly.image,
        env=dict(fly.env),
        mount=fly.mount,
        checks=fly.checks,
        service=fly.service,
        services=fly.services,
        process_group=fly.process_group,
        command=fly.command,
        kill_signal=fly.kill_signal,
        kill_timeout_s=fly.kill_timeout_s,
        regions=regions,
        waves=waves,
        drill=drill,
        root=str(root.resolve()),
        ignored_keys=fly.ignored_keys,
        notes=tuple(notes),
        release=read_release_command(root, overlay),
        groups=tuple(others),
    )
    if spec.release is not None:
        # [deploy] is acted on now; name the keys of it that are not.
        ignored = [k for k in spec.ignored_keys if k != f"{FLY_TOML}: deploy"]
        ignored += list(spec.release.ignored_keys)
        deploy_note = f"{FLY_TOML}: deploy: not acted on:"
        kept = [n for n in spec.notes if not n.startswith(deploy_note)]
        kept += [
            f"{key}: not acted on: rollouts follow regions/waves.toml and each region's "
            "max_unavailable"
            for key in spec.release.ignored_keys
        ]
        spec = replace(spec, ignored_keys=tuple(sorted(ignored)), notes=tuple(kept))
    return replace(spec, digest=spec_digest(spec))


def check_pause_after(
    spec: DeploySpec, pause_after: Sequence[str], regions: Sequence[str]
) -> None:
    """Check the regions a deploy pauses after against the fleet and the deployed regions."""
    for region in pause_after:
        if region not in spec.regions:
            known = ", ".join(sorted(spec.regions)) or "none"
            raise ConfigError(
                f"unknown region {region!r}; the fleet has {known}", where="--pause-after"
            )
        if regions and region not in regions:
            raise ConfigError(
                f"{region!r} is not deployed by this run ({', '.join(regions)})",
                where="--pause-after",
            )


def load_checked_spec(
    root: Path,
    *,
    app: str | None = None,
    regions: Sequence[str] = (),
    image: str | None = None,
) -> DeploySpec:
    """Load the spec and check the command's regions and image against it (no network call).

    Raises:
        ConfigError: a bad file or key, an unknown ``--region``, an empty ``--image``.
    """
    if image is not None and not image.strip():
        raise ConfigError("the image reference is empty", where="--image")
    spec = load_spec(root, app_override=app, image_override=image)
    unknown = [r for r in regions if r not in spec.regions]
    if unknown:
        known = ", ".join(sorted(spec.regions)) or "none"
        raise ConfigError(
            f"unknown region {unknown[0]!r}; the fleet has {known} (regions/*.toml)",
            where="--region",
        )
    return spec


def primary_roles(
    root: Path, codes: Sequence[str], overlay: Mapping[str, str] | None = None
) -> list[str]:
    """Return the regions among ``codes`` whose file says ``role = "primary"``.

    A file that cannot be read is left out: it is reported when read for the region itself.
    """
    found = []
    for code in codes:
        try:
            data = read_toml(root, f"{REGIONS_DIR}/{code}.toml", overlay or {})
        except ConfigError:
            continue
        if data.get("role") == "primary":
            found.append(code)
    return found


def _primary_from_roles(
    root: Path, codes: list[str], overlay: Mapping[str, str], problems: list[ConfigError]
) -> str | None:
    """Return the one region whose file says ``role = "primary"`` (fly.toml left it out)."""
    found = primary_roles(root, codes, overlay)
    if len(found) == 1:
        return found[0]
    if not found:
        problems.append(
            ConfigError(
                'missing: set primary_region, or role = "primary" in one regions/<code>.toml',
                where=f"{FLY_TOML}: primary_region",
            )
        )
    else:
        problems.append(
            ConfigError(
                f'{len(found)} region files say role = "primary" ({", ".join(found)}): keep '
                "one, or set primary_region in fly.toml",
                where=f"{FLY_TOML}: primary_region",
            )
        )
    return None
