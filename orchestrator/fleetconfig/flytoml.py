"""Read ``fly.toml`` the way flyctl reads it, and say what this tool does with every key.

fly.toml is flyctl's format, and operators' files use all of its forms: flyctl's aliases
(``[mount]``, ``[[compute]]``), a single table where an array of tables is usual, numbers where
strings are usual (``port = "8080"``, ``interval = 10000`` in milliseconds, ``initial_size = 3``),
old shapes (``concurrency = "20,25"``, ``[[processes]]`` with ``name``/``command``, ``env`` as a
list of tables). They are all accepted here.

Every key is either acted on or listed in :attr:`FlyApp.notes` with the reason it is not; only
what flyctl itself refuses, or what this tool cannot deploy faithfully, is an error. All the
problems of a file are reported together (:class:`~orchestrator.errors.ConfigProblems`), one
line each naming ``fly.toml`` and the key.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from orchestrator.errors import ConfigError, ConfigProblems
from orchestrator.fleetconfig.model import (
    CheckSpec,
    MountSpec,
    PortSpec,
    ServiceCheckSpec,
    ServiceSpec,
    VMSize,
)
from orchestrator.fleetconfig.regions import validate_region
from orchestrator.fleetconfig.sizes import DEFAULT_PRESET, PRESETS, SizeKeys, resolve_vm
from orchestrator.fleetconfig.values import (
    MAX_COUNT,
    Table,
    check_app_name,
    check_image,
    check_volume_name,
    describe,
    parse_duration,
    parse_gb,
    parse_mb,
    read_toml,
    show_key,
)

__all__ = ["DEFAULT_GROUP", "FLY_TOML", "FlyApp", "FlyGroup", "read_fly_toml"]

FLY_TOML = "fly.toml"
DEFAULT_GROUP = "app"
"""flyctl's process group when fly.toml has no ``[processes]``."""

T = TypeVar("T")

_CHECK_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_GROUP_NAME = re.compile(r"[a-z0-9_-]{1,63}")
_HTTP_PATH = re.compile(r"/[!-~]*")
_HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_HANDLERS = ("http", "tls", "pg_tls", "proxy_proto", "edge_http")

# Top-level keys acted on (with their flyctl aliases), and those read but left to flyctl.
_TOP_KNOWN = (
    "app",
    "primary_region",
    "kill_signal",
    "kill_timeout",
    "build",
    "env",
    "processes",
    "mounts",
    "mount",
    "vm",
    "compute",
    "computes",
    "checks",
    "http_service",
    "services",
)
_TOP_NOT_ACTED = {
    "swap_size_mb": "swap is not configured; machines run without swap",
    "console_command": "used by `fly console` only",
    "deploy": "rollouts follow regions/waves.toml and each region's max_unavailable",
    "experimental": "experimental settings are not sent to machines",
    "files": "files are not written into machines",
    "metrics": "Fly's metrics scraping is not configured",
    "metric": "Fly's metrics scraping is not configured",
    "restart": "machines restart on failure, at most 10 times (flyctl's default policy)",
    "statics": "the Fly proxy serves no static files for this app",
    "host_dedication_id": "machines are placed on shared hosts",
    "machine_checks": "machine checks (test machines) are not run",
}
_TOP_REFUSED = {
    "machine_config": "a machine config file replaces fly.toml's settings; deploy it with flyctl",
    "container": "multi-container machines; deploy them with flyctl",
}
_BUILD_NOT_ACTED = {
    key: "this tool deploys prebuilt images and does not build"
    for key in (
        "args",
        "build-target",
        "build_target",
        "builder",
        "builtin",
        "buildpacks",
        "compose",
        "compression",
        "compression_level",
        "dockerfile",
        "dockerignorefile",
        "ignorefile",
        "settings",
    )
}
_CHECK_NOT_ACTED = {
    "kind": "checks run while the machine runs (kind = readiness)",
}
_HTTP_CHECK_KEYS = (
    "interval",
    "timeout",
    "grace_period",
    "method",
    "path",
    "protocol",
    "tls_skip_verify",
    "tls_server_name",
    "headers",
)
_MOUNT_NOT_ACTED = {
    "auto_extend_size_increment": "volumes are not extended automatically",
    "auto_extend_size_limit": "volumes are not extended automatically",
    "auto_extend_size_threshold": "volumes are not extended automatically",
    "scheduled_snapshots": "volume snapshots keep Fly's defaults",
    "snapshot_retention": "volume snapshots keep Fly's defaults",
}
_VM_NOT_ACTED = {
    "kernel_args": "kernel arguments are not sent",
    "host_dedication_id": "machines are placed on shared hosts",
    "persist_rootfs": "the root file system is not persisted",
}
_SERVICE_NOT_ACTED = {
    "machine_checks": "machine checks (test machines) are not run",
}
_VM_FLY_KEYS = SizeKeys(
    preset="vm.size", cpu_kind="vm.cpu_kind", cpus="vm.cpus", memory_mb="vm.memory"
)


