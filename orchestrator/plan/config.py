"""Turn a DeploySpec into the exact Fly machine configs a deploy sends, and name the release.

Everything here is pure: the same spec gives the same dicts and the same digests on every
machine and every run, so a plan serialises byte for byte the same.

Two identifiers come out of a spec:

- the **release id** (:func:`release_id`), app-wide and human-readable: the image tag plus the
  first 8 hex digits of a sha256 over the app-wide settings (image, env, primary region, mount,
  checks, service), e.g. ``v2-3f9a2c1b``. It goes into ``fly_release_id`` and names what
  ``invoke rollback --to`` puts back. Per-region settings (count, VM size, volume size) are left
  out on purpose: scaling a region is not a new release.
- the **config digest** (:func:`config_digest`), per machine config: sha256[:16] of the canonical
  JSON of the config without ``metadata`` and without ``mounts[].volume``. It is stored in the
  machine's ``orch_config_digest`` metadata, and the planner compares it, not the config Fly
  echoes back (Fly adds defaults to what it returns, so a re-computed digest would never match).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.fleetconfig.model import (
    CheckSpec,
    DeploySpec,
    PortSpec,
    ServiceCheckSpec,
    ServiceSpec,
)

__all__ = [
    "META_CONFIG_DIGEST",
    "META_LAUNCH_ID",
    "META_PLATFORM_VERSION",
    "META_PROCESS_GROUP",
    "META_RELEASE",
    "META_SECRETS",
    "META_SECRETS_VERSION",
    "META_SLOT",
    "PROCESS_GROUP",
    "RELEASE_COMMAND_GROUP",
    "RESTART_MAX_RETRIES",
    "RegionConfigs",
    "Secrets",
    "autostops",
    "canonical_json",
    "config_digest",
    "desired_config",
    "go_duration",
    "image_tag",
    "machine_name",
    "release_id",
    "secrets_fingerprint",
]

META_PLATFORM_VERSION = "fly_platform_version"
META_PROCESS_GROUP = "fly_process_group"
META_RELEASE = "fly_release_id"
META_SLOT = "orch_slot"
META_CONFIG_DIGEST = "orch_config_digest"
# Set by the executor (a fresh uuid per create), never by the pure planner.
META_LAUNCH_ID = "orch_launch_id"
# Which app secrets a machine was last launched with: a fingerprint of the secrets' names and
# Fly's digests (never a value), and the secrets version sent as min_secrets_version.
META_SECRETS = "orch_secrets"
META_SECRETS_VERSION = "orch_secrets_version"

PROCESS_GROUP = "app"
# The process group Fly (and flyctl) give the temporary machine of a release command.
RELEASE_COMMAND_GROUP = "fly_app_release_command"
# flyctl's default for the on-failure policy; enough to ride out a crash loop at boot
# without restarting forever.
RESTART_MAX_RETRIES = 10

_TAG_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def canonical_json(value: Any) -> str:
    """Serialise ``value`` the one way digests are taken: sorted keys, no whitespace."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def image_tag(image: str) -> str:
    """Return the tag of an image reference (``latest`` when it has none).

    ``registry.fly.io/sample-app:v2`` → ``v2``; ``repo@sha256:abcd…`` → ``sha256-abcd…`` (12 hex
    digits); ``localhost:5000/app`` → ``latest`` (a registry port is not a tag).
    """
    if "@" in image:
        _, _, digest = image.partition("@")
        algo, _, hexpart = digest.partition(":")
        return _TAG_SAFE.sub("-", f"{algo}-{hexpart[:12]}" if hexpart else algo)
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "latest"
    return _TAG_SAFE.sub("-", last.rsplit(":", 1)[1]) or "latest"


def _check_json(check: CheckSpec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": check.name,
        "type": check.type,
        "port": check.port,
        "path": check.path,
        "method": check.method,
        "interval_s": check.interval_s,
        "timeout_s": check.timeout_s,
        "grace_period_s": check.grace_period_s,
    }
    if check.headers:
        out["headers"] = [list(h) for h in check.headers]
    return out


