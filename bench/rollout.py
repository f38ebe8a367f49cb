"""Measure a release rollout on the local Fly against its makespan bound and a flyctl baseline.

One run, everything side by side on one local Fly this script starts (and stops) itself:

1. write a synthetic fleet (``fly.toml``, ``regions/*.toml``, ``regions/waves.toml``) on the
   sample app image ``v1`` in a temporary directory, and start a local Fly on it with the
   ``realistic`` latency profile at ``--time-factor``;
2. deploy it through the product (``orchestrator.commands.deploy.deploy``, in a child process, so
   the orchestrator's CPU and peak RSS are its own);
3. deploy image ``v2`` the same way: this is the measured rollout (``wall_s``), compared with
   ``bound_s``, the makespan of the same plan when every step takes exactly the profile's
   configured durations and the orchestrator adds nothing (``bench/bound.py``);
4. roll image ``v3`` out with the flyctl-style baseline (``bench/baseline.py``) on the same
   fleet: ``baseline_s``.

API calls and 429s come from the local Fly's own counters (``/_localfly/stats``), reset before
each measured rollout. Sizes: ``s`` = 3 regions * 4 machines, waves [1 region], [2 regions];
``m`` = 10 regions * 20 machines, waves of 1, 3 and 6 regions.

    .venv/bin/python bench/rollout.py --size s [--time-factor 0.25] [--json]
    .venv/bin/python bench/rollout.py --size m --time-factor 1 --json
    .venv/bin/python bench/rollout.py --profile sim --machines 10000 --regions 35 --json
    .venv/bin/python bench/rollout.py --profile sim --sweep --json

``--profile sim`` runs on the local Fly's ``sim`` profile (machines without processes, timed
like ``realistic``): see ``bench/sim.py``. Each run also writes its JSON and an SVG timeline
(``bench/picture.py``) to ``--out-dir`` (default ``bench/out/``, git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import psutil

from bench.baseline import BaselineError, rolling_deploy
from bench.bound import expected_makespan, makespan_bound
from bench.common import emit, log, tree_rss_mb
from bench.fleet import APP, IMAGE_V1, IMAGE_V2, IMAGE_V3, REGION_ORDER, FleetShape, write_fleet
from bench.picture import in_flight, write_timeline
from bench.trace import machine_phases, read_requests
from orchestrator.fleetconfig.load import load_spec
from orchestrator.fly.client import FlyClient
from orchestrator.fly.models import Machine
from orchestrator.localfly import control
from orchestrator.localfly.profiles import get_profile
from orchestrator.plan import build_plan, observe
from orchestrator.plan.model import Plan

SIZES: Mapping[str, FleetShape] = {
    "s": FleetShape(
        counts={code: 4 for code in REGION_ORDER[:3]},
        waves=((REGION_ORDER[0],), REGION_ORDER[1:3]),
    ),
    "m": FleetShape(
        counts={code: 20 for code in REGION_ORDER[:10]},
        waves=((REGION_ORDER[0],), REGION_ORDER[1:4], REGION_ORDER[4:10]),
    ),
}
DEFAULT_TIME_FACTOR = {"s": 0.25, "m": 1.0}
# The goals the rollout is judged against (docs/performance.md).
GOALS = {
    "ratio_to_bound_max": 1.10,
    "speedup_vs_baseline_min_at_m": 3.0,
    "http_429_max": 0,
    "api_calls_per_machine_max": 6.0,
}
_SCRUBBED_ENV = ("FLY_API_TOKEN", "FLY_FLAPS_BASE_URL", "FLY_APP_NAME", "FLY_ACCESS_TOKEN")


# -- the child: one product deploy in its own process ----------------------------------------


async def _child_deploy(root: Path, image: str, poll_s: float) -> dict[str, Any]:
    """Deploy ``image`` from the fleet at ``root`` through the product; return the figures."""
    from orchestrator.commands.deploy import DeployRequest, DryRun, deploy
    from orchestrator.connect import load_settings
    from orchestrator.execute import journal as journal_module
    from orchestrator.execute.context import ExecuteOptions

    # Count the journal's transactions (each one commit, fsynced): what the journal costs per
    # machine. The product is not changed; its write path is wrapped in this process only.
    writes = 0
    write = journal_module.Journal._write

    @contextlib.contextmanager
    def counted(self: Any, **kw: Any) -> Iterator[Any]:
        nonlocal writes
        writes += 1
        with write(self, **kw) as db:
            yield db

    journal_module.Journal._write = counted  # type: ignore[method-assign]
    settings = load_settings(root)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    result = await deploy(
        settings, DeployRequest(image=image), options=ExecuteOptions(poll_s=poll_s)
    )
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    if isinstance(result, DryRun):  # pragma: no cover - never asked for
        raise SystemExit("a dry run came back")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "outcome": result.outcome,
        "error": result.error,
        "release": result.release,
        "mutating_steps": result.mutating_steps,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "process_cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_rss_mb": round(usage.ru_maxrss / 1024.0, 1),
        "journal_writes": writes,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "steps": [s.to_json() for s in result.steps],
    }


def _run_child(root: Path, image: str, poll_s: float, timeout: float) -> dict[str, Any]:
    """Run one product deploy in a child process and return its JSON (bounded by ``timeout``)."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--deploy-child", str(root)]
    cmd += ["--image", image, "--poll", repr(poll_s)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=root, text=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"outcome": "failed", "error": f"the deploy did not finish within {timeout:g}s"}
    if proc.returncode != 0 or not out.strip():
        tail = " | ".join(err.strip().splitlines()[-3:])
        return {"outcome": "failed", "error": f"deploy child exited {proc.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(out)
    result["child_wall_s"] = round(time.perf_counter() - t0, 3)
    return result


# -- measuring the local Fly -------------------------------------------------------------------


def _stats(api_url: str, token: str, *, reset: bool = False) -> dict[str, Any]:
    """Read (or reset) ``/_localfly/stats``."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=30.0, trust_env=False) as http:
        resp = http.delete("/_localfly/stats") if reset else http.get("/_localfly/stats")
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data


def _api_counts(stats: Mapping[str, Any]) -> tuple[int, int, dict[str, int]]:
    """Return (Machines API calls, 429s, calls by operation).

    The local Fly's control routes and its edge proxy (the app's own traffic) are left out.
    """
    by_op: dict[str, int] = {}
    total = limited = 0
    for op, statuses in (stats.get("operations") or {}).items():
        if op.startswith("localfly_") or op == "proxy":
            continue
        n = sum(int(v) for v in statuses.values())
        by_op[op] = n
        total += n
        limited += int(statuses.get("429", 0))
    return total, limited, dict(sorted(by_op.items()))


def _with_others(cpu: dict[str, float], orchestrator_s: float | None) -> dict[str, float]:
    """Add ``others_cpu_s``: host CPU used by neither the local Fly, its machines nor us."""
    ours = cpu["localfly_server_cpu_s"] + cpu["machines_cpu_s"] + float(orchestrator_s or 0.0)
    return {**cpu, "others_cpu_s": round(cpu["host_busy_cpu_s"] - ours, 2)}


def _proxy_count(stats: Mapping[str, Any]) -> int:
    """Return the requests the edge proxy served (the app's traffic, not API calls)."""
    return sum(int(v) for v in ((stats.get("operations") or {}).get("proxy") or {}).values())


@dataclass(slots=True)
class _CpuMark:
    """CPU seconds at one moment: the local Fly server, its machines, and the whole host."""

    server: float
    machines: float
    host_busy: float
    at: float


def _cpu_mark(server_pid: int) -> _CpuMark:
    server = psutil.Process(server_pid)
    own = server.cpu_times()
    machines = own.children_user + own.children_system
    for child in server.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            t = child.cpu_times()
            machines += t.user + t.system
    host = psutil.cpu_times()
    busy = host.user + host.nice + host.system + getattr(host, "irq", 0.0)
    busy += getattr(host, "softirq", 0.0) + getattr(host, "steal", 0.0)
    return _CpuMark(own.user + own.system, machines, busy, time.monotonic())


def _cpu_delta(a: _CpuMark, b: _CpuMark) -> dict[str, float]:
    wall = max(1e-9, b.at - a.at)
    cores = psutil.cpu_count() or 1
    return {
        "localfly_server_cpu_s": round(b.server - a.server, 2),
        "machines_cpu_s": round(b.machines - a.machines, 2),
        "host_busy_cpu_s": round(b.host_busy - a.host_busy, 2),
        "host_utilisation": round((b.host_busy - a.host_busy) / (wall * cores), 3),
        "cores": cores,
    }


@dataclass(slots=True)
class _MemorySampler:
    """Track the peak RSS of the local Fly server and of its machine processes (a thread)."""

    server_pid: int
    every_s: float = 1.0
    peak_server_mb: float = 0.0
    peak_machines_mb: float = 0.0
    peak_processes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        """Take one reading."""
        try:
            server = psutil.Process(self.server_pid)
            self.peak_server_mb = max(self.peak_server_mb, server.memory_info().rss / 2**20)
            children = server.children(recursive=True)
        except psutil.Error:
            return
        total = 0.0
        for child in children:
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss / 2**20
        self.peak_machines_mb = max(self.peak_machines_mb, total)
        self.peak_processes = max(self.peak_processes, len(children))

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()

    def __enter__(self) -> _MemorySampler:
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)