@dataclass(slots=True)
class _Reading:
    """What one reading of fly.toml collects: problems, notes, keys not acted on."""

    problems: list[ConfigError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def attempt(self, read: Callable[..., T], *args: Any) -> T | None:
        """Run ``read(*args)``; record a ConfigError and return ``None``, so reading goes on."""
        try:
            return read(*args)
        except ConfigProblems as exc:
            self.problems.extend(exc.problems)
        except ConfigError as exc:
            self.problems.append(exc)
        return None

    def problem(self, message: str, where: str) -> None:
        self.problems.append(ConfigError(message, where=where))

    def table(
        self,
        data: Mapping[str, Any],
        path: str,
        known: tuple[str, ...],
        not_acted: Mapping[str, str] | None = None,
        refused: Mapping[str, str] | None = None,
    ) -> Table:
        """Open a table; unknown keys become problems, keys not acted on become notes."""
        not_acted = not_acted or {}
        table = Table(
            data,
            FLY_TOML,
            path,
            known,
            tolerated=tuple(not_acted),
            refused=refused,
            ignored=None,
            problems=self.problems,
        )
        for key in data:
            reason = not_acted.get(key)
            if key in known or reason is None:
                continue
            self.ignored.append(table.at(key))
            if reason:
                self.notes.append(f"{table.at(key)}: not acted on: {reason}")
        return table


def _as_tables(value: object, where: str) -> list[Mapping[str, Any]]:
    """Return a table or an array of tables as a list, as flyctl accepts both."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return value
    raise ConfigError(f"expected a table or an array of tables, got {describe(value)}", where=where)


def _strings(value: object, where: str) -> tuple[str, ...]:
    """Read ``processes``-style values: a string or a list of strings."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"expected a string or a list of strings, got {describe(value)}", where=where)


def _int_value(value: object, where: str, low: int, high: int) -> int:
    """Read a whole number written as a number or, as flyctl allows, a numeric string."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or not low <= number <= high:
        raise ConfigError(
            f"expected a whole number from {low} to {high}, got {describe(value)}", where=where
        )
    return number


def _duration(table: Table, key: str, number_unit_s: float, limit_s: float) -> float | None:
    """Read a duration: a Go duration string, or a number in ``number_unit_s`` as flyctl does."""
    if key not in table.data:
        return None
    value = table.data[key]
    where = table.at(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value) * number_unit_s
    else:
        seconds = parse_duration(value, where)
    if seconds < 0 or seconds > limit_s:
        raise ConfigError(
            f"expected a duration from 0s to {limit_s:g}s, got {describe(value)}", where=where
        )
    return round(seconds, 9)


def _headers(table: Table) -> tuple[tuple[str, str], ...]:
    """Read check headers: a table of name = value, or flyctl's old list of {name, value}."""
    value = table.data.get("headers")
    if value is None:
        return ()
    where = table.at("headers")
    pairs: dict[str, str] = {}
    if isinstance(value, dict):
        for name, raw in value.items():
            pairs[str(name)] = raw if isinstance(raw, str) else json.dumps(raw)
    elif isinstance(value, list) and all(isinstance(v, dict) and "name" in v for v in value):
        for item in value:
            raw = item.get("value", "")
            pairs[str(item["name"])] = raw if isinstance(raw, str) else json.dumps(raw)
    else:
        raise ConfigError(
            f'expected a table of header = "value", got {describe(value)}', where=where
        )
    for name, text in pairs.items():
        if re.search(r"[\x00-\x1f\x7f]", name + text):
            raise ConfigError(f"header {name!r} contains a control character", where=where)
    return tuple(sorted(pairs.items()))


def _http_fields(table: Table) -> tuple[str | None, str | None]:
    path, method = table.string("path"), table.string("method")
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
    return path, method


# ---------------------------------------------------------------------------------------------
# Sections


def _read_env(top: Table, r: _Reading) -> dict[str, str]:
    raw = top.data.get("env")
    if raw is None:
        return {}
    # flyctl also reads [[env]] (a list of tables), merged in order.
    tables = r.attempt(lambda: _as_tables(raw, top.at("env"))) or []
    env: dict[str, str] = {}
    for body in tables:
        for key, value in body.items():
            where = f"{FLY_TOML}: env.{show_key(key)}"
            if not _ENV_NAME.fullmatch(key):
                r.problem(
                    "not a valid environment variable name: use letters, digits and "
                    "underscores, not starting with a digit",
                    where,
                )
                continue
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, int | float | str):
                text = str(value)
            else:
                r.problem(f"expected a string, number or boolean, got {describe(value)}", where)
                continue
            if "\x00" in text:
                r.problem("contains a NUL character", where)
                continue
            env[key] = text
    return dict(sorted(env.items()))