def _app_wide(spec: DeploySpec) -> dict[str, Any]:
    mount = spec.mount
    svc = spec.service
    out: dict[str, Any] = {
        "image": spec.image,
        "primary_region": spec.primary_region,
        "env": dict(sorted(spec.env.items())),
        "mount": None
        if mount is None
        else {"source": mount.source, "destination": mount.destination},
        "checks": [_check_json(c) for c in sorted(spec.checks, key=lambda c: c.name)],
        "service": None
        if svc is None
        else {
            "internal_port": svc.internal_port,
            "force_https": svc.force_https,
            "auto_stop_machines": svc.auto_stop_machines,
            "auto_start_machines": svc.auto_start_machines,
            "min_machines_running": svc.min_machines_running,
        },
    }
    # Only what the sample fleet's release ids never had, so existing ids stay the same.
    if svc is not None and (svc.checks or svc.concurrency or svc.ports):
        out["service_extra"] = _service_json(svc)
    if spec.services:
        out["services"] = [_service_json(s) for s in spec.services]
    if spec.process_group != PROCESS_GROUP or spec.command:
        out["process"] = {"group": spec.process_group, "command": list(spec.command)}
    if _stop_config(spec):
        out["stop_config"] = _stop_config(spec)
    return out


@dataclass(frozen=True, slots=True)
class Secrets:
    """The app's secrets as a deploy sees them: which values, never the values themselves.

    Attributes:
        fingerprint: :func:`secrets_fingerprint` of the names and Fly's digests (``""``: none).
        version: the secrets version to send as ``min_secrets_version`` (``None``: unknown).
        rollout: update machines launched with other secrets (a deploy); ``False`` only stamps
            the machines the plan creates (a scale adds machines, it does not roll out).
    """

    fingerprint: str
    version: int | None = None
    rollout: bool = True


def secrets_fingerprint(digests: Mapping[str, str]) -> str:
    """Return 8 hex digits naming a set of secrets (name → Fly's digest); ``""`` for none."""
    if not digests:
        return ""
    return _sha256(canonical_json(dict(sorted(digests.items()))))[:8]


def release_id(spec: DeploySpec, secrets: Secrets | None = None) -> str:
    """Return the release id of ``spec``: ``<image tag>-<8 hex digits of the app-wide config>``.

    The app's secrets (by fingerprint) are part of the app-wide config: a change of a secret is
    a new release, rolled out and rolled back like an image change.
    """
    wide = _app_wide(spec)
    if secrets is not None and secrets.fingerprint:
        wide["secrets"] = secrets.fingerprint
    return f"{image_tag(spec.image)}-{_sha256(canonical_json(wide))[:8]}"


def go_duration(seconds: float) -> str:
    """Format seconds as a Go duration string Fly parses: ``15s``, ``500ms``, ``1500ms``."""
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"a duration must be finite and >= 0, got {seconds!r}")
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def _autostop_value(service: ServiceSpec) -> str:
    # fly.toml allows booleans here; the Machines API wants "off" | "stop" | "suspend".
    value = str(service.auto_stop_machines).strip().lower()
    return {"true": "stop", "false": "off", "": "off"}.get(value, value)


def autostops(spec: DeploySpec) -> bool:
    """Tell whether Fly's proxy stops idle machines, so a stopped machine is expected."""
    return any(_autostop_value(s) != "off" for s in _all_services(spec))


def _all_services(spec: DeploySpec) -> list[ServiceSpec]:
    # flyctl's order: [http_service] first, then [[services]].
    return ([spec.service] if spec.service is not None else []) + list(spec.services)


def _checks(spec: DeploySpec) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for check in sorted(spec.checks, key=lambda c: c.name):
        entry: dict[str, Any] = {
            "type": check.type,
            "port": check.port,
            "interval": go_duration(check.interval_s),
            "timeout": go_duration(check.timeout_s),
            "grace_period": go_duration(check.grace_period_s),
        }
        if check.type == "http":
            entry["method"] = check.method
            entry["path"] = check.path
            if check.headers:
                entry["headers"] = [{"name": n, "values": [v]} for n, v in check.headers]
        out[check.name] = entry
    return out


