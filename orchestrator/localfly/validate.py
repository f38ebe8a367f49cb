"""Validate request bodies the way Fly does, before anything changes.

Bodies are checked against the request schemas from Fly's OpenAPI document (shipped as
``flyschemas.json``), then against the rules a schema cannot say: an image is required,
sizes follow Fly's VM rules, durations parse, mount paths are absolute and stay inside the
machine's root. Every failure is an ApiError 400 naming the field.
"""

from __future__ import annotations

import json
import os
import re
import signal
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

from jsonschema import Draft7Validator
from jsonschema.exceptions import best_match

from orchestrator.localfly.regions import REGIONS
from orchestrator.localfly.util import ApiError, parse_duration, show

__all__ = [
    "APP_NAME",
    "VOLUME_NAME",
    "check_app_name",
    "check_body",
    "check_config",
    "check_org",
    "check_region",
    "check_signal",
    "mount_relpath",
]

APP_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
VOLUME_NAME = re.compile(r"^[a-z0-9_]{1,30}$")
MACHINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

# fly-go MachinePresets and flyctl's size rules (fly-notes §2).
_CPUS = {"shared": {1, 2, 4, 6, 8}, "performance": {1, 2, 4, 6, 8, 10, 12, 14, 16, 32, 64, 128}}
_MEM_PER_CPU = {"shared": (256, 2048), "performance": (2048, 8192)}
_MEM_STEP = {"shared": 256, "performance": 1024}
_PRESETS = {
    **{f"shared-cpu-{n}x": ("shared", n, 256 * n) for n in (1, 2, 4, 6, 8)},
    **{f"performance-{n}x": ("performance", n, 2048 * n) for n in (1, 2, 4, 6, 8, 10, 12, 14, 16)},
}
_SIGNAL_NAMES = (
    "SIGABRT",
    "SIGALRM",
    "SIGFPE",
    "SIGHUP",
    "SIGILL",
    "SIGINT",
    "SIGKILL",
    "SIGPIPE",
    "SIGQUIT",
    "SIGSEGV",
    "SIGTERM",
    "SIGTRAP",
    "SIGUSR1",
    "SIGUSR2",
)
SIGNALS = {name: int(getattr(signal, name)) for name in _SIGNAL_NAMES}


@cache
def _validator(name: str) -> Draft7Validator:
    doc = json.loads((Path(__file__).with_name("flyschemas.json")).read_text())
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return Draft7Validator(schema)


def _strip_nulls(value: Any) -> Any:
    # Go decodes null as the zero value; Fly therefore accepts null for any field.
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_nulls(v) for v in value]
    return value


def check_body(schema: str, body: Any) -> dict[str, Any]:
    """Validate a request body against one of Fly's request schemas; return it cleaned."""
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    cleaned: dict[str, Any] = _strip_nulls(body)
    error = best_match(_validator(schema).iter_errors(cleaned))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "body"
        raise ApiError(400, f"invalid {where}: {error.message[:300]}")
    return cleaned


def check_region(region: Any, what: str = "region") -> str:
    """Return ``region`` if the local Fly knows it; 400 otherwise."""
    if not isinstance(region, str) or region not in REGIONS:
        raise ApiError(400, f"invalid {what} {show(region)}: not a Fly region")
    return region


def check_app_name(name: Any) -> str:
    """Return ``name`` if it is a valid app name; 400 otherwise."""
    if not isinstance(name, str) or not APP_NAME.match(name):
        raise ApiError(
            400, f"invalid app name {show(name)}: use lowercase letters, numbers and dashes"
        )
    return name


ORGS_ENV = "LOCALFLY_ORGS"


def check_org(slug: Any) -> str:
    """Return a known organization slug (``personal``, or one of ``LOCALFLY_ORGS``); 404 else.

    As on Fly, an app is created in an organization that exists; a missing slug means
    ``personal``.
    """
    if slug is None or slug == "":
        return "personal"
    known = {"personal", *(s.strip() for s in os.environ.get(ORGS_ENV, "").split(",") if s.strip())}
    if not isinstance(slug, str) or slug not in known:
        raise ApiError(404, f"organization {show(slug)} not found")
    return slug


def check_machine_name(name: Any) -> str:
    """Return ``name`` if it is a valid machine name; 400 otherwise."""
    if not isinstance(name, str) or not MACHINE_NAME.match(name):
        raise ApiError(400, f"invalid machine name {show(name)}")
    return name