def _read_processes(top: Table, r: _Reading) -> dict[str, tuple[str, ...]]:
    """Return group name → command (argv; empty for the image's own command)."""
    raw = top.data.get("processes")
    where = top.at("processes")
    if raw is None or raw == [] or raw == {}:
        return {}
    commands: dict[str, object] = {}
    if isinstance(raw, dict):
        commands = dict(raw)
    elif isinstance(raw, list) and all(isinstance(v, dict) for v in raw):
        # flyctl's old form: [[processes]] with name and command.
        for index, item in enumerate(raw, start=1):
            if "name" not in item:
                r.problem("missing: each [[processes]] needs a name", f"{where}[{index}].name")
                continue
            commands[str(item["name"])] = item.get("command", "")
    else:
        r.problem(f'expected a table of group = "command", got {describe(raw)}', where)
        return {}
    groups: dict[str, tuple[str, ...]] = {}
    for name, command in commands.items():
        at = f"{where}.{show_key(name)}"
        if not _GROUP_NAME.fullmatch(name):
            r.problem(
                "not a valid process group name: use lowercase letters, digits, dashes and "
                "underscores (at most 63)",
                at,
            )
            continue
        if isinstance(command, list) and all(isinstance(c, str) for c in command):
            groups[name] = tuple(command)
            continue
        if not isinstance(command, str):
            r.problem(f"expected a command string, got {describe(command)}", at)
            continue
        try:
            groups[name] = tuple(shlex.split(command))
        except ValueError as exc:
            r.problem(f"cannot split the command as a shell would: {exc}", at)
    return groups


def _applies(
    table: Table, r: _Reading, group: str, groups: Mapping[str, object], *, default: str
) -> bool:
    """Tell whether a section with ``processes = [...]`` applies to ``group`` (flyctl's rule).

    A section without ``processes`` applies to the default group only.
    """
    if "processes" not in table.data:
        return group == default
    names = r.attempt(lambda: _strings(table.data["processes"], table.at("processes")))
    if names is None:
        return False
    known = set(groups) or {DEFAULT_GROUP}
    for name in names:
        if name not in known:
            r.problem(
                f"{name!r} is not a process group: [processes] defines {', '.join(sorted(known))}",
                table.at("processes"),
            )
    return not names or group in names


def _read_vm(
    top: Table, r: _Reading, group: str, groups: Mapping[str, object], default: str
) -> VMSize:
    entries: list[tuple[str, Mapping[str, Any]]] = []
    for key in ("vm", "compute", "computes"):
        if key in top.data:
            found = r.attempt(_as_tables, top.data[key], top.at(key))
            entries += [(key, e) for e in found or []]
    # flyctl's choice: the [[vm]] naming the group, else the one naming no group.
    named: list[tuple[str, Table]] = []
    general: list[tuple[str, Table]] = []
    for index, (key, body) in enumerate(entries, start=1):
        path = key if len(entries) == 1 else f"{key}[{index}]"
        vm = r.table(
            body,
            path,
            ("size", "cpu_kind", "cpus", "memory", "memory_mb", "processes"),
            _VM_NOT_ACTED,
            refused={
                "gpus": "GPU machines",
                "gpu_kind": "GPU machines",
            },
        )
        if "processes" in body:
            names = r.attempt(_strings, vm.data["processes"], vm.at("processes"))
            known = set(groups) or {DEFAULT_GROUP}
            for name in names or ():
                if name not in known:
                    r.problem(
                        f"{name!r} is not a process group: [processes] defines "
                        f"{', '.join(sorted(known))}",
                        vm.at("processes"),
                    )
            if names and group in names:
                named.append((path, vm))
            elif not names:
                general.append((path, vm))
        else:
            general.append((path, vm))
    chosen = named or general
    if len(chosen) > 1:
        r.problem(
            f"{len(chosen)} [[vm]] sections apply to process group {group!r}; keep one "
            "(name the group in processes = [...] to size groups apart)",
            top.at("vm"),
        )
    if not chosen:
        return PRESETS[DEFAULT_PRESET]
    path, vm = chosen[0]
    keys = replace(
        _VM_FLY_KEYS,
        preset=f"{path}.size",
        cpu_kind=f"{path}.cpu_kind",
        cpus=f"{path}.cpus",
        memory_mb=f"{path}.memory",
    )

    def size() -> VMSize:
        if vm.has("memory") and vm.has("memory_mb"):
            raise ConfigError("set memory or memory_mb, not both", where=vm.at("memory_mb"))
        memory: int | None = None
        size_keys = keys
        if vm.has("memory"):
            memory = parse_mb(vm.data["memory"], vm.at("memory"))
        if vm.has("memory_mb"):
            memory = _int_value(vm.data["memory_mb"], vm.at("memory_mb"), 1, 10**7)
            size_keys = replace(keys, memory_mb=f"{path}.memory_mb")
        cpus = vm.data.get("cpus")
        return resolve_vm(
            vm.string("size"),
            vm.string("cpu_kind"),
            None if cpus is None else _int_value(cpus, vm.at("cpus"), 1, 128),
            memory,
            where_prefix=FLY_TOML,
            keys=size_keys,
        )

    return r.attempt(size) or PRESETS[DEFAULT_PRESET]


