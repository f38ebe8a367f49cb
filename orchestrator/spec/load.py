"""Load and validate ``fly.toml``, ``regions/<code>.toml`` and ``regions/waves.toml``.

:func:`load_spec` reads the three file kinds under a root directory and returns a
:class:`~orchestrator.spec.model.DeploySpec`, or raises one :class:`ConfigError` whose message is
a single line naming the file (relative to the root) and the key, and saying what is allowed.
Nothing here touches the network or the clock; the only I/O is reading the files. fly.toml is
read by :mod:`orchestrator.spec.flytoml`; this module reads the ``regions/`` files, which are this
tool's own, so every unknown key there is an error.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any, cast

from orchestrator.errors import ConfigError
from orchestrator.spec.flytoml import FLY_TOML, read_fly_toml
from orchestrator.spec.model import (
    DeploySpec,
    DrillObjectives,
    MountSpec,
    OnFailure,
    RegionSpec,
    Role,
    VMSize,
    WaveSpec,
)
from orchestrator.spec.regions import validate_region
from orchestrator.spec.sizes import FILE_KEYS, resolve_vm
from orchestrator.spec.values import (
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
    "load_spec",
    "spec_digest",
]

REGIONS_DIR = "regions"
WAVES_TOML = "regions/waves.toml"
DEFAULT_MAX_UNAVAILABLE = 0.33
"""flyctl's ``--max-unavailable`` default: a third of a region's machines, rounded up."""
ON_FAILURE: tuple[OnFailure, ...] = ("rollback_region", "rollback_wave", "rollback_all", "halt")


_REGION_KEYS = (
    "count",
    "vm",
    "cpu_kind",
    "cpus",
    "memory_mb",
    "volume_size_gb",
    "max_unavailable",
    "role",
)


def _read_region(
    root: Path,
    code: str,
    *,
    overlay: Mapping[str, str],
    base_vm: VMSize,
    mount: MountSpec | None,
    primary: str,
) -> RegionSpec:
    rel = f"{REGIONS_DIR}/{code}.toml"
    table = Table(read_toml(root, rel, overlay), rel, "", _REGION_KEYS)
    count = table.integer("count", 0, MAX_COUNT)
    if count is None:
        raise ConfigError(
            f"missing: set the number of machines (0 to {MAX_COUNT})", where=table.at("count")
        )
    role = table.choice("role", ("primary", "replica"))
    expected: Role = "primary" if code == primary else "replica"
    if role is not None and role != expected:
        raise ConfigError(
            f"{role!r} disagrees with fly.toml primary_region = {primary!r}: "
            f"this region is the {expected}",
            where=table.at("role"),
        )
    if code == primary and count == 0:
        raise ConfigError(
            "the primary region needs at least 1 machine (it takes the writes)",
            where=table.at("count"),
        )
    vm = resolve_vm(
        table.string("vm"),
        table.string("cpu_kind"),
        table.integer("cpus", 1, 128),
        table.integer("memory_mb", 1, 10**7, " MB"),
        where_prefix=rel,
        keys=FILE_KEYS,
        base=base_vm,
    )
    volume = table.integer("volume_size_gb", 1, MAX_VOLUME_GB, " GB")
    if volume is not None and mount is None:
        raise ConfigError(
            "fly.toml has no [[mounts]], so machines here get no volume: remove volume_size_gb",
            where=table.at("volume_size_gb"),
        )
    max_unavailable = resolve_max_unavailable(
        table.data.get("max_unavailable", DEFAULT_MAX_UNAVAILABLE),
        count,
        table.at("max_unavailable"),
    )
    return RegionSpec(
        code=code,
        count=count,
        vm=vm,
        volume_size_gb=volume or (mount.initial_size_gb if mount else 0),
        role=expected,
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
)
_DRILL_KEYS = (
    "rto",
    "rpo_records",
    "rpo_seconds",
    "max_error_rate",
    "max_duration",
    "baseline",
    "scale_survivors",
)


def _wave_settings(table: Table, inherited: WaveSpec) -> WaveSpec:
    bake = table.duration("bake_time", positive=False)
    error_rate = table.number("max_error_rate", 0.0, 1.0)
    p95 = table.number("max_p95_ms", 0.0, 600_000.0, above_low=True)
    on_failure = table.choice("on_failure", ON_FAILURE)
    concurrency = table.integer("max_concurrency", 1, 64)
    pause = table.boolean("pause")
    return replace(
        inherited,
        bake_s=inherited.bake_s if bake is None else bake,
        max_error_rate=inherited.max_error_rate if error_rate is None else error_rate,
        max_p95_ms=inherited.max_p95_ms if p95 is None else p95,
        on_failure=cast("OnFailure", on_failure or inherited.on_failure),
        max_concurrency=concurrency or inherited.max_concurrency,
        pause=inherited.pause if pause is None else pause,
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
    objectives = DrillObjectives(
        rto_s=default.rto_s if rto is None else rto,
        rpo_records=default.rpo_records if rpo_records is None else rpo_records,
        rpo_s=default.rpo_s if rpo_s is None else rpo_s,
        max_error_rate=default.max_error_rate if error_rate is None else error_rate,
        max_duration_s=default.max_duration_s if max_duration is None else max_duration,
        baseline_s=default.baseline_s if baseline is None else baseline,
        scale_survivors=default.scale_survivors if scale_survivors is None else scale_survivors,
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
    top = Table(
        read_toml(root, WAVES_TOML, overlay),
        WAVES_TOML,
        "",
        ("defaults", "wave", "drill", "notify"),
    )
    defaults = WaveSpec(index=0, regions=())
    body = top.table("defaults")
    if body is not None:
        defaults = _wave_settings(Table(body, WAVES_TOML, "defaults", _WAVE_SETTINGS), defaults)
    if isinstance(top.data.get("wave"), dict):
        raise ConfigError(
            "expected an array of tables: write [[wave]], not [wave]", where=top.at("wave")
        )
    entries = top.tables("wave")
    if not entries:
        raise ConfigError(
            "missing: add at least one [[wave]] with regions = [...]", where=top.at("wave")
        )
    seen: dict[str, int] = {}
    waves = []
    for index, entry in enumerate(entries, start=1):
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
        waves.append(_wave_settings(table, replace(defaults, index=index, regions=tuple(regions))))
    missing = [c for c in codes if c not in seen]
    if missing:
        raise ConfigError(
            f"{REGIONS_DIR}/{missing[0]}.toml is in no wave: add {missing[0]!r} to the regions "
            "of a [[wave]]",
            where=top.at("wave"),
        )
    return tuple(waves), _read_drill(top)


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
    body = _plain(replace(spec, root="", digest="", ignored_keys=()))
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
        ConfigError: one line naming the file (relative to ``root``) and key, or the override.
    """
    root = Path(root)
    overlay = overlay or {}
    fly = read_fly_toml(root, overlay, app_override=app_override, image_override=image_override)
    codes = _region_codes(root, overlay)
    primary = fly.primary_region
    if primary not in codes:
        raise ConfigError(
            f"{primary!r} has no region file ({REGIONS_DIR}/{primary}.toml); the fleet has "
            f"{', '.join(codes)}",
            where=f"{FLY_TOML}: primary_region",
        )
    regions = {
        code: _read_region(
            root, code, overlay=overlay, base_vm=fly.vm, mount=fly.mount, primary=primary
        )
        for code in codes
    }
    waves, drill = _read_waves(root, codes, primary, overlay)
    spec = DeploySpec(
        app=fly.app,
        primary_region=primary,
        image=fly.image,
        env=dict(fly.env),
        mount=fly.mount,
        checks=fly.checks,
        service=fly.service,
        regions=regions,
        waves=waves,
        drill=drill,
        root=str(root.resolve()),
        ignored_keys=fly.ignored_keys,
    )
    return replace(spec, digest=spec_digest(spec))
