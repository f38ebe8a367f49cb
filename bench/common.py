"""Small helpers shared by the benchmark scripts: output, memory readings, the repo root."""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

import psutil

__all__ = ["REPO", "emit", "log", "peak_rss_mb", "rss_mb", "tree_rss_mb"]

REPO = Path(__file__).resolve().parents[1]


def emit(result: dict[str, Any], *, compact: bool) -> None:
    """Print ``result`` as the one JSON object on stdout (one line when ``compact``)."""
    text = json.dumps(result, sort_keys=False, separators=(",", ":")) if compact else None
    print(text if text is not None else json.dumps(result, indent=2))
    sys.stdout.flush()


def log(message: str) -> None:
    """Write a progress line to stderr (stdout is reserved for the JSON result)."""
    print(message, file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    """Return this process's peak resident set size so far, in MiB (Linux ``ru_maxrss``)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def rss_mb(pid: int | None = None) -> float:
    """Return the current resident set size of ``pid`` (default: this process), in MiB."""
    rss: int = psutil.Process(pid or os.getpid()).memory_info().rss
    return round(rss / 2**20, 1)


def tree_rss_mb(pids: list[int]) -> dict[str, float]:
    """Return RSS and unique set size (USS) in MiB summed over ``pids`` that still exist.

    USS (memory only that process holds) avoids counting the shared Python interpreter pages
    once per machine process, so the sum is what the processes really cost together.
    """
    rss = uss = 0.0
    for pid in pids:
        try:
            info = psutil.Process(pid).memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        rss += info.rss
        uss += getattr(info, "uss", info.rss)
    return {"rss_mb": round(rss / 2**20, 1), "uss_mb": round(uss / 2**20, 1)}