def _read_top_check(r: _Reading, body: object, name: str, where: str) -> CheckSpec | None:
    if not isinstance(body, dict):
        r.problem(f"expected a table ([{where}]), got {describe(body)}", f"{FLY_TOML}: {where}")
        return None
    table = r.table(
        body,
        where,
        ("type", "port", "processes", *_HTTP_CHECK_KEYS),
        _CHECK_NOT_ACTED,
    )
    before = len(r.problems)
    if not _CHECK_NAME.fullmatch(name):
        r.problem(
            "not a valid check name: use at most 63 letters, digits, dashes and underscores",
            table.here(),
        )
    kind = r.attempt(lambda: table.choice("type", ("http", "tcp")))
    if kind is None and "type" not in table.data:
        r.problem("missing: set type to http or tcp", table.at("type"))
    port = r.attempt(lambda: _port(table, "port"))
    if port is None and "port" not in table.data:
        r.problem("missing: set the internal port the check probes", table.at("port"))
    http = r.attempt(lambda: _http_fields(table))
    if kind == "tcp":
        for key in ("path", "method", "protocol", "headers", "tls_skip_verify", "tls_server_name"):
            if key in table.data:
                r.problem("only http checks have this setting", table.at(key))
    # flyctl refuses intervals under 2s and timeouts over 60s for top-level checks.
    interval = r.attempt(lambda: _duration(table, "interval", 1e-3, 3600))
    if interval is not None and interval < 2:
        r.problem(
            f"{interval:g}s is too short: Fly's minimum check interval is 2s",
            table.at("interval"),
        )
    timeout = r.attempt(lambda: _duration(table, "timeout", 1e-3, 60))
    if timeout == 0:
        r.problem("expected a duration above 0s", table.at("timeout"))
    grace = r.attempt(lambda: _duration(table, "grace_period", 1e-3, 3600))
    headers = r.attempt(lambda: _headers(table)) or ()
    if len(r.problems) > before or kind is None or port is None:
        return None
    path, method = http or (None, None)
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
        headers=headers,
    )


def _read_checks(
    top: Table, r: _Reading, group: str, groups: Mapping[str, object], default: str
) -> list[CheckSpec]:
    raw = top.data.get("checks")
    if raw is None:
        return []
    entries: list[tuple[str, object, str]] = []
    if isinstance(raw, dict):
        entries = [(name, body, f"checks.{show_key(name)}") for name, body in raw.items()]
    elif isinstance(raw, list) and all(isinstance(v, dict) for v in raw):
        # flyctl's array form: [[checks]] with a name each.
        for index, item in enumerate(raw, start=1):
            name = item.get("name")
            if not isinstance(name, str):
                r.problem("missing: each [[checks]] needs a name", f"{top.at('checks')}[{index}]")
                continue
            body = {k: v for k, v in item.items() if k != "name"}
            entries.append((name, body, f"checks[{index}]"))
    else:
        r.problem(f"expected a table ([checks.<name>]), got {describe(raw)}", top.at("checks"))
        return []
    checks = []
    for name, raw_body, where in entries:
        check = _read_top_check(r, raw_body, name, where)
        if check is None or not isinstance(raw_body, dict):
            continue
        probe = Table(raw_body, FLY_TOML, where, tuple(raw_body))
        if _applies(probe, r, group, groups, default=default):
            checks.append(check)
    return sorted(checks, key=lambda c: c.name)


def _port(table: Table, key: str) -> int | None:
    value = table.data.get(key)
    return None if value is None else _int_value(value, table.at(key), 1, 65535)


def _read_service_check(
    r: _Reading, body: Mapping[str, Any], path: str, kind: Literal["http", "tcp"]
) -> ServiceCheckSpec | None:
    keys = _HTTP_CHECK_KEYS if kind == "http" else ("interval", "timeout", "grace_period")
    # flyctl's service checks have no port (they probe internal_port) and no type: the
    # section says which kind. A type that agrees is harmless.
    table = r.table(body, path, (*keys, "type", "port"), {})
    before = len(r.problems)
    if "type" in body and body["type"] != kind:
        r.problem(f"this is a {kind} check; remove type", table.at("type"))
    if "port" in body:
        r.notes.append(
            f"{table.at('port')}: not acted on: service checks probe the service's internal_port"
        )
    values: dict[str, float | None] = {}
    for key in ("interval", "timeout", "grace_period"):
        seconds = r.attempt(_duration, table, key, 1e-3, 3600)
        if seconds is not None and (seconds > 60 or (key != "grace_period" and seconds < 1)):
            # flyctl warns and Fly clamps these to 1s..1m; say so rather than fail.
            r.notes.append(
                f"{table.at(key)}: {seconds:g}s is outside 1s..60s; Fly clamps it to that range"
            )
        values[key] = seconds
    http: tuple[str | None, str | None] | None = (None, None)
    protocol = skip = server = None
    headers: tuple[tuple[str, str], ...] = ()
    if kind == "http":
        http = r.attempt(lambda: _http_fields(table))
        protocol = r.attempt(lambda: table.choice("protocol", ("http", "https")))
        skip = r.attempt(lambda: table.boolean("tls_skip_verify"))
        server = r.attempt(lambda: table.string("tls_server_name"))
        headers = r.attempt(lambda: _headers(table)) or ()
    if len(r.problems) > before:
        return None
    path_, method = http or (None, None)
    return ServiceCheckSpec(
        type=kind,
        interval_s=values["interval"],
        timeout_s=values["timeout"],
        grace_period_s=values["grace_period"],
        method=method,
        path=path_,
        protocol=protocol,
        tls_skip_verify=skip,
        tls_server_name=server,
        headers=headers,
    )


