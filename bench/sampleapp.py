"""Measure what one local machine costs: the sample app's start-up time and memory.

Size ``m`` of the rollout benchmark runs 200 machine processes on two cores, so a machine must
start fast and stay small. This script starts the sample app ``--runs`` times as the local Fly
would (``python -m orchestrator.sampleapp``, ``PORT=0``, a fresh data directory), and reports:

- ``listen_s``: process start → the first ``/status`` that answers 200 (min, median, max);
- ``rss_mb``: resident memory after 50 writes and 100 reads (median), and its ``uss_mb``.

One JSON object on stdout; every process it starts is stopped by PID.

```sh
.venv/bin/python bench/sampleapp.py --runs 10 --json
```
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from bench.common import emit, log  # noqa: E402

_LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
_DEADLINE_S = 30.0


def _environ(data_dir: Path, n: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAMPLE_APP_", "FLY_"))}
    env.update(
        {
            "PORT": "0",
            "FLY_REGION": "syd",
            "PRIMARY_REGION": "syd",
            "FLY_MACHINE_ID": f"bench-{n}",
            "FLY_IMAGE_REF": "registry.fly.io/sample-app:v1",
            "FLY_APP_NAME": "sample-app",
            "DATA_DIR": str(data_dir),
        }
    )
    return env


def _one(root: Path, n: int) -> dict[str, float]:
    out = root / f"app{n}.out"
    with out.open("wb") as out_file:
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.sampleapp"],
            env=_environ(root / f"data{n}", n),
            stdout=out_file,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
    try:
        with httpx.Client(timeout=2.0, trust_env=False) as http:
            url = None
            while True:
                if time.monotonic() - started > _DEADLINE_S or proc.poll() is not None:
                    raise SystemExit(f"the sample app did not answer within {_DEADLINE_S:.0f}s")
                if url is None:
                    match = _LISTENING.search(out.read_text())
                    url = f"http://127.0.0.1:{match.group(1)}" if match else None
                if url is not None:
                    try:
                        if http.get(url + "/status").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                time.sleep(0.005)  # polling the child, not synchronising a test
            listen_s = time.monotonic() - started
            for i in range(50):
                record = {"data": {"n": i, "pad": "x" * 500}}
                if http.post(url + "/records", json=record).status_code != 201:
                    raise SystemExit("the sample app refused a write")
            for _ in range(50):
                http.get(url + "/")
                http.get(url + "/metrics")
        info = psutil.Process(proc.pid).memory_full_info()
        return {"listen_s": listen_s, "rss_mb": info.rss / 2**20, "uss_mb": info.uss / 2**20}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _spread(values: list[float], digits: int) -> dict[str, float]:
    return {
        "min": round(min(values), digits),
        "median": round(statistics.median(values), digits),
        "max": round(max(values), digits),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="starts to measure (default 10)")
    parser.add_argument("--json", action="store_true", help="one line of JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 1000:
        parser.error("--runs: expected 1 to 1000")
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-sampleapp-") as tmp:
        for n in range(args.runs):
            runs.append(_one(Path(tmp), n))
            log(f"run {n + 1}: listening after {runs[-1]['listen_s']:.3f}s")
    result: dict[str, Any] = {
        "runs": args.runs,
        "listen_s": _spread([r["listen_s"] for r in runs], 3),
        "rss_mb": _spread([r["rss_mb"] for r in runs], 1),
        "uss_mb": _spread([r["uss_mb"] for r in runs], 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    emit(result, compact=args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
