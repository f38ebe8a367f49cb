"""Looking inside a machine: ``GET .../ps`` and what ``exec`` sees.

``ps`` lists the machine's processes (its main process and every descendant) as Fly's
``ProcessStat``: pid, command, working directory, CPU time (ms), resident memory (bytes) and
listening sockets. ``exec`` runs in the machine's environment and root; :func:`map_mounts`
makes the machine's mount paths (``/app/.data``) in a command's words point at its volume,
since a local machine has no root filesystem of its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from starlette.responses import Response

from orchestrator.localfly.core import Call, LocalFly, json_response
from orchestrator.localfly.util import ApiError
from orchestrator.localfly.validate import mount_relpath

__all__ = ["list_processes", "map_mounts"]

_SORT_KEYS = {"pid", "cpu", "rss", "command"}


def _stat(proc: psutil.Process) -> dict[str, Any] | None:
    try:
        with proc.oneshot():
            times = proc.cpu_times()
            sockets = [
                {"address": f"{c.laddr.ip}:{c.laddr.port}", "proto": "tcp"}
                for c in proc.net_connections(kind="tcp")
                if c.status == psutil.CONN_LISTEN
            ]
            return {
                "pid": proc.pid,
                "command": " ".join(proc.cmdline()) or proc.name(),
                "directory": proc.cwd(),
                "cpu": round((times.user + times.system) * 1000),
                "rtime": round(times.user * 1000),
                "stime": round(times.system * 1000),
                "rss": proc.memory_info().rss,
                "listen_sockets": sockets,
            }
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


async def list_processes(fly: LocalFly, call: Call) -> Response:
    """Answer ``GET .../ps``: the machine's processes (412 when it is not running)."""
    m = fly.machine(call.params["app_name"], call.params["machine_id"])
    sort_by = call.query("sort_by") or "pid"
    order = call.query("order") or "asc"
    if sort_by not in _SORT_KEYS:
        raise ApiError(400, f"invalid sort_by: one of {', '.join(sorted(_SORT_KEYS))}")
    if order not in ("asc", "desc"):
        raise ApiError(400, "invalid order: asc or desc")
    proc = fly.rt(m.id).proc
    if proc is None or m.state != "started":
        raise ApiError(412, f"machine {m.id} is not started (state {m.state})")
    try:
        root = psutil.Process(proc.pid)
        family = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    rows = [row for row in (_stat(p) for p in family) if row is not None]
    rows.sort(key=lambda r: r[sort_by], reverse=order == "desc")
    return json_response(rows)


def _constant(text: str) -> Callable[[re.Match[str]], str]:
    return lambda _: text


def map_mounts(words: list[str], mounts: list[dict[str, Any]], root: Path) -> list[str]:
    """Point the machine's mount paths in ``words`` at its volume under ``root``."""
    out = list(words)
    for mount in mounts:
        path = str(mount.get("path") or "")
        if not path.startswith("/"):
            continue
        local = str(root / mount_relpath(path))
        # The path as a whole word of the command (not inside another path).
        pattern = re.compile(r"(?<![\w./-])" + re.escape(path.rstrip("/")) + r"(?![\w.-])")
        # A function as the replacement: the path is taken as it is (no backslash escapes).
        out = [pattern.sub(_constant(local), w) for w in out]
    return out