def _autostop(table: Table, r: _Reading) -> str | None:
    value = table.data.get("auto_stop_machines")
    if value is None:
        return None
    if isinstance(value, bool):
        # flyctl's older boolean form: true meant "stop".
        return "stop" if value else "off"
    return r.attempt(lambda: table.choice("auto_stop_machines", ("off", "stop", "suspend")))


def _concurrency(table: Table, r: _Reading) -> str:
    value = table.data.get("concurrency")
    if value is None:
        return ""
    where = table.at("concurrency")
    if isinstance(value, str):
        # flyctl's old form: "soft,hard".
        found = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*", value)
        if not found:
            r.problem(f'expected "soft,hard" or a table, got {describe(value)}', where)
            return ""
        body: dict[str, Any] = {
            "type": "requests",
            "soft_limit": int(found.group(1)),
            "hard_limit": int(found.group(2)),
        }
    elif isinstance(value, dict):
        conc = r.table(value, f"{table.path}.concurrency", ("type", "soft_limit", "hard_limit"))
        body = {}
        kind = r.attempt(lambda: conc.choice("type", ("connections", "requests")))
        if kind is not None:
            body["type"] = kind
        for key in ("soft_limit", "hard_limit"):
            if key in value:
                number = r.attempt(_int_value, value[key], conc.at(key), 0, 10**7)
                if number is not None:
                    body[key] = number
        soft, hard = body.get("soft_limit"), body.get("hard_limit")
        if soft is not None and hard is not None and soft > hard:
            r.problem(f"soft_limit {soft} is above hard_limit {hard}", conc.at("soft_limit"))
    else:
        r.problem(f"expected a table, got {describe(value)}", where)
        return ""
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def _read_ports(svc: Table, r: _Reading) -> tuple[PortSpec, ...]:
    raw = svc.data.get("ports")
    if raw is None or raw == []:
        return ()
    tables = r.attempt(lambda: _as_tables(raw, svc.at("ports"))) or []
    ports = []
    for index, body in enumerate(tables, start=1):
        path = f"{svc.path}.ports[{index}]"
        table = r.table(
            body,
            path,
            (
                "port",
                "start_port",
                "end_port",
                "handlers",
                "force_https",
                "tls_options",
                "http_options",
                "proxy_proto_options",
            ),
        )
        port = r.attempt(_port, table, "port")
        start = r.attempt(_port, table, "start_port")
        end = r.attempt(_port, table, "end_port")
        if port is None and (start is None or end is None) and "port" not in body:
            r.problem("missing: set port, or start_port and end_port for a range", table.at("port"))
        if start is not None and end is not None and start > end:
            r.problem(f"start_port {start} is above end_port {end}", table.at("start_port"))
        handlers = r.attempt(_strings, table.data.get("handlers", []), table.at("handlers"))
        for handler in handlers or ():
            if handler not in _HANDLERS:
                r.problem(
                    f"{handler!r} is not a Fly proxy handler: allowed {', '.join(_HANDLERS)}",
                    table.at("handlers"),
                )
        force = r.attempt(table.boolean, "force_https")
        options: dict[str, Any] = {}
        for key in ("tls_options", "http_options", "proxy_proto_options"):
            if key in body:
                if isinstance(body[key], dict):
                    options[key] = body[key]
                else:
                    r.problem(f"expected a table, got {describe(body[key])}", table.at(key))
        ports.append(
            PortSpec(
                port=port,
                start_port=start,
                end_port=end,
                handlers=tuple(handlers or ()),
                force_https=bool(force),
                options=json.dumps(options, sort_keys=True, separators=(",", ":"), default=str)
                if options
                else "",
            )
        )
    return tuple(ports)


def _service_common(
    svc: Table, r: _Reading
) -> tuple[int | None, str | None, bool | None, int | None, str]:
    port = r.attempt(lambda: _port(svc, "internal_port"))
    if port is None and "internal_port" not in svc.data:
        r.problem("missing: set the port the app listens on", svc.at("internal_port"))
    autostop = _autostop(svc, r)
    autostart = r.attempt(lambda: svc.boolean("auto_start_machines"))
    minimum = r.attempt(lambda: svc.integer("min_machines_running", 0, MAX_COUNT))
    return port, autostop, autostart, minimum, _concurrency(svc, r)


