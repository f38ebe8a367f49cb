"""Build synthetic fleets for the benchmarks: specs, Machines-API-shaped JSON, and fleet files.

Two shapes of the same fleet:

- in memory, for ``bench/plan.py``: a :class:`DeploySpec` built from the dataclasses (so any
  machine count per region is possible, past the loader's per-region cap) and the JSON that
  ``GET /v1/apps/{app}/machines`` and ``/volumes`` would answer for a fleet already at spec;
- on disk, for ``bench/rollout.py``: ``fly.toml``, ``regions/<code>.toml`` and
  ``regions/waves.toml`` in a directory, deployed through the product like any user's fleet.

Both use the sample fleet's app settings (the sample app image, a ``/status`` http check, one
volume per machine), so what is measured is the product's normal path.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.fleetconfig.model import (
    DeploySpec,
    MountSpec,
    RegionSpec,
    ServiceCheckSpec,
    ServiceSpec,
    VMSize,
    WaveSpec,
)
from orchestrator.plan import desired_config

__all__ = [
    "APP",
    "IMAGE_V1",
    "IMAGE_V2",
    "IMAGE_V3",
    "REGION_ORDER",
    "FleetShape",
    "fleet_json",
    "spread",
    "synthetic_spec",
    "write_fleet",
]

APP = "bench-fleet"
IMAGE_V1 = "registry.fly.io/sample-app:v1"
IMAGE_V2 = "registry.fly.io/sample-app:v2"
IMAGE_V3 = "registry.fly.io/sample-app:v3"

# Real Fly regions, primary first; a K-region fleet takes the first K. The last 17 are the
# regions Fly has retired (still accepted, flagged deprecated), for fleets of up to 35 regions.
REGION_ORDER = (
    "syd", "dfw", "ams", "lhr", "iad", "nrt", "sin", "fra", "ord", "sjc",
    "cdg", "lax", "yyz", "arn", "bom", "ewr", "gru", "jnb",
    "sea", "atl", "mia", "den", "bos", "phx", "yul", "mad", "waw", "otp",
    "hkg", "scl", "eze", "bog", "gig", "gdl", "qro",
)  # fmt: skip

# The sample fleet's service check (fly.toml [[http_service.checks]]), with Fly's default
# timeout (2 s) instead of the sample fleet's 1 s: on a busy 2-core host a 1 s probe of 200
# local processes times out now and then, and the executor rightly fails a machine whose check
# keeps failing.
CHECK_INTERVAL_S = 2.0
CHECK_TIMEOUT_S = 2.0
CHECK_GRACE_S = 2.0
_SHARED_1X = VMSize("shared", 1, 256, "shared-cpu-1x")


@dataclass(frozen=True, slots=True)
class FleetShape:
    """A synthetic fleet: machines per region and the rollout waves.

    Attributes:
        counts: region code → machine count, primary first.
        waves: region codes per wave, in rollout order.
        max_unavailable: machines of a region that may be down at once (an absolute count, or
            a fraction < 1 of the region's count, rounded up, as flyctl's ``--max-unavailable``).
        bake_s: the metrics gate's bake time per wave (0: no metrics gate).
        replicate_interval_s: seconds between a replica's pulls from the primary (the sample
            app's ``SAMPLE_APP_REPLICATE_INTERVAL``); a slower pull keeps 200 replicas from
            loading the local Fly's proxy while the rollout is measured.
        max_concurrency: the waves' ``max_concurrency`` (API operations in flight per wave).
    """

    counts: Mapping[str, int]
    waves: tuple[tuple[str, ...], ...]
    max_unavailable: float = 0.33
    bake_s: float = 0.0
    replicate_interval_s: float = 60.0
    max_concurrency: int = 64

    @property
    def primary(self) -> str:
        """Return the primary region (the first one)."""
        return next(iter(self.counts))

    @property
    def machines(self) -> int:
        """Return the number of machines."""
        return sum(self.counts.values())

    def budget(self, region: str) -> int:
        """Return the region's ``max_unavailable`` as a count (fractions rounded up, ≥ 1)."""
        mu = self.max_unavailable
        if mu >= 1:
            return int(mu)
        return max(1, math.ceil(mu * self.counts[region]))


def spread(machines: int, regions: int) -> dict[str, int]:
    """Return ``machines`` spread as evenly as possible over the first ``regions`` regions."""
    if not 1 <= regions <= len(REGION_ORDER):
        raise ValueError(f"regions must be 1..{len(REGION_ORDER)}, got {regions}")
    if machines < regions:
        raise ValueError(f"need at least one machine per region ({machines} < {regions})")
    base, extra = divmod(machines, regions)
    return {code: base + (1 if i < extra else 0) for i, code in enumerate(REGION_ORDER[:regions])}


