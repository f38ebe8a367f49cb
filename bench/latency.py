"""Measure how fast the answers come that the tests only check for: refusals, reads, replication.

The tests assert what happens (a held lock is refused, a fault delays only its operation, a
replica catches up); how long it takes is measured here, on a local Fly this script starts in
a temporary directory (profile ``fast``) and stops by PID:

- ``lock_refusal_ms``: a second ``DeployLock`` refused while another process holds the lock;
- ``scale_refusal_s``: ``invoke scale --region syd --count 2`` in a copy of the sample fleet,
  exiting 1 while a deploy holds the lock (the whole command: interpreter start, spec, fleet);
- ``api_ms``: the local Fly's round trip per read operation that has no rate limit (median;
  ``Machines_show`` is limited to 5/s), and ``fault_overhead``:
  the same reads while a 1.5 s delay rule holds another operation (ratio to without);
- ``replica_catch_up_s``: a write on a syd primary → visible on a dfw replica pulling through
  the edge proxy (the sample app's default 0.5 s interval); ``replication_lag_s``: what the
  replica's ``/status`` says right after.

One JSON object on stdout:

    .venv/bin/python bench/latency.py [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from bench.common import emit, log  # noqa: E402
from orchestrator.errors import DeployLocked  # noqa: E402
from orchestrator.execute.lock import DeployLock  # noqa: E402
from orchestrator.localfly import control  # noqa: E402

INVOKE = Path(sys.executable).with_name("invoke")
APP = "sample-fleet"  # the sample fleet's app (fly.toml)
REPLICA_APP = "bench-replica"
IMAGE = "registry.fly.io/sample-app:v1"
DEADLINE_S = 60.0

_HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from orchestrator.execute.lock import DeployLock
    DeployLock(Path(sys.argv[1]), "app", release="v1", command="deploy").acquire()
    print("held", flush=True)
    time.sleep(600)
    """
)


def _spread(values: list[float], digits: int) -> dict[str, float]:
    return {
        "min": round(min(values), digits),
        "median": round(statistics.median(values), digits),
        "max": round(max(values), digits),
    }


def _until(what: str, condition: Callable[[], Any]) -> Any:
    """Poll ``condition`` until it is truthy; fail after ``DEADLINE_S``."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.005)  # polling a condition with a deadline


def lock_refusals(root: Path, runs: int) -> list[float]:
    """Time ``runs`` refused acquisitions of a lock another process holds, in ms."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(root)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != "held":
            raise SystemExit("the lock holder did not start")
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            try:
                DeployLock(root, "app", release="v2", command="deploy").acquire()
            except DeployLocked:
                times.append((time.perf_counter() - started) * 1000)
            else:
                raise SystemExit("a held lock was taken")
        return times
    finally:
        holder.kill()
        holder.wait(timeout=30)
        if holder.stdout is not None:
            holder.stdout.close()