def _read_http_service(
    top: Table, r: _Reading, group: str, groups: Mapping[str, object], default: str
) -> ServiceSpec | None:
    body = r.attempt(lambda: top.table("http_service"))
    if body is None:
        return None
    svc = r.table(
        body,
        "http_service",
        (
            "internal_port",
            "force_https",
            "auto_stop_machines",
            "auto_start_machines",
            "min_machines_running",
            "concurrency",
            "processes",
            "checks",
            "tls_options",
            "http_options",
        ),
        _SERVICE_NOT_ACTED,
    )
    port, autostop, autostart, minimum, concurrency = _service_common(svc, r)
    force_https = r.attempt(lambda: svc.boolean("force_https"))
    options: dict[str, Any] = {}
    for key in ("tls_options", "http_options"):
        if key in body:
            if isinstance(body[key], dict):
                options[key] = body[key]
            else:
                r.problem(f"expected a table, got {describe(body[key])}", svc.at(key))
    checks = []
    raw = body.get("checks")
    entries = r.attempt(_as_tables, raw, svc.at("checks")) if raw not in (None, []) else []
    for index, entry in enumerate(entries or [], start=1):
        check = _read_service_check(r, entry, f"http_service.checks[{index}]", "http")
        if check is not None:
            checks.append(check)
    if groups and "processes" not in body:
        r.problem(
            f"no processes set, but [processes] defines {', '.join(sorted(groups))}: "
            "name the groups this service belongs to (flyctl refuses this too)",
            svc.at("processes"),
        )
        return None
    applies = _applies(svc, r, group, groups, default=default)
    if port is None or not applies:
        return None
    ports: tuple[PortSpec, ...] = ()
    if options:
        # The same two ports flyctl derives from [http_service], with the options on them.
        text = json.dumps(options, sort_keys=True, separators=(",", ":"), default=str)
        ports = (
            PortSpec(port=80, handlers=("http",), force_https=bool(force_https), options=text),
            PortSpec(port=443, handlers=("tls", "http"), options=text),
        )
    return ServiceSpec(
        internal_port=port,
        force_https=bool(force_https),
        auto_stop_machines=autostop or "off",
        auto_start_machines=True if autostart is None else autostart,
        min_machines_running=minimum or 0,
        concurrency=concurrency,
        checks=tuple(checks),
        ports=ports,
        processes=(group,) if groups else (),
    )


def _read_services(
    top: Table, r: _Reading, group: str, groups: Mapping[str, object], default: str
) -> list[ServiceSpec]:
    raw = top.data.get("services")
    if raw is None or raw == []:
        return []
    services = []
    for index, body in enumerate(r.attempt(lambda: _as_tables(raw, top.at("services"))) or [], 1):
        if not body:
            continue  # flyctl drops empty [[services]] sections
        path = f"services[{index}]"
        svc = r.table(
            body,
            path,
            (
                "protocol",
                "internal_port",
                "auto_stop_machines",
                "auto_start_machines",
                "min_machines_running",
                "ports",
                "concurrency",
                "tcp_checks",
                "http_checks",
                "processes",
            ),
            _SERVICE_NOT_ACTED,
        )
        protocol = r.attempt(svc.choice, "protocol", ("tcp", "udp"))
        if protocol is None and "protocol" not in body:
            r.problem('missing: set protocol = "tcp" or "udp"', svc.at("protocol"))
        port, autostop, autostart, minimum, concurrency = _service_common(svc, r)
        ports = _read_ports(svc, r)
        if not ports:
            r.notes.append(
                f"{svc.here()}: no [[{path}.ports]]: the service takes no public traffic "
                "(flyctl warns about this too)"
            )
        checks = []
        kinds: tuple[tuple[Literal["http", "tcp"], str], ...] = (
            ("tcp", "tcp_checks"),
            ("http", "http_checks"),
        )
        for kind, key in kinds:
            raw_checks = body.get(key)
            if raw_checks in (None, []):
                continue
            entries = r.attempt(_as_tables, raw_checks, svc.at(key)) or []
            for n, entry in enumerate(entries, start=1):
                check = _read_service_check(r, entry, f"{path}.{key}[{n}]", kind)
                if check is not None:
                    checks.append(check)
        if protocol == "udp" and checks:
            r.notes.append(
                f"{svc.here()}: Fly runs no checks over UDP; these probe TCP on internal_port"
            )
        if groups and "processes" not in body:
            r.problem(
                f"no processes set, but [processes] defines {', '.join(sorted(groups))}: "
                "name the groups this service belongs to (flyctl refuses this too)",
                svc.at("processes"),
            )
            continue
        if port is None or protocol is None or not _applies(svc, r, group, groups, default=default):
            continue
        services.append(
            ServiceSpec(
                internal_port=port,
                protocol=protocol,
                force_https=False,
                auto_stop_machines=autostop or "off",
                auto_start_machines=True if autostart is None else autostart,
                min_machines_running=minimum or 0,
                concurrency=concurrency,
                ports=ports,
                checks=tuple(checks),
                processes=(group,) if groups else (),
            )
        )
    return services


