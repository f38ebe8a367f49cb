"""Read the sample app's settings and switches from its environment.

Everything here is pure: :func:`load_config` takes a mapping (``os.environ`` in production, a dict
in tests) and either returns an :class:`AppConfig` or raises :class:`ConfigError` naming the
variable that is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from orchestrator.errors import ConfigError

__all__ = [
    "DEFAULT_DATA_DIR",
    "AppConfig",
    "Role",
    "load_config",
    "release_from_image",
    "resolve_data_dir",
]

Role = Literal["primary", "replica"]

DEFAULT_DATA_DIR = "/app/.data"
DEFAULT_PORT = 8080
DEFAULT_REPLICATE_INTERVAL = 0.5

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class AppConfig:
    """What one sample-app process is and how it behaves.

    The switches are already narrowed to this machine's region: ``error_rate`` is 0 in a region
    that ``SAMPLE_APP_ERROR_RATE_REGIONS`` leaves out, and so on.

    Attributes:
        host: the address to listen on (``SAMPLE_APP_HOST``, default loopback).
        port: the port to listen on (``PORT``; 0 lets the OS pick, the log says which).
        region: ``FLY_REGION``.
        primary_region: ``PRIMARY_REGION`` (this machine's region when unset).
        machine_id: ``FLY_MACHINE_ID``.
        app: ``FLY_APP_NAME``.
        image_ref: ``FLY_IMAGE_REF`` as given.
        release: the image's tag (see :func:`release_from_image`).
        data_dir: where ``records.db`` lives, already resolved under ``LOCALFLY_ROOT``.
        upstream_url: where a replica pulls from (``LOCALFLY_PROXY_URL``), or ``None``.
        replicate_interval: seconds between a replica's pulls.
        health_failure: why ``/status`` must answer 503 (names the switch), or ``None``.
        error_rate: share of ``GET /`` and ``GET /records`` answered with 500, in [0, 1].
        latency_s: seconds added to every request except ``GET /metrics``.
    """

    host: str
    port: int
    region: str
    primary_region: str
    machine_id: str
    app: str
    image_ref: str
    release: str
    data_dir: Path
    upstream_url: str | None
    replicate_interval: float
    health_failure: str | None
    error_rate: float
    latency_s: float

    @property
    def candidate(self) -> bool:
        """Say whether this machine may take writes: it runs in the primary region.

        With one machine in the primary region that machine is the primary; with several,
        they pick one (see ``leadership.py``).
        """
        return self.region == self.primary_region


def release_from_image(image_ref: str) -> str:
    """Return the release an image reference names: its tag, as Fly shows it.

    ``registry.fly.io/sample-app:v2`` → ``v2``. A registry port is not a tag
    (``localhost:5000/sample-app`` → ``latest``); a digest-only reference yields the digest.
    """
    ref = image_ref.strip()
    if not ref:
        return "unknown"
    name, _, digest = ref.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.rsplit(":", 1)[1] or "latest"
    return digest or "latest"


def resolve_data_dir(data_dir: str, localfly_root: str | None) -> Path:
    """Return where the data directory really is.

    Under the local Fly a machine's mounts live inside its root directory, so an absolute
    ``/app/.data`` means ``$LOCALFLY_ROOT/app/.data``; on Fly.io (no ``LOCALFLY_ROOT``) it is
    taken as is.
    """
    path = data_dir or DEFAULT_DATA_DIR
    if localfly_root and path.startswith("/"):
        return Path(localfly_root) / path.lstrip("/")
    return Path(path)


def load_config(environ: Mapping[str, str]) -> AppConfig:
    """Build the configuration from environment variables; raise ConfigError on a bad value."""
    region = _text(environ, "FLY_REGION", "local").lower()
    primary_region = _text(environ, "PRIMARY_REGION", region).lower()
    image_ref = environ.get("FLY_IMAGE_REF", "").strip()
    release = release_from_image(image_ref)

    health_failure = _health_failure(environ, region, release)
    error_rate = _float(environ, "SAMPLE_APP_ERROR_RATE", 0.0, low=0.0, high=1.0)
    if not _in_scope(environ, "SAMPLE_APP_ERROR_RATE_REGIONS", region):
        error_rate = 0.0
    latency_ms = _float(environ, "SAMPLE_APP_LATENCY_MS", 0.0, low=0.0, high=60_000.0)
    if not _in_scope(environ, "SAMPLE_APP_LATENCY_REGIONS", region):
        latency_ms = 0.0

    proxy = environ.get("LOCALFLY_PROXY_URL", "").strip().rstrip("/")
    if proxy and not proxy.startswith(("http://", "https://")):
        raise ConfigError(f"must be an http(s) URL, got {proxy!r}", where="LOCALFLY_PROXY_URL")

    interval = _float(
        environ, "SAMPLE_APP_REPLICATE_INTERVAL", DEFAULT_REPLICATE_INTERVAL, low=0.01, high=3600.0
    )
    return AppConfig(
        host=_text(environ, "SAMPLE_APP_HOST", "127.0.0.1"),
        port=_port(environ),
        region=region,
        primary_region=primary_region,
        machine_id=_text(environ, "FLY_MACHINE_ID", "local"),
        app=_text(environ, "FLY_APP_NAME", "sample-app"),
        image_ref=image_ref,
        release=release,
        data_dir=resolve_data_dir(
            environ.get("DATA_DIR", "").strip(), environ.get("LOCALFLY_ROOT", "").strip() or None
        ),
        upstream_url=proxy or None,
        replicate_interval=interval,
        health_failure=health_failure,
        error_rate=error_rate,
        latency_s=latency_ms / 1000.0,
    )


def _health_failure(environ: Mapping[str, str], region: str, release: str) -> str | None:
    """Say which switch makes this machine fail its health check, or None."""
    forced = _bool(environ, "SAMPLE_APP_FAIL_HEALTH")
    scoped = _regions(environ, "SAMPLE_APP_FAIL_HEALTH_REGIONS")
    if scoped is not None and region not in scoped:
        return None
    if forced:
        return "SAMPLE_APP_FAIL_HEALTH is set"
    if release.endswith("-unhealthy"):
        return f"image tag {release!r} ends in -unhealthy"
    if scoped is not None:
        # The region list alone is enough: it exists to fail one region of a release.
        return f"SAMPLE_APP_FAIL_HEALTH_REGIONS includes {region}"
    return None


def _in_scope(environ: Mapping[str, str], name: str, region: str) -> bool:
    """Say whether a region-scoped switch applies here (it does when its list is unset)."""
    scoped = _regions(environ, name)
    return scoped is None or region in scoped


def _regions(environ: Mapping[str, str], name: str) -> frozenset[str] | None:
    """Parse a comma- or space-separated region list; None when unset or empty."""
    raw = environ.get(name, "").replace(",", " ").split()
    return frozenset(code.lower() for code in raw) or None


def _text(environ: Mapping[str, str], name: str, default: str) -> str:
    """Return a stripped variable, or the default when it is unset or blank."""
    return environ.get(name, "").strip() or default


def _bool(environ: Mapping[str, str], name: str) -> bool:
    """Parse a boolean switch (1/true/yes/on, 0/false/no/off)."""
    raw = environ.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"must be 1 or 0 (true/false), got {raw!r}", where=name)


def _float(
    environ: Mapping[str, str], name: str, default: float, *, low: float, high: float
) -> float:
    """Parse a float within [low, high]; the default when unset or blank."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"must be a number, got {raw!r}", where=name) from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ConfigError(f"must be between {low:g} and {high:g}, got {raw!r}", where=name)
    return value


def _port(environ: Mapping[str, str]) -> int:
    """Parse PORT (0-65535; 0 lets the OS pick)."""
    raw = environ.get("PORT", "").strip()
    if not raw:
        return DEFAULT_PORT
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"must be an integer, got {raw!r}", where="PORT") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"must be between 0 and 65535, got {raw!r}", where="PORT")
    return port