# -- the plan, the bound, and checking the fleet ------------------------------------------------


async def _plan_for(root: Path, api_url: str, token: str, image: str) -> Plan:
    spec = load_spec(root, image_override=image)
    async with FlyClient(api_url, token) as client:
        fleet = await observe(client, spec.app)
    return build_plan(spec, fleet, image=image)


async def _machines(api_url: str, token: str) -> list[Machine]:
    async with FlyClient(api_url, token) as client:
        return await client.list_machines(APP)


def _trace(state_dir: Path, machines: list[Machine], since: float, until: float) -> dict[str, Any]:
    """Return the per-machine phases of the rollout between ``since`` and ``until``."""
    events = {m.id: list(m.raw.get("events") or []) for m in machines}
    return machine_phases(read_requests(state_dir / "requests.log", since, until), events)


def _localfly_share(
    trace: Mapping[str, Any], profile: Any, per_kind: Mapping[str, float], bound_s: float
) -> dict[str, float]:
    """Return the local Fly's own time per update beyond its profile, and on the critical path.

    ``replace_s`` (update accepted → new process spawned, or the simulated launch) less the
    profile's mean update delay is what the local Fly itself adds: stopping the old process and
    spawning the new one. The bound has it once per round, ``bound_s`` / the bound's update.
    """
    phases = trace.get("phases") or {}
    replace = float((phases.get("replace_s") or {}).get("mean") or 0.0)
    delay = (profile.update.lo + profile.update.hi) / 2.0 * profile.time_factor
    extra = max(0.0, replace - delay) if replace else 0.0
    step = float(per_kind.get("machine.update") or 0.0)
    rounds = round(bound_s / step) if step else 0
    return {
        "replace_s_mean": round(replace, 3),
        "profile_update_s": round(delay, 3),
        "extra_per_update_s": round(extra, 3),
        "rounds_in_bound": rounds,
        "on_critical_path_s": round(extra * rounds, 3),
    }