def _read_mount(
    top: Table, r: _Reading, group: str, groups: Mapping[str, object], default: str
) -> MountSpec | None:
    entries: list[tuple[str, Mapping[str, Any]]] = []
    for key in ("mounts", "mount"):
        if key in top.data and top.data[key] != []:
            found = r.attempt(_as_tables, top.data[key], top.at(key))
            entries += [(key, e) for e in found or []]
    chosen: list[tuple[str, Table]] = []
    for index, (key, body) in enumerate(entries, start=1):
        path = key if len(entries) == 1 else f"{key}[{index}]"
        mount = r.table(
            body, path, ("source", "destination", "initial_size", "processes"), _MOUNT_NOT_ACTED
        )
        if _applies(mount, r, group, groups, default=default):
            chosen.append((path, mount))
    if not chosen:
        return None
    if len(chosen) > 1:
        r.problem(
            f"process group {group!r} has {len(chosen)} [[mounts]]: a Fly machine mounts one "
            "volume (flyctl refuses this too)",
            top.at("mounts"),
        )
        return None
    _, mount = chosen[0]
    before = len(r.problems)
    source = r.attempt(lambda: mount.string("source"))
    if source is None and "source" not in mount.data:
        r.problem('missing: name the volume, e.g. source = "data"', mount.at("source"))
    if source is not None:
        r.attempt(lambda: check_volume_name(source, mount.at("source")))
    dest = r.attempt(lambda: mount.string("destination"))
    if dest is None and "destination" not in mount.data:
        r.problem('missing: set where the volume is mounted, e.g. "/data"', mount.at("destination"))
    if dest is not None:
        parts = dest.split("/")
        if not dest.startswith("/") or dest == "/" or ".." in parts or "." in parts or "\\" in dest:
            r.problem(
                f"expected an absolute path below / without '.' or '..', got {dest[:60]!r}",
                mount.at("destination"),
            )
    size = 1
    if mount.has("initial_size"):
        size = r.attempt(parse_gb, mount.data["initial_size"], mount.at("initial_size")) or 1
    if len(r.problems) > before or source is None or dest is None:
        return None
    return MountSpec(source=source, destination=dest.rstrip("/"), initial_size_gb=size)


def _read_image(top: Table, r: _Reading, image_override: str | None) -> str | None:
    image: str | None = None
    build = r.attempt(lambda: top.table("build"))
    if build is not None:
        table = r.table(build, "build", ("image",), _BUILD_NOT_ACTED)
        image = r.attempt(lambda: table.string("image"))
        if image is not None and image_override is None:
            image = r.attempt(lambda: check_image(image, table.at("image")))
    if image_override is not None:
        return r.attempt(lambda: check_image(image_override, "--image"))
    if image is None and "image" not in (build or {}):
        r.problem(
            "missing: this tool deploys prebuilt images and does not build; build and push one "
            "(`fly deploy --build-only --push`, or to any registry), then set [build] image or "
            "pass --image REF",
            f"{FLY_TOML}: build.image",
        )
    return image


_SIGNALS = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGKILL", "SIGUSR1", "SIGUSR2", "SIGTERM")


def _read_stop(top: Table, r: _Reading) -> tuple[str | None, float | None]:
    """Read kill_signal and kill_timeout, which flyctl sends as the machine's stop_config."""
    signal = r.attempt(top.string, "kill_signal")
    if signal is not None:
        signal = signal.upper()
        if not signal.startswith("SIG"):
            signal = f"SIG{signal}"
        if signal not in _SIGNALS:
            r.problem(
                f"{top.data['kill_signal']!r} is not a signal Fly sends: allowed "
                f"{', '.join(_SIGNALS)}",
                top.at("kill_signal"),
            )
            signal = None
    # flyctl reads a bare number here as seconds.
    timeout = r.attempt(_duration, top, "kill_timeout", 1.0, 86400.0)
    return signal, timeout


def _gating_notes(
    checks: list[CheckSpec], services: list[ServiceSpec], r: _Reading, group: str | None = None
) -> None:
    """Say how machines are gated when no check, or no check over TCP, is there to wait for."""
    if checks or any(s.checks for s in services):
        return
    if any(s.protocol == "udp" for s in services):
        where, why = "services", "UDP services have no checks on Fly, and no other check is set"
    else:
        where, why = "checks", "no top-level or service checks"
    whose = f"process group {group!r}: " if group else ""
    r.notes.append(
        f"{FLY_TOML}: {where}: {whose}{why}: the health gate counts a machine healthy once it is "
        "started and stays up; add [[services.tcp_checks]] or [checks] to gate on the app"
    )


@dataclass(frozen=True, slots=True)
class FlyGroup:
    """What fly.toml says about one process group besides the default one.

    Attributes:
        name: the group's name.
        command: its command (argv).
        mount: its ``[[mounts]]``, or ``None``.
        vm: its ``[[vm]]`` size.
        checks: its ``[checks.*]``, sorted by name.
        service: ``[http_service]`` when it names the group, or ``None``.
        services: ``[[services]]`` naming the group, in file order.
    """

    name: str
    command: tuple[str, ...]
    mount: MountSpec | None
    vm: VMSize
    checks: tuple[CheckSpec, ...]
    service: ServiceSpec | None
    services: tuple[ServiceSpec, ...]


