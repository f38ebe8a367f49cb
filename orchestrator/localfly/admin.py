"""The local Fly's own control endpoints, outside ``/v1`` (same bearer token).

- ``GET|PUT|DELETE /_localfly/faults``: see ``faults.py`` for the payload.
- ``POST|DELETE /_localfly/outage/{region}``: a region outage. Its machine processes are
  SIGSTOPped (they stop answering, their checks go critical, the proxy routes elsewhere),
  and calls that change or wait on its machines and volumes answer 503 until restored.
  Reads still answer, with ``host_status: "unreachable"``.
- ``GET|DELETE /_localfly/stats``: request counts by operation and status.
- ``GET /_localfly/info``: what this server is (pid, profile, ports, counts).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from typing import Any

from starlette.responses import Response

from orchestrator.localfly.core import Call, LocalFly, json_response
from orchestrator.localfly.util import ApiError
from orchestrator.localfly.validate import check_region

__all__ = [
    "clear_faults",
    "end_outage",
    "get_faults",
    "get_info",
    "get_stats",
    "put_faults",
    "reset_stats",
    "start_outage",
]


def _faults_body(fly: LocalFly) -> dict[str, Any]:
    return {**fly.faults.to_api(), "outages": sorted(fly.outages)}


async def get_faults(fly: LocalFly, call: Call) -> Response:
    """Answer ``GET /_localfly/faults``."""
    return json_response(_faults_body(fly))


async def put_faults(fly: LocalFly, call: Call) -> Response:
    """Answer ``PUT /_localfly/faults``: replace the rules, seed and failing checks."""
    try:
        fly.faults.configure(await call.json())
    except ValueError as exc:
        raise ApiError(400, f"invalid faults: {exc}") from None
    return json_response(_faults_body(fly))


async def clear_faults(fly: LocalFly, call: Call) -> Response:
    """Answer ``DELETE /_localfly/faults``: clear every rule, failing check and outage."""
    fly.faults.clear()
    for region in list(fly.outages):
        _restore(fly, region)
    return json_response(_faults_body(fly))


async def start_outage(fly: LocalFly, call: Call) -> Response:
    """Answer ``POST /_localfly/outage/{region}``: the region's machines stop answering."""
    region = check_region(call.params["region"])
    fly.outages.add(region)
    frozen = []
    for m in fly.machines.values():
        if m.region != region:
            continue
        rt = fly.runtime.get(m.id)
        if rt is not None and rt.proc is not None and not rt.frozen:
            rt.proc.signal_group(signal.SIGSTOP)
            rt.frozen = True
            frozen.append(m.id)
        fly.notify(m)
    return json_response(
        {"region": region, "machines": sorted(frozen), "outages": sorted(fly.outages)}
    )


def _restore(fly: LocalFly, region: str) -> list[str]:
    fly.outages.discard(region)
    thawed = []
    for m in fly.machines.values():
        rt = fly.runtime.get(m.id)
        if m.region == region and rt is not None and rt.frozen:
            if rt.proc is not None:
                rt.proc.signal_group(signal.SIGCONT)
            rt.frozen = False
            thawed.append(m.id)
            fly.notify(m)
    return sorted(thawed)


async def end_outage(fly: LocalFly, call: Call) -> Response:
    """Answer ``DELETE /_localfly/outage/{region}``: the region comes back."""
    region = check_region(call.params["region"])
    thawed = _restore(fly, region)
    return json_response({"region": region, "machines": thawed, "outages": sorted(fly.outages)})


async def get_stats(fly: LocalFly, call: Call) -> Response:
    """Answer ``GET /_localfly/stats``."""
    return json_response(fly.stats.to_api())


async def reset_stats(fly: LocalFly, call: Call) -> Response:
    """Answer ``DELETE /_localfly/stats``."""
    fly.stats.reset()
    return json_response(fly.stats.to_api())


async def get_info(fly: LocalFly, call: Call) -> Response:
    """Answer ``GET /_localfly/info``."""
    states: Counter[str] = Counter(m.state for m in fly.machines.values())
    return json_response(
        {
            "pid": os.getpid(),
            "state_dir": str(fly.state_dir),
            "profile": fly.profile.name,
            "time_factor": fly.profile.time_factor,
            "proxy_url": fly.proxy_url,
            "apps": len(fly.apps),
            "machines": dict(sorted(states.items())),
            "volumes": len(fly.volumes),
            "processes": len(fly.supervisor.procs),
            "outages": sorted(fly.outages),
            "time": time.time(),
        }
    )