def check_signal(name: Any, default: str = "SIGTERM") -> int:
    """Return the signal number for a Fly signal name."""
    if name in (None, ""):
        name = default
    if not isinstance(name, str) or name.upper() not in SIGNALS:
        raise ApiError(400, f"invalid signal {show(name)}")
    return SIGNALS[name.upper()]


def _duration(value: Any, where: str) -> float:
    try:
        return parse_duration(value)
    except (ValueError, TypeError):
        raise ApiError(
            400, f"invalid {where}: {show(value)} is not a duration like '15s'"
        ) from None


def mount_relpath(path: str) -> PurePosixPath:
    """Return a mount path relative to the machine root; 400 if it could escape it."""
    p = PurePosixPath(path)
    if not p.is_absolute() or ".." in p.parts or len(p.parts) < 2:
        raise ApiError(400, f"invalid mount path {show(path)}: must be absolute, not '/', no '..'")
    return p.relative_to("/")


def _check_guest(config: dict[str, Any]) -> None:
    guest = config.get("guest")
    if guest is None:
        kind, cpus, mem = _PRESETS.get(str(config.get("size", "shared-cpu-1x")), (None, 0, 0))
        if kind is None:
            raise ApiError(400, f"invalid config.size {show(config.get('size'))}")
        config["guest"] = {"cpu_kind": kind, "cpus": cpus, "memory_mb": mem}
        return
    kind = guest.setdefault("cpu_kind", "shared")
    if kind not in _CPUS:
        raise ApiError(400, f"invalid config.guest.cpu_kind {show(kind)}: shared or performance")
    cpus = guest.setdefault("cpus", 1)
    if cpus not in _CPUS[kind]:
        allowed = ", ".join(str(c) for c in sorted(_CPUS[kind]))
        raise ApiError(400, f"invalid config.guest.cpus {cpus} for {kind}: one of {allowed}")
    lo, hi = _MEM_PER_CPU[kind]
    mem = guest.setdefault("memory_mb", lo * cpus)
    if not lo * cpus <= mem <= hi * cpus or mem % _MEM_STEP[kind]:
        raise ApiError(
            400,
            f"invalid config.guest.memory_mb {mem} for {cpus} {kind} cpu(s): "
            f"{lo * cpus}-{hi * cpus} MB in steps of {_MEM_STEP[kind]}",
        )


def _check_checks(config: dict[str, Any]) -> None:
    for name, check in (config.get("checks") or {}).items():
        where = f"config.checks.{name}"
        if check.get("type") not in ("http", "tcp"):
            raise ApiError(400, f"invalid {where}.type {show(check.get('type'))}: http or tcp")
        for key in ("interval", "timeout", "grace_period"):
            if key in check:
                _duration(check[key], f"{where}.{key}")
        port = check.get("port")
        if port is not None and not 0 < port < 65536:
            raise ApiError(400, f"invalid {where}.port {port}")
        if check["type"] == "http" and not str(check.get("path", "/")).startswith("/"):
            raise ApiError(
                400, f"invalid {where}.path {show(check.get('path'))}: must start with /"
            )


def check_config(config: Any) -> dict[str, Any]:
    """Validate a machine config beyond its schema and fill Fly's defaults.

    The body was already checked with ``check_body``; this adds what Fly enforces on top.
    """
    if not isinstance(config, dict):
        raise ApiError(400, "config is required")
    image = config.get("image")
    if not isinstance(image, str) or not image.strip():
        raise ApiError(400, "invalid config.image: an image is required")
    _check_guest(config)
    mounts = config.get("mounts") or []
    if len(mounts) > 1:
        raise ApiError(400, "invalid config.mounts: a machine mounts at most one volume")
    for mount in mounts:
        if not mount.get("volume"):
            raise ApiError(400, "invalid config.mounts: each mount needs a volume id")
        mount_relpath(str(mount.get("path", "")))
    _check_checks(config)
    for service in config.get("services") or []:
        port = service.get("internal_port")
        if port is not None and not 0 < port < 65536:
            raise ApiError(400, f"invalid config.services.internal_port {port}")
    stop = config.get("stop_config") or {}
    if "timeout" in stop:
        _duration(stop["timeout"], "config.stop_config.timeout")
    if "signal" in stop:
        check_signal(stop["signal"])
    restart = config.get("restart") or {}
    if restart.get("max_retries", 0) < 0:
        raise ApiError(400, "invalid config.restart.max_retries: must be >= 0")
    return config