@dataclass(frozen=True, slots=True)
class FlyApp:
    """What fly.toml says, validated.

    Attributes:
        app: the app name (after ``FLY_APP_NAME``).
        primary_region: the region that takes writes, or ``None`` when fly.toml leaves it to
            the region files (``role = "primary"``).
        image: the image (after ``--image``).
        env: ``[env]``, sorted by name.
        mount: the group's ``[[mounts]]``, or ``None``.
        vm: the group's ``[[vm]]`` size regions start from (``shared-cpu-1x`` when absent).
        checks: the group's ``[checks.*]``, sorted by name.
        service: ``[http_service]``, or ``None``.
        services: ``[[services]]`` of the group, in file order.
        process_group: the group the machines run (``app`` without ``[processes]``).
        command: the group's command (argv), or empty for the image's own.
        kill_signal: ``kill_signal`` (``stop_config.signal``), or ``None``.
        kill_timeout_s: ``kill_timeout`` in seconds (``stop_config.timeout``), or ``None``.
        ignored_keys: keys this tool does not act on (``fly.toml: kill_signal``).
        notes: one line per key not acted on, with the reason.
        groups: the other ``[processes]`` groups, by name (the fields above are the default
            group's: ``app`` when defined, else the first by name, as flyctl picks it).
    """

    app: str
    primary_region: str | None
    image: str
    env: Mapping[str, str]
    mount: MountSpec | None
    vm: VMSize
    checks: tuple[CheckSpec, ...]
    service: ServiceSpec | None
    ignored_keys: tuple[str, ...]
    services: tuple[ServiceSpec, ...] = ()
    process_group: str = DEFAULT_GROUP
    command: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    kill_signal: str | None = None
    kill_timeout_s: float | None = None
    groups: tuple[FlyGroup, ...] = ()


def read_fly_toml(
    root: Path,
    overlay: Mapping[str, str] | None = None,
    *,
    app_override: str | None = None,
    image_override: str | None = None,
) -> FlyApp:
    """Read and validate ``<root>/fly.toml`` (or ``overlay["fly.toml"]``).

    Raises:
        ConfigError: the file cannot be read or parsed.
        ConfigProblems: every problem found, one line each naming ``fly.toml`` and the key,
            ``FLY_APP_NAME`` or ``--image``.
    """
    r = _Reading()
    top = r.table(
        read_toml(root, FLY_TOML, overlay or {}),
        "",
        _TOP_KNOWN,
        _TOP_NOT_ACTED,
        refused=_TOP_REFUSED,
    )
    # Settings fill the override from fly.toml when FLY_APP_NAME is unset: a bad name then is
    # fly.toml's, and the error must send the user there, not to a variable they never set.
    if app_override is not None and app_override != top.data.get("app"):
        app = r.attempt(lambda: check_app_name(app_override, "FLY_APP_NAME"))
    else:
        wanted = 'set the Fly app name (app = "my-app") or FLY_APP_NAME in the environment'
        app = r.attempt(lambda: check_app_name(top.required("app", wanted), top.at("app")))
    image = _read_image(top, r, image_override)

    primary: str | None = None
    if "primary_region" in top.data:
        primary = r.attempt(
            lambda: validate_region(top.data["primary_region"], top.at("primary_region")).code
        )
    env = _read_env(top, r)
    if primary is not None and env.get("PRIMARY_REGION", primary) != primary:
        r.problem(
            f"{env['PRIMARY_REGION']!r} disagrees with primary_region = {primary!r}; "
            "remove it (it is set from primary_region)",
            f"{FLY_TOML}: env.PRIMARY_REGION",
        )

    groups = _read_processes(top, r)
    default = DEFAULT_GROUP if not groups or DEFAULT_GROUP in groups else sorted(groups)[0]
    group = default
    command = groups.get(group, ())

    mount = _read_mount(top, r, group, groups, default)
    vm = _read_vm(top, r, group, groups, default)
    checks = _read_checks(top, r, group, groups, default)
    service = _read_http_service(top, r, group, groups, default)
    services = _read_services(top, r, group, groups, default)
    kill_signal, kill_timeout = _read_stop(top, r)
    _gating_notes(
        checks,
        [*([service] if service else []), *services],
        r,
        group if len(groups) > 1 else None,
    )
    others = [_read_group(top, r, name, groups, default) for name in sorted(groups)]
    others = [g for g in others if g.name != default]
    if r.problems or app is None or image is None:
        raise ConfigProblems(r.problems)
    return FlyApp(
        app=app,
        primary_region=primary,
        image=image,
        env=env,
        mount=mount,
        vm=vm,
        checks=tuple(checks),
        service=service,
        services=tuple(services),
        process_group=group,
        command=command,
        ignored_keys=tuple(sorted(set(r.ignored))),
        notes=tuple(dict.fromkeys(r.notes)),
        kill_signal=kill_signal,
        kill_timeout_s=kill_timeout,
        groups=tuple(others),
    )


def _read_group(
    top: Table, r: _Reading, name: str, groups: Mapping[str, tuple[str, ...]], default: str
) -> FlyGroup:
    """Read what fly.toml says about one more process group.

    The sections were already read for the default group, so their own problems are known:
    only problems (and notes) not reported yet are added.
    """
    mine = _Reading()
    group = FlyGroup(
        name=name,
        command=groups[name],
        mount=_read_mount(top, mine, name, groups, default),
        vm=_read_vm(top, mine, name, groups, default),
        checks=tuple(_read_checks(top, mine, name, groups, default)),
        service=_read_http_service(top, mine, name, groups, default),
        services=tuple(_read_services(top, mine, name, groups, default)),
    )
    _gating_notes(
        list(group.checks),
        [*([group.service] if group.service else []), *group.services],
        mine,
        name,
    )
    seen = {str(p) for p in r.problems}
    r.problems.extend(p for p in mine.problems if str(p) not in seen)
    r.notes.extend(n for n in mine.notes if n not in r.notes)
    r.ignored.extend(mine.ignored)
    return group
