"""Measure the primary region's write downtime of a rollout: slot order against leader last.

On a copy of the sample fleet (syd: 2 machines, the primary region) and a local Fly this script
starts in a temporary directory (profile ``fast``) and stops by PID, it deploys syd at ``v1``,
then rolls new images out to syd ``--runs`` times in each order (the slot order first), each
with the deploy's own writer (``--measure-writes``: one write every 50 ms through the edge proxy):

- ``slot_order``: lowest slot first, as before (``DeployRequest(leader_last=False)``): the
  leader is usually slot 1, so it is updated first, hands off, and the machine that took over
  is updated next and hands off again;
- ``leader_last``: the default: the other machine first, then the leader, after a hand-off.

Per order: the longest span without an acknowledged write (``write_downtime_s``: min, median,
max over ``--runs``), the spans over 0.5 s without one (``pauses``) and their total
(``paused_s``), acknowledged and attempted writes; ``ratio`` and ``paused_ratio`` are the
medians' quotients (slot order / leader last). One JSON object on stdout:

    .venv/bin/python bench/writes.py [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from bench.common import emit, log  # noqa: E402
from orchestrator.commands.deploy import DeployRequest, deploy  # noqa: E402
from orchestrator.execute.results import DeployResult  # noqa: E402
from orchestrator.localfly import control  # noqa: E402
from orchestrator.settings import resolve_settings  # noqa: E402

IMAGE = "registry.fly.io/sample-app:{tag}"


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


def _deploy(root: Path, tag: str, *, leader_last: bool, measure: bool) -> DeployResult:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLY_")}
    settings = resolve_settings(root, env)
    request = DeployRequest(
        regions=("syd",),
        image=IMAGE.format(tag=tag),
        measure_writes=measure,
        leader_last=leader_last,
    )
    result = asyncio.run(deploy(settings, request))
    if not isinstance(result, DeployResult) or not result.ok:
        raise SystemExit(f"deploy of {tag} failed: {getattr(result, 'error', result)}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="rollouts per order (default 3)")
    parser.add_argument("--json", action="store_true", help="one line of JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 20:
        parser.error("--runs: expected 1 to 20")
    figures: dict[str, dict[str, list[float]]] = {
        name: {"gap": [], "paused": [], "pauses": [], "acked": [], "attempted": []}
        for name in ("slot_order", "leader_last")
    }
    with tempfile.TemporaryDirectory(prefix="bench-writes-") as tmp:
        root = Path(tmp) / "fleet"
        root.mkdir()
        shutil.copy(REPO / "fly.toml", root / "fly.toml")
        shutil.copytree(REPO / "regions", root / "regions")
        state_dir = root / ".localfly"
        try:
            control.ensure_running(state_dir, profile="fast")
            log("deploying syd at v1")
            _deploy(root, "v1", leader_last=True, measure=False)
            tag = 1
            # The slot order first: after the first deploy the leader holds slot 1, and a
            # rollout in slot order leaves it there (two hand-offs), so every one of those runs
            # starts as a first rollout would. A leader-last rollout moves the role to slot 2.
            for name in ("slot_order", "leader_last"):
                for run in range(args.runs):
                    tag += 1
                    log(f"{name} run {run + 1}: v{tag}")
                    result = _deploy(
                        root, f"v{tag}", leader_last=name == "leader_last", measure=True
                    )
                    down = result.write_downtime or {}
                    figures[name]["gap"].append(float(down["longest_gap_s"]))
                    figures[name]["paused"].append(float(down["paused_s"]))
                    figures[name]["pauses"].append(float(down["pauses"]))
                    figures[name]["acked"].append(float(down["acked"]))
                    figures[name]["attempted"].append(float(down["attempted"]))
        finally:
            control.stop(state_dir, purge=True)
    out: dict[str, Any] = {"runs": args.runs, "region": "syd", "machines": 2}
    for name, f in figures.items():
        out[name] = {
            "write_downtime_s": _spread(f["gap"]),
            "paused_s": _spread(f["paused"]),
            "pauses": _spread(f["pauses"]),
            "acked": int(sum(f["acked"])),
            "attempted": int(sum(f["attempted"])),
        }
    new = statistics.median(figures["leader_last"]["gap"])
    old = statistics.median(figures["slot_order"]["gap"])
    out["ratio"] = round(old / new, 2) if new > 0 else None
    paused_new = statistics.median(figures["leader_last"]["paused"])
    paused_old = statistics.median(figures["slot_order"]["paused"])
    out["paused_ratio"] = round(paused_old / paused_new, 2) if paused_new > 0 else None
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    emit(out, compact=args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