def synthetic_spec(shape: FleetShape, image: str = IMAGE_V1) -> DeploySpec:
    """Return the spec of ``shape`` built from the dataclasses (no files, no count cap)."""
    primary = shape.primary
    regions = {
        code: RegionSpec(
            code=code,
            count=count,
            vm=_SHARED_1X,
            volume_size_gb=1,
            role="primary" if code == primary else "replica",
            max_unavailable=shape.budget(code),
            source=f"regions/{code}.toml",
        )
        for code, count in sorted(shape.counts.items())
    }
    waves = tuple(
        WaveSpec(
            index=i + 1,
            regions=tuple(w),
            bake_s=shape.bake_s,
            max_concurrency=shape.max_concurrency,
        )
        for i, w in enumerate(shape.waves)
    )
    return DeploySpec(
        app=APP,
        primary_region=primary,
        image=image,
        env={"DATA_DIR": "/app/.data", "LOG_LEVEL": "info"},
        mount=MountSpec(source="data", destination="/app/.data", initial_size_gb=1),
        service=ServiceSpec(
            internal_port=8080,
            min_machines_running=1,
            checks=(
                ServiceCheckSpec(
                    type="http",
                    method="GET",
                    path="/status",
                    interval_s=CHECK_INTERVAL_S,
                    timeout_s=CHECK_TIMEOUT_S,
                    grace_period_s=CHECK_GRACE_S,
                ),
            ),
        ),
        regions=regions,
        waves=waves,
        root=".",
    )


def _machine_id(n: int) -> str:
    return f"{n:014x}"


def fleet_json(spec: DeploySpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return (machines, volumes) as the Machines API lists them for a fleet at ``spec``.

    Every machine runs its slot's desired config (with its own volume attached), is started,
    and has a passing check, so a plan against another image updates every machine.
    """
    machines: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    n = 0
    for code, rs in spec.regions.items():
        # One config per region, copied per slot: the slot only changes two metadata values.
        template = desired_config(spec, code, 1)
        for slot in range(1, rs.count + 1):
            n += 1
            mid = _machine_id(n)
            vid = f"vol_{mid}"
            config = copy.deepcopy(template)
            config["metadata"]["orch_slot"] = str(slot)
            config["mounts"][0]["volume"] = vid
            machines.append(
                {
                    "id": mid,
                    "name": f"{spec.app}-{code}-{slot}",
                    "state": "started",
                    "region": code,
                    "instance_id": f"01J{n:023d}",
                    "private_ip": f"fdaa:0:1::{n:x}",
                    "config": config,
                    "image_ref": {
                        "registry": "registry.fly.io",
                        "repository": "sample-app",
                        "tag": spec.image.rsplit(":", 1)[-1],
                    },
                    "checks": [{"name": "status", "status": "passing", "output": "200 OK"}],
                    "events": [],
                    "host_status": "ok",
                    "created_at": "2026-01-01T00:00:00Z",
                    "updated_at": "2026-01-01T00:00:00Z",
                }
            )
            volumes.append(
                {
                    "id": vid,
                    "name": "data",
                    "state": "created",
                    "size_gb": rs.volume_size_gb,
                    "region": code,
                    "zone": "b6a7",
                    "encrypted": True,
                    "attached_machine_id": mid,
                    "created_at": "2026-01-01T00:00:00Z",
                    "host_status": "ok",
                    "snapshot_retention": 5,
                    "auto_backup_enabled": True,
                }
            )
    return machines, volumes


_FLY_TOML = """\
# A synthetic fleet written by bench/rollout.py (the sample fleet's app settings).
app = "{app}"
primary_region = "{primary}"

[build]
  image = "{image}"

[env]
  DATA_DIR = "/app/.data"
  LOG_LEVEL = "info"
  SAMPLE_APP_REPLICATE_INTERVAL = "{replicate}"

[[mounts]]
  source = "data"
  destination = "/app/.data"
  initial_size = "1gb"

[http_service]
  internal_port = 8080
  force_https = true
  auto_stop_machines = "off"
  auto_start_machines = true
  min_machines_running = 1
  [[http_service.checks]]
    method = "GET"
    path = "/status"
    interval = "{interval}"
    timeout = "{timeout}"
    grace_period = "{grace}"

[[vm]]
  size = "shared-cpu-1x"
  memory = "256mb"
"""

_REGION_TOML = """\
role = "{role}"
count = {count}
vm = "shared-cpu-1x"
memory_mb = 256
volume_size_gb = 1
max_unavailable = {max_unavailable}
"""


def _go(seconds: float) -> str:
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{round(seconds * 1000)}ms"


def write_fleet(root: Path, shape: FleetShape, image: str = IMAGE_V1) -> None:
    """Write ``fly.toml``, ``regions/<code>.toml`` and ``regions/waves.toml`` for ``shape``."""
    (root / "regions").mkdir(parents=True, exist_ok=True)
    (root / "fly.toml").write_text(
        _FLY_TOML.format(
            app=APP,
            primary=shape.primary,
            image=image,
            interval=_go(CHECK_INTERVAL_S),
            timeout=_go(CHECK_TIMEOUT_S),
            grace=_go(CHECK_GRACE_S),
            replicate=f"{shape.replicate_interval_s:g}",
        )
    )
    mu = shape.max_unavailable
    for code, count in shape.counts.items():
        (root / "regions" / f"{code}.toml").write_text(
            _REGION_TOML.format(
                role="primary" if code == shape.primary else "replica",
                count=count,
                max_unavailable=int(mu) if mu >= 1 else mu,
            )
        )
    lines = [
        "# Rollout waves of a synthetic benchmark fleet.",
        "[defaults]",
        f'  bake_time = "{_go(shape.bake_s)}"',
        "  max_error_rate = 0.05",
        "  max_p95_ms = 1000",
        '  on_failure = "halt"',
        f"  max_concurrency = {shape.max_concurrency}",
        "",
    ]
    for wave in shape.waves:
        lines += ["[[wave]]", "  regions = [" + ", ".join(f'"{r}"' for r in wave) + "]", ""]
    (root / "regions" / "waves.toml").write_text("\n".join(lines))