def scale_refusals(root: Path, runs: int) -> list[float]:
    """Time ``runs`` ``invoke scale`` commands refused by a held deploy lock, in seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLY_")}
    times = []
    with DeployLock(root, APP, release="v9-bench", command="deploy"):
        for _ in range(runs):
            started = time.perf_counter()
            proc = subprocess.run(
                [
                    str(INVOKE),
                    "--search-root",
                    str(REPO),
                    "scale",
                    "--region",
                    "syd",
                    "--count",
                    "2",
                ],
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
                timeout=DEADLINE_S,
                check=False,
            )
            times.append(time.perf_counter() - started)
            if proc.returncode != 1 or "is locked" not in proc.stderr:
                raise SystemExit(f"scale was not refused by the lock: {proc.stderr[-500:]}")
    return times


def _median_ms(http: httpx.Client, paths: dict[str, str], runs: int) -> dict[str, float]:
    out = {}
    for operation, path in paths.items():
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            http.get(path).raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
        out[operation] = round(statistics.median(times), 2)
    return out


def api_round_trips(ep: control.Endpoint, runs: int) -> dict[str, Any]:
    """Time read operations with no faults, then while a delay rule holds another one."""
    with httpx.Client(base_url=ep.api_url, headers=ep.headers, timeout=30) as http:
        http.post("/v1/apps", json={"name": "bench-reads"}).raise_for_status()
        vol = http.post(
            "/v1/apps/bench-reads/volumes", json={"name": "data", "region": "syd"}
        ).json()
        http.post(
            "/v1/apps/bench-reads/machines",
            json={"region": "syd", "config": {"image": IMAGE}, "skip_launch": True},
        ).raise_for_status()
        paths = {
            "Apps_show": "/v1/apps/bench-reads",
            "Machines_list": "/v1/apps/bench-reads/machines",
            "Volumes_list": "/v1/apps/bench-reads/volumes",
            "Volumes_get_by_id": f"/v1/apps/bench-reads/volumes/{vol['id']}",
        }
        plain = _median_ms(http, paths, runs)
        rule = {"operation": "Apps_list", "delay_ms": 1500}
        http.put("/_localfly/faults", json={"rules": [rule]}).raise_for_status()
        try:
            faulted = _median_ms(http, paths, runs)
        finally:
            http.delete("/_localfly/faults").raise_for_status()
    overhead = {op: round(faulted[op] / plain[op], 2) for op in paths if plain[op] > 0}
    return {"api_ms": plain, "api_ms_with_delay_rule": faulted, "fault_overhead": overhead}


def _replica_config(primary_region: str) -> dict[str, Any]:
    return {
        "image": IMAGE,
        "env": {"PRIMARY_REGION": primary_region},
        "services": [{"internal_port": 8080, "protocol": "tcp"}],
    }


def replica_catch_up(ep: control.Endpoint, runs: int) -> dict[str, Any]:
    """Write ``runs`` records on a syd primary; time each until the dfw replica holds it."""
    with httpx.Client(base_url=ep.api_url, headers=ep.headers, timeout=30) as api:
        api.post("/v1/apps", json={"name": REPLICA_APP}).raise_for_status()
        ids = {}
        for region in ("syd", "dfw"):
            made = api.post(
                f"/v1/apps/{REPLICA_APP}/machines",
                json={"region": region, "config": _replica_config("syd")},
            )
            made.raise_for_status()
            ids[region] = made.json()["id"]
    host = {"host": f"{REPLICA_APP}.fly.dev"}
    with httpx.Client(base_url=ep.proxy_url, headers=host, timeout=10) as edge:

        def status(region: str) -> dict[str, Any] | None:
            try:
                r = edge.get("/status", headers={"fly-force-instance-id": ids[region]})
            except httpx.TransportError:
                return None
            return r.json() if r.status_code == 200 else None

        _until("the primary", lambda: (s := status("syd")) and s["role"] == "primary")
        _until("the replica", lambda: (s := status("dfw")) and s["replication"] is not None)
        times = []
        lag = 0.0
        for n in range(runs):
            wrote = edge.post(
                "/records", json={"data": {"n": n}}, headers={"fly-prefer-region": "syd"}
            )
            wrote.raise_for_status()
            seq = wrote.json()["seq"]
            started = time.perf_counter()
            seen = _until(
                "the replica to catch up",
                lambda seq=seq: (s := status("dfw")) and s["last_seq"] >= seq and s,
            )
            times.append(time.perf_counter() - started)
            lag = seen["replication_lag_s"]
    return {"replica_catch_up_s": _spread(times, 3), "replication_lag_s": lag}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions of each (default 5)")
    parser.add_argument("--json", action="store_true", help="one line of JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 100:
        parser.error("--runs: expected 1 to 100")
    result: dict[str, Any] = {"runs": args.runs}
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        root = Path(tmp)
        log("lock refusals")
        (root / "locks").mkdir()
        result["lock_refusal_ms"] = _spread(lock_refusals(root / "locks", args.runs * 4), 2)
        fleet = root / "fleet"
        fleet.mkdir()
        shutil.copy(REPO / "fly.toml", fleet / "fly.toml")
        shutil.copytree(REPO / "regions", fleet / "regions")
        state_dir = fleet / ".localfly"
        try:
            ep = control.ensure_running(state_dir, profile="fast")
            log("scale refusals")
            result["scale_refusal_s"] = _spread(scale_refusals(fleet, args.runs), 3)
            log("API round trips")
            result.update(api_round_trips(ep, args.runs * 4))
            log("replica catch-up")
            result.update(replica_catch_up(ep, args.runs))
        finally:
            control.stop(state_dir, purge=True)
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    emit(result, compact=args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