def _fleet_problems(machines: list[Machine], image: str, expected: int) -> list[str]:
    """Say what is wrong with the fleet after a rollout to ``image`` (nothing: empty list)."""
    live = [m for m in machines if m.state != "destroyed"]
    problems = []
    if len(live) != expected:
        problems.append(f"{len(live)} machines, expected {expected}")
    for m in live:
        if m.config.image != image:
            problems.append(f"{m.id} runs {m.config.image}")
        elif m.state != "started" or not m.checks_passing:
            problems.append(f"{m.id} is {m.state}, checks passing: {m.checks_passing}")
    return problems[:5]


async def _settle(api_url: str, token: str, image: str, expected: int, limit_s: float) -> float:
    """Wait (bounded) until every machine runs ``image`` with passing checks; return seconds."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        if not _fleet_problems(await _machines(api_url, token), image, expected):
            break
        await asyncio.sleep(0.5)
    return time.monotonic() - t0


def _ts(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


def _spans(child: Mapping[str, Any]) -> list[tuple[float, float, int]]:
    """Return (start_s, end_s, wave) of the product's machine steps, from its start."""
    origin = _ts(child.get("started_at"))
    out = []
    for s in child.get("steps") or []:
        start, end = _ts(s.get("started_at")), _ts(s.get("finished_at"))
        if origin is None or start is None or end is None or not s["kind"].startswith("machine."):
            continue
        out.append((start - origin, end - origin, int(s["wave"])))
    return out