def _service_check(check: ServiceCheckSpec) -> dict[str, Any]:
    """Return Fly's ``MachineServiceCheck`` as flyctl builds it: only what fly.toml set."""
    out: dict[str, Any] = {"type": check.type}
    for key, seconds in (
        ("interval", check.interval_s),
        ("timeout", check.timeout_s),
        ("grace_period", check.grace_period_s),
    ):
        if seconds is not None:
            out[key] = go_duration(seconds)
    for key, value in (
        ("method", check.method),
        ("path", check.path),
        ("protocol", check.protocol),
        ("tls_skip_verify", check.tls_skip_verify),
        ("tls_server_name", check.tls_server_name),
    ):
        if value is not None:
            out[key] = value
    if check.headers:
        out["headers"] = [{"name": n, "values": [v]} for n, v in check.headers]
    return out


def _port(port: PortSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if port.port is not None:
        out["port"] = port.port
    if port.start_port is not None:
        out["start_port"] = port.start_port
    if port.end_port is not None:
        out["end_port"] = port.end_port
    out["handlers"] = list(port.handlers)
    if port.force_https:
        out["force_https"] = True
    if port.options:
        out.update(json.loads(port.options))
    return out


def _service_json(svc: ServiceSpec) -> dict[str, Any]:
    """Return Fly's ``MachineService`` for one service, its checks inside it as flyctl puts them."""
    if svc.ports:
        ports = [_port(p) for p in svc.ports]
    else:
        # [http_service]: the same two ports flyctl derives from it.
        ports = [
            {"port": 80, "handlers": ["http"], "force_https": svc.force_https},
            {"port": 443, "handlers": ["tls", "http"]},
        ]
    out: dict[str, Any] = {
        "protocol": svc.protocol,
        "internal_port": svc.internal_port,
        "ports": ports,
        "autostop": _autostop_value(svc),
        "autostart": svc.auto_start_machines,
        "min_machines_running": svc.min_machines_running,
    }
    if svc.concurrency:
        out["concurrency"] = json.loads(svc.concurrency)
    if svc.checks:
        out["checks"] = [_service_check(c) for c in svc.checks]
    return out


def _services(spec: DeploySpec) -> list[dict[str, Any]]:
    return [_service_json(s) for s in _all_services(spec)]


def machine_name(app: str, region: str, slot: int) -> str:
    """Return the name of a managed machine: ``<app>-<region>-<slot>``."""
    return f"{app}-{region}-{slot}"


def _base_config(spec: DeploySpec, region: str) -> dict[str, Any]:
    """Return a region's desired config without ``metadata`` (fresh dicts, no volume id)."""
    rs = spec.regions[region]
    return {
        "image": spec.image,
        "guest": {"cpu_kind": rs.vm.cpu_kind, "cpus": rs.vm.cpus, "memory_mb": rs.vm.memory_mb},
        "env": {**dict(sorted(spec.env.items())), "PRIMARY_REGION": spec.primary_region},
        "mounts": []
        if spec.mount is None
        else [{"path": spec.mount.destination, "name": spec.mount.source}],
        "checks": _checks(spec),
        "services": _services(spec),
        "restart": {"policy": "on-failure", "max_retries": RESTART_MAX_RETRIES},
        # The group's [processes] command replaces the image's CMD, as flyctl sends it.
        **({"init": {"cmd": list(spec.command)}} if spec.command else {}),
        **({"stop_config": _stop_config(spec)} if _stop_config(spec) else {}),
    }


def _stop_config(spec: DeploySpec) -> dict[str, str]:
    """Return ``stop_config`` from kill_signal and kill_timeout, as flyctl sets it."""
    out = {}
    if spec.kill_signal is not None:
        out["signal"] = spec.kill_signal
    if spec.kill_timeout_s is not None:
        out["timeout"] = go_duration(spec.kill_timeout_s)
    return out


class RegionConfigs:
    """The desired configs of one region's slots, built (and digested) once.

    Slots of a region differ only in ``orch_slot`` (which the digest leaves out) and in the
    volume id of their first mount, so the planner builds the config and its digest once per
    region and stamps the slot (and the volume) on for each machine.

    :meth:`config` returns a new top-level dict with its own ``metadata`` dict and its own
    ``mounts`` list and mount dicts. The other nested values (``guest``, ``env``, ``checks``,
    ``services``, ``restart``) are shared by every config of the region: treat them as
    read-only, and copy a config before changing it (the executor deep-copies a step's config
    before it adds the volume and the launch id).

    Attributes:
        region: the region code.
        release: the release id (:func:`release_id` of the spec).
        digest: the config digest every slot of the region shares.
        image: the desired image.
        guest: the desired ``guest`` (read-only).
    """

    __slots__ = ("_base", "_group", "digest", "region", "release", "secrets")

    def __init__(
        self,
        spec: DeploySpec,
        region: str,
        *,
        release: str | None = None,
        secrets: Secrets | None = None,
    ) -> None:
        """Build the region's config; ``release`` saves recomputing :func:`release_id`.

        ``secrets``: the app's secrets, stamped into the metadata (``None``: not known, so
        not compared either).

        Raises:
            KeyError: ``region`` is not in the spec.
        """
        self.region = region
        self._group = spec.process_group
        self._base = _base_config(spec, region)
        self.release = release_id(spec, secrets) if release is None else release
        self.digest = config_digest(self._base)
        self.secrets = secrets

    @property
    def image(self) -> str:
        image: str = self._base["image"]
        return image

    @property
    def guest(self) -> Mapping[str, Any]:
        guest: Mapping[str, Any] = self._base["guest"]
        return guest

    def config(self, slot: int, volume_id: str | None = None) -> dict[str, Any]:
        """Return the config of ``slot``, with ``volume_id`` in its first mount when given."""
        out = dict(self._base)
        mounts: list[dict[str, Any]] = self._base["mounts"]
        copied = [dict(m) for m in mounts]
        if volume_id and copied:
            copied[0]["volume"] = volume_id
        out["mounts"] = copied
        out["metadata"] = {
            META_PLATFORM_VERSION: "v2",
            META_PROCESS_GROUP: self._group,
            META_RELEASE: self.release,
            META_SLOT: str(slot),
            META_CONFIG_DIGEST: self.digest,
        }
        if self.secrets is not None and self.secrets.fingerprint:
            out["metadata"][META_SECRETS] = self.secrets.fingerprint
        if self.secrets is not None and self.secrets.version is not None:
            out["metadata"][META_SECRETS_VERSION] = str(self.secrets.version)
        return out


def desired_config(spec: DeploySpec, region: str, slot: int) -> dict[str, Any]:
    """Return the full Fly machine config for ``slot`` of ``region`` (no volume id in mounts).

    The executor fills ``mounts[0]["volume"]`` with the volume its ``volume.ensure`` step
    resolved; ``orch_launch_id`` is added by the executor at create time. The result shares
    nothing with any other call's. (The planner uses :class:`RegionConfigs` to build a
    region's configs once.)

    Raises:
        KeyError: ``region`` is not in the spec.
    """
    return RegionConfigs(spec, region).config(slot)


def config_digest(config: Mapping[str, Any]) -> str:
    """Return sha256[:16] of ``config`` without ``metadata`` and ``mounts[].volume``.

    What is left is what changes a running machine: image, env, guest, checks, services,
    restart policy and mount paths. The volume id is left out because it is only known at run
    time; metadata because it carries the digest itself and the release id.
    """
    # json.dumps only reads, so a shallow view is enough: no copy of the nested values.
    body = {k: v for k, v in config.items() if k != "metadata"}
    mounts = body.get("mounts")
    if isinstance(mounts, list):
        body["mounts"] = [
            {k: v for k, v in m.items() if k != "volume"} if isinstance(m, Mapping) else m
            for m in mounts
        ]
    return _sha256(canonical_json(body))[:16]
