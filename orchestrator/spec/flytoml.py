"""Read the parts of ``fly.toml`` this tool acts on, the way flyctl users already write them.

fly.toml is flyctl's format, so keys flyctl knows but this tool does not act on (``kill_signal``,
``[deploy]``...) are tolerated and listed in :attr:`FlyApp.ignored_keys`; keys that would change
what gets deployed and that this tool cannot honour (``[[services]]``, ``[processes]``, GPUs) are
refused rather than silently dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from orchestrator.errors import ConfigError
from orchestrator.spec.model import CheckSpec, MountSpec, ServiceSpec, VMSize
from orchestrator.spec.regions import validate_region
from orchestrator.spec.sizes import DEFAULT_PRESET, PRESETS, SizeKeys, resolve_vm
from orchestrator.spec.values import (
    MAX_COUNT,
    Table,
    check_app_name,
    check_image,
    check_volume_name,
    describe,
    parse_gb,
    parse_mb,
    read_toml,
    show_key,
)

__all__ = ["FLY_TOML", "FlyApp", "read_fly_toml"]

FLY_TOML = "fly.toml"

_CHECK_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HTTP_PATH = re.compile(r"/[!-~]*")
_HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


_FLY_KNOWN = ("app", "primary_region", "build", "env", "mounts", "vm", "checks", "http_service")
# Keys flyctl knows that do not change what this tool deploys, or that it leaves to flyctl.
_FLY_TOLERATED = (
    "console_command",
    "deploy",
    "experimental",
    "files",
    "host_dedication_id",
    "kill_signal",
    "kill_timeout",
    "metrics",
    "restart",
    "statics",
    "swap_size_mb",
)
_FLY_REFUSED = {
    "services": "declare the app's service with [http_service]",
    "processes": "this tool deploys a single process group; remove [processes]",
}
_BUILD_TOLERATED = (
    "args",
    "build-target",
    "builder",
    "buildpacks",
    "dockerfile",
    "dockerignorefile",
    "ignorefile",
    "settings",
)
_CHECK_KEYS = ("type", "port", "path", "method", "interval", "timeout", "grace_period")
_CHECK_TOLERATED = (
    "headers",
    "kind",
    "processes",
    "protocol",
    "tls_server_name",
    "tls_skip_verify",
)
_VM_FLY_KEYS = SizeKeys(
    preset="vm.size", cpu_kind="vm.cpu_kind", cpus="vm.cpus", memory_mb="vm.memory"
)


def _read_vm(top: Table, ignored: list[str]) -> VMSize:
    entries = top.tables("vm")
    if len(entries) > 1:
        raise ConfigError(
            "only one [[vm]] is supported (this tool deploys one process group); "
            "size regions in regions/<code>.toml",
            where=top.at("vm"),
        )
    if not entries:
        return PRESETS[DEFAULT_PRESET]
    vm = Table(
        entries[0],
        FLY_TOML,
        "vm",
        ("size", "cpu_kind", "cpus", "memory", "memory_mb"),
        tolerated=("processes", "kernel_args", "host_dedication_id", "persist_rootfs"),
        refused={"gpus": "GPU machines", "gpu_kind": "GPU machines"},
        ignored=ignored,
    )
    if vm.has("memory") and vm.has("memory_mb"):
        raise ConfigError("set memory or memory_mb, not both", where=vm.at("memory_mb"))
    memory: int | None = None
    if vm.has("memory"):
        memory = parse_mb(vm.data["memory"], vm.at("memory"))
    keys = _VM_FLY_KEYS
    if vm.has("memory_mb"):
        memory = vm.integer("memory_mb", 1, 10**7, " MB")
        keys = replace(keys, memory_mb="vm.memory_mb")
    return resolve_vm(
        vm.string("size"),
        vm.string("cpu_kind"),
        vm.integer("cpus", 1, 128),
        memory,
        where_prefix=FLY_TOML,
        keys=keys,
    )


def _read_check(table: Table, name: str, *, default_port: int | None) -> CheckSpec:
    if not _CHECK_NAME.fullmatch(name):
        raise ConfigError(
            "not a valid check name: use at most 63 letters, digits, dashes and underscores",
            where=table.here(),
        )
    kind = table.choice("type", ("http", "tcp"))
    if kind is None:
        kind = "http" if default_port is not None else None
    if kind is None:
        raise ConfigError("missing: set type to http or tcp", where=table.at("type"))
    port = table.integer("port", 1, 65535)
    if port is None:
        if default_port is None:
            raise ConfigError(
                "missing: set the internal port the check probes", where=table.at("port")
            )
        port = default_port
    path, method = table.string("path"), table.string("method")
    if kind == "tcp" and (path is not None or method is not None):
        key = "path" if path is not None else "method"
        raise ConfigError("only http checks have a path and a method", where=table.at(key))
    if path is not None and not _HTTP_PATH.fullmatch(path):
        raise ConfigError(
            f"expected a path starting with '/' without spaces, got {path[:60]!r}",
            where=table.at("path"),
        )
    if method is not None:
        method = method.upper()
        if method not in _HTTP_METHODS:
            raise ConfigError(
                f"{method!r} is not an HTTP method: allowed {', '.join(_HTTP_METHODS)}",
                where=table.at("method"),
            )
    interval = table.duration("interval", positive=True, limit_s=3600)
    timeout = table.duration("timeout", positive=True, limit_s=3600)
    grace = table.duration("grace_period", positive=False, limit_s=3600)
    check_type: Literal["http", "tcp"] = "http" if kind == "http" else "tcp"
    return CheckSpec(
        name=name,
        type=check_type,
        port=port,
        path=path if path is not None else "/",
        method=method or "GET",
        interval_s=15.0 if interval is None else interval,
        timeout_s=2.0 if timeout is None else timeout,
        grace_period_s=1.0 if grace is None else grace,
    )


def _read_checks(top: Table, ignored: list[str]) -> list[CheckSpec]:
    section = top.table("checks")
    if section is None:
        return []
    checks = []
    for name, body in section.items():
        where = f"checks.{show_key(name)}"
        if not isinstance(body, dict):
            raise ConfigError(
                f"expected a table ([{where}]), got {describe(body)}", where=f"{FLY_TOML}: {where}"
            )
        table = Table(
            body, FLY_TOML, where, _CHECK_KEYS, tolerated=_CHECK_TOLERATED, ignored=ignored
        )
        checks.append(_read_check(table, name, default_port=None))
    return checks


def _read_service(top: Table, ignored: list[str]) -> tuple[ServiceSpec | None, list[CheckSpec]]:
    body = top.table("http_service")
    if body is None:
        return None, []
    svc = Table(
        body,
        FLY_TOML,
        "http_service",
        (
            "internal_port",
            "force_https",
            "auto_stop_machines",
            "auto_start_machines",
            "min_machines_running",
            "checks",
        ),
        tolerated=("concurrency", "http_options", "processes", "tls_options"),
        ignored=ignored,
    )
    port = svc.integer("internal_port", 1, 65535)
    if port is None:
        raise ConfigError("missing: set the port the app listens on", where=svc.at("internal_port"))
    auto_stop = svc.data.get("auto_stop_machines", "off")
    if isinstance(auto_stop, bool):
        # flyctl's older boolean form: true meant "stop".
        auto_stop = "stop" if auto_stop else "off"
    else:
        auto_stop = svc.choice("auto_stop_machines", ("off", "stop", "suspend")) or "off"
    force_https = svc.boolean("force_https")
    auto_start = svc.boolean("auto_start_machines")
    service = ServiceSpec(
        internal_port=port,
        force_https=True if force_https is None else force_https,
        auto_stop_machines=auto_stop,
        auto_start_machines=True if auto_start is None else auto_start,
        min_machines_running=svc.integer("min_machines_running", 0, MAX_COUNT) or 0,
    )
    checks = []
    for index, entry in enumerate(svc.tables("checks")):
        # Fly names service checks this way in Machine.checks, so gates can match them.
        name = f"servicecheck-{index:02d}-http-{port}"
        table = Table(
            entry,
            FLY_TOML,
            f"http_service.checks[{index + 1}]",
            ("path", "method", "interval", "timeout", "grace_period"),
            tolerated=_CHECK_TOLERATED,
            ignored=ignored,
        )
        checks.append(_read_check(table, name, default_port=port))
    return service, checks


def _read_mount(top: Table, ignored: list[str]) -> MountSpec | None:
    entries = top.tables("mounts")
    if not entries:
        return None
    if len(entries) > 1:
        raise ConfigError(
            "a Fly machine mounts one volume: keep one [[mounts]]", where=top.at("mounts")
        )
    mount = Table(
        entries[0],
        FLY_TOML,
        "mounts",
        ("source", "destination", "initial_size"),
        tolerated=(
            "auto_extend_size_increment",
            "auto_extend_size_limit",
            "auto_extend_size_threshold",
            "processes",
            "scheduled_snapshots",
            "snapshot_retention",
        ),
        ignored=ignored,
    )
    source = mount.string("source")
    if source is None:
        raise ConfigError(
            'missing: name the volume, e.g. source = "data"', where=mount.at("source")
        )
    check_volume_name(source, mount.at("source"))
    dest = mount.string("destination")
    if dest is None:
        raise ConfigError(
            'missing: set where the volume is mounted, e.g. "/data"', where=mount.at("destination")
        )
    parts = dest.split("/")
    if not dest.startswith("/") or dest == "/" or ".." in parts or "." in parts or "\\" in dest:
        raise ConfigError(
            f"expected an absolute path below / without '.' or '..', got {dest[:60]!r}",
            where=mount.at("destination"),
        )
    size = 1
    if mount.has("initial_size"):
        size = parse_gb(mount.data["initial_size"], mount.at("initial_size"))
    return MountSpec(source=source, destination=dest.rstrip("/"), initial_size_gb=size)


def _read_env(top: Table) -> dict[str, str]:
    body = top.table("env")
    if body is None:
        return {}
    env: dict[str, str] = {}
    for key, value in body.items():
        where = f"{FLY_TOML}: env.{show_key(key)}"
        if not _ENV_NAME.fullmatch(key):
            raise ConfigError(
                "not a valid environment variable name: use letters, digits and underscores, "
                "not starting with a digit",
                where=where,
            )
        if isinstance(value, bool):
            env[key] = "true" if value else "false"
        elif isinstance(value, int | float | str):
            env[key] = str(value)
        else:
            raise ConfigError(
                f"expected a string, number or boolean, got {describe(value)}", where=where
            )
        if "\x00" in env[key]:
            raise ConfigError("contains a NUL character", where=where)
    return dict(sorted(env.items()))


@dataclass(frozen=True, slots=True)
class FlyApp:
    """What fly.toml says, validated.

    Attributes:
        app: the app name (after ``FLY_APP_NAME``).
        primary_region: the region that takes writes.
        image: the image (after ``--image``).
        env: ``[env]``, sorted by name.
        mount: the one ``[[mounts]]``, or ``None``.
        vm: the app-wide ``[[vm]]`` size regions start from (``shared-cpu-1x`` when absent).
        checks: ``[checks.*]`` and ``[[http_service.checks]]``, sorted by name.
        service: ``[http_service]``, or ``None``.
        ignored_keys: tolerated keys this tool does not act on (``fly.toml: kill_signal``).
    """

    app: str
    primary_region: str
    image: str
    env: Mapping[str, str]
    mount: MountSpec | None
    vm: VMSize
    checks: tuple[CheckSpec, ...]
    service: ServiceSpec | None
    ignored_keys: tuple[str, ...]


def read_fly_toml(
    root: Path,
    overlay: Mapping[str, str] | None = None,
    *,
    app_override: str | None = None,
    image_override: str | None = None,
) -> FlyApp:
    """Read and validate ``<root>/fly.toml`` (or ``overlay["fly.toml"]``).

    Raises:
        ConfigError: naming ``fly.toml`` and the key, ``FLY_APP_NAME`` or ``--image``.
    """
    ignored: list[str] = []
    top = Table(
        read_toml(root, FLY_TOML, overlay or {}),
        FLY_TOML,
        "",
        _FLY_KNOWN,
        tolerated=_FLY_TOLERATED,
        refused=_FLY_REFUSED,
        ignored=ignored,
    )
    # Settings fill the override from fly.toml when FLY_APP_NAME is unset: a bad name then is
    # fly.toml's, and the error must send the user there, not to a variable they never set.
    if app_override is not None and app_override != top.data.get("app"):
        app = check_app_name(app_override, "FLY_APP_NAME")
    else:
        wanted = 'set the Fly app name (app = "my-app") or FLY_APP_NAME in the environment'
        app = check_app_name(top.required("app", wanted), top.at("app"))

    image: str | None = None
    build = top.table("build")
    if build is not None:
        build_table = Table(
            build, FLY_TOML, "build", ("image",), tolerated=_BUILD_TOLERATED, ignored=ignored
        )
        image = build_table.string("image")
        if image is not None:
            image = check_image(image, build_table.at("image"))
    if image_override is not None:
        image = check_image(image_override, "--image")
    if image is None:
        raise ConfigError(
            "missing: this tool deploys a prebuilt image; set [build] image or pass --image",
            where=f"{FLY_TOML}: build.image",
        )

    primary = top.required("primary_region", 'set the region that takes writes, e.g. "syd"')
    primary = validate_region(primary, top.at("primary_region")).code
    env = _read_env(top)
    if env.get("PRIMARY_REGION", primary) != primary:
        raise ConfigError(
            f"{env['PRIMARY_REGION']!r} disagrees with primary_region = {primary!r}; "
            "remove it (it is set from primary_region)",
            where=f"{FLY_TOML}: env.PRIMARY_REGION",
        )
    mount = _read_mount(top, ignored)
    vm = _read_vm(top, ignored)
    checks = _read_checks(top, ignored)
    service, service_checks = _read_service(top, ignored)
    return FlyApp(
        app=app,
        primary_region=primary,
        image=image,
        env=env,
        mount=mount,
        vm=vm,
        checks=tuple(sorted([*checks, *service_checks], key=lambda c: c.name)),
        service=service,
        ignored_keys=tuple(sorted(ignored)),
    )