def _breakdown(child: Mapping[str, Any]) -> dict[str, Any]:
    """Return where the product's rollout spent its time, from its step reports."""
    steps = [s for s in child.get("steps") or [] if s.get("started_at")]
    if not steps:
        return {}
    origin = _ts(child.get("started_at")) or min(_ts(s["started_at"]) or 0.0 for s in steps)
    by_kind: dict[str, list[float]] = {}
    waves: dict[int, list[float]] = {}
    for s in steps:
        start, end = _ts(s["started_at"]), _ts(s["finished_at"])
        if start is None or end is None:
            continue
        by_kind.setdefault(s["kind"], []).append(end - start)
        w = waves.setdefault(int(s["wave"]), [start, end])
        w[0], w[1] = min(w[0], start), max(w[1], end)
    first = min(_ts(s["started_at"]) or 0.0 for s in steps)
    last = max(w[1] for w in waves.values()) if waves else first
    wall = child.get("wall_s")
    return {
        "before_first_step_s": round(first - origin, 3),
        # The deploy's time outside its steps: before them the lock, the split check (every
        # machine's /status), the observe and the plan; after them the writable-primary gate.
        "outside_steps_s": round(float(wall) - (last - first), 3)
        if isinstance(wall, int | float)
        else None,
        "steps": {
            kind: {
                "n": len(d),
                "mean_s": round(statistics.fmean(d), 3),
                "max_s": round(max(d), 3),
            }
            for kind, d in sorted(by_kind.items())
        },
        "waves": [
            {"wave": k, "start_s": round(v[0] - origin, 3), "end_s": round(v[1] - origin, 3)}
            for k, v in sorted(waves.items())
        ],
    }


