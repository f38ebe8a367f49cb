"""Measure a rollout at internet scale on the local Fly's ``sim`` profile (no machine processes).

``bench/rollout.py --profile sim --machines N --regions K [--time-factor F]`` runs this: the same
measured rollout as the real-process sizes (the product deploys image ``v2`` over a fleet at
``v1``, in waves of 1 region, a fifth of the regions, then the rest), compared with the same
bound, on a local Fly whose machines are state only and timed by the ``realistic`` profile.

What differs from the real-process sizes, and why:

- the ``v1`` fleet is written straight into the local Fly's state before it starts, instead of
  being deployed: Fly creates at most one machine per second per app, so deploying 10,000
  machines would take hours and measure nothing the update rollout does not;
- no flyctl-style baseline: it updates one region at a time, so at 35 regions it would take
  most of an hour, and what it shows (waves against regions in a row) the real sizes show;
- every wave runs at most ``max_concurrency`` = 64 steps at once (the most the loader allows),
  which at this size is what holds a wave back, not ``max_unavailable``; the bound keeps to it.

``--sweep`` runs 1,000, 3,000 and 10,000 machines over 35 regions and reports how each figure
grows from the first size to the others.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import log
from bench.fleet import (
    APP,
    IMAGE_V1,
    REGION_ORDER,
    FleetShape,
    fleet_json,
    spread,
    write_fleet,
)
from bench.picture import write_timeline
from orchestrator.fleetconfig.load import load_spec
from orchestrator.localfly.state import AppRecord, MachineRecord, Store, VolumeRecord
from orchestrator.localfly.statedir import prepare_state_dir
from orchestrator.localfly.util import iso_now

__all__ = ["GOALS", "SWEEP", "SWEEP_TIME_FACTOR", "run_sim", "sim_shape", "sweep"]

SWEEP = (1000, 3000, 10000)
SWEEP_REGIONS = 35
DEFAULT_TIME_FACTOR = 0.25
# The sweep's: every update waits out the smoke window (10 s, scaled), so at 0.25 a perfect
# orchestrator would need 78 + 183 + 547 s for its three sizes, past the sweep's 10 minutes
# before any set-up; at 0.1, 31 + 73 + 219 s.
SWEEP_TIME_FACTOR = 0.1
# The goals at 10,000 machines over 35 regions (docs/performance.md).
GOALS = {
    "ratio_to_bound_max": 1.05,
    "http_429_max": 0,
    "api_calls_per_machine_max": 5.0,
    "orchestrator_cpu_per_machine_ms_max": 2.0,
    "orchestrator_peak_rss_mb_max": 400.0,
    "time_per_machine_growth_max": 1.2,
}


def sim_shape(machines: int, regions: int) -> FleetShape:
    """Return ``machines`` over ``regions`` in waves of 1 region, a fifth, then the rest."""
    if not 1 <= regions <= len(REGION_ORDER):
        raise ValueError(f"--regions must be 1..{len(REGION_ORDER)}, got {regions}")
    counts = spread(machines, regions)
    codes = tuple(counts)
    second = max(1, math.ceil(regions / 5)) if regions > 1 else 0
    waves = [codes[:1], codes[1 : 1 + second], codes[1 + second :]]
    return FleetShape(
        counts=counts,
        waves=tuple(w for w in waves if w),
        max_unavailable=0.33,
        max_concurrency=64,
    )


def seed_fleet(root: Path, state_dir: Path) -> int:
    """Write the fleet at ``root`` (its ``v1`` spec) into a stopped local Fly's state.

    Every machine is ``started`` on its slot's config with its own volume, as a deploy of
    ``v1`` would leave it; the server launches them (no process under ``sim``) when it starts.
    Returns the number of machines written.
    """
    spec = load_spec(root, image_override=IMAGE_V1)
    machines, volumes = fleet_json(spec)
    prepare_state_dir(state_dir)
    for sub in ("machines", "volumes", "snapshots"):
        (state_dir / sub).mkdir(mode=0o700, exist_ok=True)
    store = Store(state_dir / "state.db")
    now = iso_now()
    try:
        store.put(AppRecord(id="app_bench", name=APP, org_slug="personal", network="default",
                            created_at=int(time.time())))  # fmt: skip
        for n, m in enumerate(machines, start=1):
            store.put(
                MachineRecord(
                    id=m["id"],
                    app=APP,
                    name=m["name"],
                    region=m["region"],
                    config=m["config"],
                    version=m["instance_id"],
                    state="started",
                    seq=n,
                    created_at=now,
                    updated_at=now,
                    private_ip=m["private_ip"],
                )
            )
        for v in volumes:
            store.put(
                VolumeRecord(
                    id=v["id"],
                    app=APP,
                    name=v["name"],
                    region=v["region"],
                    size_gb=int(v["size_gb"]),
                    state="created",
                    created_at=now,
                    attached_machine_id=v["attached_machine_id"],
                    zone=v["zone"],
                )
            )
    finally:
        store.close()
    return len(machines)


def run_sim(
    machines: int,
    regions: int,
    time_factor: float,
    *,
    samples: int,
    keep: bool,
    picture: Path | None = None,
) -> dict[str, Any]:
    """Run one measured rollout of ``machines`` over ``regions`` on the ``sim`` profile."""
    from bench import rollout as r

    shape = sim_shape(machines, regions)
    poll_s = 1.0 * time_factor
    timeout = 600.0 + 0.5 * machines * max(1.0, time_factor)
    work = Path(tempfile.mkdtemp(prefix=f"bench-sim-{machines}-"))
    root = work / "fleet"
    out: dict[str, Any] = {
        "benchmark": "rollout",
        "size": f"sim-{machines}x{regions}",
        "profile": "sim",
        "time_factor": time_factor,
        "machines": machines,
        "regions": regions,
        "waves": [list(w) for w in shape.waves],
        "max_unavailable": {k: shape.budget(k) for k in shape.counts},
        "max_concurrency": shape.max_concurrency,
        "poll_s": poll_s,
        "succeeded": False,
        "baseline_s": None,
        "speedup_vs_baseline": None,
        "baseline": {"succeeded": None, "note": "not run under sim (see bench/sim.py)"},
    }
    clock0 = time.perf_counter()
    timeline: dict[str, float] = {}
    out["timeline_s"] = timeline

    def lap(name: str) -> None:
        timeline[name] = round(time.perf_counter() - clock0, 2)

    try:
        write_fleet(root, shape, IMAGE_V1)
        log(f"sim {machines}x{regions}: seeding the v1 fleet")
        seed_fleet(root, root / ".localfly")
        lap("seeded")
        with r._local_fly(root / ".localfly", time_factor, purge=not keep, profile="sim") as ep:
            b = r._Bench(shape, root, ep, time_factor, poll_s, timeout, samples)
            out["localfly_pid"] = ep.pid
            lap("localfly_started")
            settled = asyncio.run(
                r._settle(ep.api_url, ep.token, IMAGE_V1, machines, 120.0 + machines / 50)
            )
            out["setup"] = {"outcome": "seeded", "settle_s": round(settled, 2)}
            lap("settled")
            log(f"sim {machines}x{regions}: deploying v2 (measured) ...")
            ok, product = r._product_rollout(b)
            out.update(product)
            lap("product_deployed")
            cpu = product.get("orchestrator_cpu_s") or 0.0
            out["orchestrator_cpu_per_machine_ms"] = round(1000.0 * float(cpu) / machines, 3)
            writes = product.get("journal_writes")
            out["journal_writes_per_machine"] = (
                round(float(writes) / machines, 2) if writes is not None else None
            )
            wall = float(product.get("wall_s") or 0.0)
            out["time_per_machine_ms"] = round(1000.0 * wall / machines, 3)
            out["succeeded"] = ok
            out["goals"] = goals(out)
            if picture is not None:
                write_timeline(picture, out)
                out["picture"] = str(picture)
            return out
    finally:
        lap("localfly_stopped")
        if keep:
            out["kept"] = str(work)
        else:
            shutil.rmtree(work, ignore_errors=True)


def goals(out: dict[str, Any], growth: float | None = None) -> dict[str, Any]:
    """Say which of the scale goals one run met (``growth``: time per machine against 1,000)."""
    g: dict[str, Any] = {
        "ratio_to_bound<=1.05": (out.get("ratio_to_bound") or 99) <= GOALS["ratio_to_bound_max"],
        "http_429==0": out.get("http_429") == 0,
        "api_calls_per_machine<=5": (out.get("api_calls_per_machine") or 99)
        <= GOALS["api_calls_per_machine_max"],
        "orchestrator_cpu_per_machine_ms<=2": (out.get("orchestrator_cpu_per_machine_ms") or 99)
        <= GOALS["orchestrator_cpu_per_machine_ms_max"],
        "orchestrator_peak_rss_mb<=400": (out.get("orchestrator_peak_rss_mb") or 9999)
        <= GOALS["orchestrator_peak_rss_mb_max"],
    }
    if growth is not None:
        g["time_per_machine_growth<=1.2"] = growth <= GOALS["time_per_machine_growth_max"]
    return g


_GROWN = (
    "wall_s",
    "bound_s",
    "ratio_to_bound",
    "time_per_machine_ms",
    "api_calls_per_machine",
    "http_429",
    "orchestrator_cpu_s",
    "orchestrator_cpu_per_machine_ms",
    "orchestrator_peak_rss_mb",
    "journal_writes_per_machine",
)


def sweep(
    time_factor: float,
    *,
    samples: int,
    keep: bool,
    sizes: Sequence[int] = SWEEP,
    regions: int = SWEEP_REGIONS,
    picture_dir: Path | None = None,
) -> dict[str, Any]:
    """Run ``sizes`` over ``regions`` one after another; report each and how it grew."""

    t0 = time.perf_counter()
    runs = []
    for n in sizes:
        pic = picture_dir / f"rollout-sim-{n}x{regions}.svg" if picture_dir is not None else None
        try:
            runs.append(run_sim(n, regions, time_factor, samples=samples, keep=keep, picture=pic))
        except Exception as exc:  # one size failing still reports the others
            runs.append(
                {"machines": n, "succeeded": False, "error": f"{type(exc).__name__}: {exc}"}
            )
        log(f"sweep: {n} machines: {runs[-1].get('wall_s')} s, ok={runs[-1].get('succeeded')}")
        if picture_dir is not None:
            # Each size as it finishes: a sweep stopped before the last keeps the others.
            picture_dir.mkdir(parents=True, exist_ok=True)
            (picture_dir / f"rollout-sim-{n}x{regions}.json").write_text(
                json.dumps(runs[-1], indent=1) + "\n"
            )
    first = runs[0]
    growth: dict[str, dict[str, float | None]] = {}
    for key in _GROWN:
        base = first.get(key)
        growth[key] = {
            str(run["machines"]): (
                round(float(run[key]) / float(base), 3)
                if isinstance(base, int | float) and base and isinstance(run.get(key), int | float)
                else None
            )
            for run in runs
        }
    last = runs[-1]
    tpm = growth["time_per_machine_ms"].get(str(last["machines"]))
    return {
        "benchmark": "rollout-sweep",
        "profile": "sim",
        "time_factor": time_factor,
        "regions": regions,
        "sizes": list(sizes),
        "succeeded": all(run.get("succeeded") for run in runs),
        "sweep_wall_s": round(time.perf_counter() - t0, 1),
        "growth_vs_first": growth,
        "goals_at_largest": goals(last, tpm),
        "runs": [{k: v for k, v in run.items() if k not in ("product_trace",)} for run in runs],
    }
