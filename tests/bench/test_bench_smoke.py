"""Run the benchmarks end to end, small, and check they report what they promise.

Timings are not asserted (they belong to docs/performance.md, not to CI); what is asserted is
that each script prints one JSON object with its keys and that the rollout really happened:
the product's deploy and the baseline both succeeded on a real local Fly.

This directory has no ``__init__.py`` on purpose: as a package it would be called ``bench`` and
shadow the repository's ``bench`` package the scripts import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "bench"


def _run(*args: str, timeout: float) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLY_")}
    proc = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one JSON line on stdout, got {len(lines)}"
    result: dict[str, Any] = json.loads(lines[0])
    return result


def test_plan_benchmark_reports_time_memory_and_steps() -> None:
    result = _run(str(SCRIPTS / "plan.py"), "--machines", "1000", "--json", timeout=60)

    assert result["machines"] == 1000
    assert result["regions"] == 10
    # One update per machine, a health gate per region, and a restore point (a volume
    # snapshot) before each of the primary region's 100 machines changes.
    assert result["steps"] == 1000 + 10 + 100
    for key in ("plan_s", "peak_rss_mb", "parse_s", "fleet_s"):
        assert isinstance(result[key], float)
        assert result[key] > 0


@pytest.mark.timeout(150)
def test_rollout_benchmark_deploys_and_compares_with_the_baseline() -> None:
    result = _run(
        str(SCRIPTS / "rollout.py"),
        "--size",
        "s",
        "--time-factor",
        "0.1",
        "--samples",
        "20",
        "--json",
        timeout=140,
    )

    assert result["succeeded"] is True, result.get("error")
    assert result["outcome"] == "succeeded"
    assert result["baseline"]["succeeded"] is True, result["baseline"].get("error")
    assert result["machines"] == 12
    for key in (
        "wall_s",
        "bound_s",
        "ratio_to_bound",
        "baseline_s",
        "speedup_vs_baseline",
        "orchestrator_cpu_s",
        "orchestrator_peak_rss_mb",
        "api_calls_per_machine",
    ):
        assert isinstance(result[key], float), key
        assert result[key] > 0, key
    for key in ("api_calls", "http_429"):
        assert isinstance(result[key], int), key
    # Every machine was updated once by each rollout, as the local Fly counted it.
    assert result["calls_by_operation"]["Machines_update"] == 12
    assert result["baseline"]["calls_by_operation"]["Machines_update"] == 12
    assert result["memory"]["machine_processes"] == 12


@pytest.mark.timeout(150)
def test_sim_rollout_updates_every_simulated_machine_and_draws_it(tmp_path: Path) -> None:
    result = _run(
        str(SCRIPTS / "rollout.py"),
        "--profile",
        "sim",
        "--machines",
        "60",
        "--regions",
        "6",
        "--time-factor",
        "0.1",
        "--out-dir",
        str(tmp_path),
        "--json",
        timeout=140,
    )

    assert result["succeeded"] is True, result.get("error")
    assert result["profile"] == "sim"
    assert result["machines"] == 60
    # Waves of 1 region, a fifth of them (2 of 6), then the rest.
    assert [len(w) for w in result["waves"]] == [1, 2, 3]
    # Every simulated machine was updated once, and none of them was a process.
    assert result["calls_by_operation"]["Machines_update"] == 60
    assert result["memory"]["machine_processes"] == 0
    for key in (
        "wall_s",
        "bound_s",
        "ratio_to_bound",
        "orchestrator_cpu_per_machine_ms",
        "journal_writes_per_machine",
        "api_calls_per_machine",
    ):
        assert isinstance(result[key], float), key
        assert result[key] > 0, key
    assert result["http_429"] == 0
    # Its JSON and its timeline picture are written side by side.
    picture = Path(result["picture"])
    assert picture.parent == tmp_path
    assert picture.read_text().startswith("<svg")
    assert json.loads((tmp_path / "rollout-sim-60x6.json").read_text())["machines"] == 60