# -- the run -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _local_fly(
    state_dir: Path, time_factor: float, *, purge: bool, profile: str = "realistic"
) -> Iterator[control.Endpoint]:
    """Start a local Fly on ``state_dir``; stop it (and its machines) by pid afterwards."""
    endpoint: control.Endpoint | None = None
    try:
        endpoint = control.ensure_running(
            state_dir, profile=profile, time_factor=time_factor, timeout=120.0
        )
        yield endpoint
    finally:
        with contextlib.suppress(Exception):
            control.stop(state_dir, purge=purge)
        if endpoint is not None and psutil.pid_exists(endpoint.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                proc = psutil.Process(endpoint.pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    os.kill(endpoint.pid, signal.SIGKILL)


@dataclass(frozen=True, slots=True)
class _Bench:
    """What every phase of one run needs: the fleet, the local Fly, the knobs."""

    shape: FleetShape
    root: Path
    endpoint: control.Endpoint
    time_factor: float
    poll_s: float
    timeout: float
    samples: int

    @property
    def state_dir(self) -> Path:
        """Return the local Fly's state directory."""
        return self.endpoint.state_dir

    @property
    def api(self) -> str:
        """Return the Machines API base URL."""
        return self.endpoint.api_url

    @property
    def token(self) -> str:
        """Return the local Fly's bearer token."""
        return self.endpoint.token


def _memory(server_pid: int, sampler: _MemorySampler) -> dict[str, Any]:
    """Return the local Fly's and its machines' memory now, with the peaks the sampler saw."""
    server = psutil.Process(server_pid)
    children = server.children(recursive=True)
    return {
        "localfly_server_rss_mb": round(server.memory_info().rss / 2**20, 1),
        "localfly_server_peak_rss_mb": round(sampler.peak_server_mb, 1),
        "machine_processes": len(children),
        "machines_peak_rss_mb": round(sampler.peak_machines_mb, 1),
        "machines": tree_rss_mb([p.pid for p in children]),
        "host_used_mb": round(psutil.virtual_memory().used / 2**20, 1),
        "host_available_mb": round(psutil.virtual_memory().available / 2**20, 1),
    }


def _product_rollout(b: _Bench) -> tuple[bool, dict[str, Any]]:
    """Deploy ``v2`` through the product and measure it against its bound."""
    machines = b.shape.machines
    plan = asyncio.run(_plan_for(b.root, b.api, b.token, IMAGE_V2))
    profile = get_profile("realistic", b.time_factor)
    budget = {r: b.shape.budget(r) for r in b.shape.counts}
    bound = makespan_bound(plan, profile, budget)
    expected = expected_makespan(plan, profile, budget, samples=b.samples)

    _stats(b.api, b.token, reset=True)
    cpu0 = _cpu_mark(b.endpoint.pid)
    since = time.time()
    with _MemorySampler(b.endpoint.pid) as sampler:
        product = _run_child(b.root, IMAGE_V2, b.poll_s, b.timeout)
        cpu1 = _cpu_mark(b.endpoint.pid)
        until = time.time()
        stats = _stats(b.api, b.token)
        sampler.sample()
    calls, limited, by_op = _api_counts(stats)
    fleet_now = asyncio.run(_machines(b.api, b.token))
    problems = _fleet_problems(fleet_now, IMAGE_V2, machines)
    wall = float(product.get("wall_s") or 0.0)
    mean = expected["mean_s"]
    trace = _trace(b.state_dir, fleet_now, since, until)
    share = _localfly_share(trace, profile, bound.per_kind, bound.seconds)
    overhead = wall - mean - share["on_critical_path_s"] if mean else None
    return product.get("outcome") == "succeeded" and not problems, {
        "outcome": product.get("outcome"),
        "error": product.get("error") or ("; ".join(problems) or None),
        "wall_s": wall,
        "bound_s": round(bound.seconds, 3),
        "ratio_to_bound": round(wall / bound.seconds, 3) if bound.seconds else None,
        "bound_expected_s": mean,
        "ratio_to_expected_bound": round(wall / mean, 3) if mean else None,
        "api_calls": calls,
        "api_calls_per_machine": round(calls / machines, 2),
        "http_429": limited,
        "orchestrator_cpu_s": product.get("cpu_s"),
        "orchestrator_process_cpu_s": product.get("process_cpu_s"),
        "orchestrator_peak_rss_mb": product.get("peak_rss_mb"),
        "journal_writes": product.get("journal_writes"),
        "calls_by_operation": by_op,
        "cpu": _with_others(_cpu_delta(cpu0, cpu1), product.get("process_cpu_s")),
        "memory": _memory(b.endpoint.pid, sampler),
        "bound": {
            "per_step_s": bound.per_kind,
            "critical_path_steps": len(bound.path),
            "expected": expected,
        },
        "product_breakdown": _breakdown(product),
        "in_flight": in_flight(_spans(product)),
        "product_trace": trace,
        "localfly_share": share,
        "orchestrator_overhead_s": round(overhead, 3) if overhead is not None else None,
        "orchestrator_overhead_pct": round(100.0 * overhead / wall, 2)
        if overhead is not None and wall
        else None,
        "proxy_requests": _proxy_count(stats),
    }


def _baseline_rollout(b: _Bench) -> tuple[bool, dict[str, Any]]:
    """Roll ``v3`` out with the flyctl-style baseline and measure it."""
    machines = b.shape.machines
    _stats(b.api, b.token, reset=True)
    order = [r for wave in b.shape.waves for r in wave]
    cpu0 = _cpu_mark(b.endpoint.pid)
    own0 = time.process_time()
    error: str | None = None
    since = time.time()
    try:
        result = asyncio.run(_baseline(b.api, b.token, order, b.time_factor, b.timeout))
        summary = result.summary()
    except (BaselineError, TimeoutError) as exc:
        error, summary = str(exc) or type(exc).__name__, {}
    cpu1 = _cpu_mark(b.endpoint.pid)
    own = round(time.process_time() - own0, 3)
    until = time.time()
    calls, limited, by_op = _api_counts(_stats(b.api, b.token))
    fleet_now = asyncio.run(_machines(b.api, b.token))
    problems = _fleet_problems(fleet_now, IMAGE_V3, machines)
    ok = error is None and not problems
    return ok, {
        **summary,
        "succeeded": ok,
        "error": error or ("; ".join(problems) or None),
        "api_calls": calls,
        "api_calls_per_machine": round(calls / machines, 2),
        "http_429": limited,
        "calls_by_operation": by_op,
        "orchestrator_cpu_s": own,
        "cpu": _with_others(_cpu_delta(cpu0, cpu1), own),
        "trace": _trace(b.state_dir, fleet_now, since, until),
    }


def run(size: str, time_factor: float, *, samples: int, keep: bool) -> dict[str, Any]:
    """Run the whole benchmark for ``size`` and return its JSON object."""
    shape = SIZES[size]
    machines = shape.machines
    poll_s = 1.0 * time_factor
    timeout = 600.0 + 20.0 * machines * max(1.0, time_factor)
    work = Path(tempfile.mkdtemp(prefix=f"bench-rollout-{size}-"))
    root = work / "fleet"
    out: dict[str, Any] = {
        "benchmark": "rollout",
        "size": size,
        "profile": "realistic",
        "time_factor": time_factor,
        "machines": machines,
        "regions": len(shape.counts),
        "waves": [list(w) for w in shape.waves],
        "max_unavailable": {r: shape.budget(r) for r in shape.counts},
        "poll_s": poll_s,
        "succeeded": False,
    }
    # Seconds from the start of the run at which each phase ended (where a run's time goes).
    clock0 = time.perf_counter()
    timeline: dict[str, float] = {}
    out["timeline_s"] = timeline

    def lap(name: str) -> None:
        timeline[name] = round(time.perf_counter() - clock0, 2)

    try:
        write_fleet(root, shape, IMAGE_V1)
        log(f"rollout {size}: starting the local Fly (realistic, time factor {time_factor:g})")
        with _local_fly(root / ".localfly", time_factor, purge=not keep) as ep:
            b = _Bench(shape, root, ep, time_factor, poll_s, timeout, samples)
            out["localfly_pid"] = ep.pid
            lap("localfly_started")

            log(f"rollout {size}: deploying v1 ({machines} machines) ...")
            setup = _run_child(root, IMAGE_V1, poll_s, timeout)
            lap("setup_deployed")
            out["setup"] = {k: setup.get(k) for k in ("outcome", "error", "wall_s", "peak_rss_mb")}
            out["setup"]["breakdown"] = _breakdown(setup)
            if setup.get("outcome") != "succeeded":
                out["error"] = f"setup deploy of v1: {setup.get('outcome')}: {setup.get('error')}"
                return out

            log(f"rollout {size}: deploying v2 (measured) ...")
            ok, product = _product_rollout(b)
            out.update(product)
            lap("product_deployed")
            if not ok:
                return out

            log(f"rollout {size}: rolling v3 out with the flyctl-style baseline ...")
            baseline_ok, baseline = _baseline_rollout(b)
            lap("baseline_deployed")
            baseline_s = float(baseline.get("wall_s") or 0.0)
            wall = float(product["wall_s"])
            out.update(
                {
                    "baseline_s": baseline_s,
                    "speedup_vs_baseline": round(baseline_s / wall, 3) if wall else None,
                    "baseline": baseline,
                    "succeeded": baseline_ok,
                }
            )
            out["goals"] = _goals(out)
            return out
    finally:
        lap("localfly_stopped")
        if keep:
            out["kept"] = str(work)
        else:
            shutil.rmtree(work, ignore_errors=True)


async def _baseline(
    api: str, token: str, order: list[str], time_factor: float, timeout: float
) -> Any:
    async with FlyClient(api, token) as client:
        return await asyncio.wait_for(
            rolling_deploy(client, APP, IMAGE_V3, order, time_factor=time_factor), timeout
        )


def _goals(out: Mapping[str, Any]) -> dict[str, Any]:
    """Say which of the goals this run met."""
    goals: dict[str, Any] = {
        "ratio_to_bound<=1.10": (out.get("ratio_to_bound") or 99) <= GOALS["ratio_to_bound_max"],
        "http_429==0": out.get("http_429") == 0,
        "api_calls_per_machine<=6": (out.get("api_calls_per_machine") or 99)
        <= GOALS["api_calls_per_machine_max"],
    }
    if out.get("size") == "m":
        goals["speedup_vs_baseline>=3"] = (out.get("speedup_vs_baseline") or 0) >= GOALS[
            "speedup_vs_baseline_min_at_m"
        ]
    return goals


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run the benchmark (or, internally, one deploy), print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", choices=sorted(SIZES), default="s", help="fleet size")
    parser.add_argument(
        "--time-factor",
        type=float,
        default=None,
        help="the local Fly's time compression (default: s 0.25, m 1.0, sim 0.25, --sweep 0.1)",
    )
    parser.add_argument("--json", action="store_true", help="one-line JSON (else indented)")
    parser.add_argument(
        "--samples", type=int, default=200, help="draws for the expected (simulated) bound"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary fleet directory and the local Fly's state and logs",
    )
    parser.add_argument(
        "--profile",
        choices=("realistic", "sim"),
        default="realistic",
        help="real machine processes (realistic, with --size) or simulated ones (sim)",
    )
    parser.add_argument("--machines", type=int, default=1000, help="sim: machines in the fleet")
    parser.add_argument("--regions", type=int, default=35, help="sim: regions they spread over")
    parser.add_argument(
        "--sweep", action="store_true", help="sim: 1,000, 3,000 and 10,000 machines, 35 regions"
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path(__file__).resolve().parent / "out",
        help="where each run's JSON and SVG timeline go (default bench/out/)",
    )
    parser.add_argument("--deploy-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    parser.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.deploy_child is not None:
        prof_out = os.environ.get("BENCH_CPROFILE")
        if prof_out:
            # Profile the measured deploy (the orchestrator alone) to find what its CPU goes to.
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        result = asyncio.run(_child_deploy(args.deploy_child, args.image, args.poll))
        if prof_out:
            prof.disable()
            prof.dump_stats(f"{prof_out}.{args.image.rsplit(':', 1)[-1]}")
        emit(result, compact=True)
        return 0
    sim = args.profile == "sim"
    problems = []
    if args.time_factor is not None and not args.time_factor > 0:
        problems.append("--time-factor: must be > 0")
    if sim and not 1 <= args.regions <= len(REGION_ORDER):
        problems.append(f"--regions: must be 1..{len(REGION_ORDER)}")
    if sim and not args.sweep and not args.regions <= args.machines <= 35 * 1000:
        problems.append("--machines: must be at least --regions and at most 35,000")
    if args.sweep and not sim:
        problems.append("--sweep: needs --profile sim")
    if problems:
        parser.error("; ".join(problems))
    from bench import sim as simbench

    if sim:
        default_tf = simbench.SWEEP_TIME_FACTOR if args.sweep else simbench.DEFAULT_TIME_FACTOR
        tf = args.time_factor if args.time_factor is not None else default_tf
    else:
        tf = args.time_factor if args.time_factor is not None else DEFAULT_TIME_FACTOR[args.size]
    name = (
        "rollout-sim-sweep"
        if args.sweep
        else f"rollout-sim-{args.machines}x{args.regions}"
        if sim
        else f"rollout-{args.size}"
    )
    try:
        if args.sweep:
            result = simbench.sweep(
                tf, samples=min(args.samples, 20), keep=args.keep, picture_dir=args.out_dir
            )
        elif sim:
            result = simbench.run_sim(
                args.machines,
                args.regions,
                tf,
                samples=min(args.samples, 20),
                keep=args.keep,
                picture=args.out_dir / f"{name}.svg",
            )
        else:
            result = run(args.size, tf, samples=args.samples, keep=args.keep)
            if result.get("in_flight"):
                result["picture"] = str(write_timeline(args.out_dir / f"{name}.svg", result))
    except Exception as exc:
        emit(
            {
                "benchmark": "rollout",
                "size": args.size if not sim else name,
                "succeeded": False,
                "error": f"{type(exc).__name__}: {exc}",
            },
            compact=args.json,
        )
        return 1
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    emit(result, compact=args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
