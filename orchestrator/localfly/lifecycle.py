"""Move machines between states by starting and stopping their processes.

Every transition runs in a task under the machine's lock, so two calls never race on
one process. A task waits out its profile delay before taking the lock; until it holds
the lock it is "pending" and a later call (a stop after a create, an update after a
start) cancels it. Once it holds the lock it runs to the end.

A machine process runs with cwd ``machines/<id>/root/`` (recreated on every launch, as
Fly's root filesystem is), each mount as a symlink inside it pointing at
``volumes/<vol>/data``, ``LOCALFLY_ROOT`` naming the root, and ``PORT`` a free loopback
port that every guest port of the config maps to.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from orchestrator.localfly import secrets
from orchestrator.localfly.checks import (
    CheckResult,
    run_checks,
    service_check_names,
    specs_from_config,
)
from orchestrator.localfly.core import LocalFly
from orchestrator.localfly.images import machine_argv
from orchestrator.localfly.sim import SimChecks, SimProc, fails_health
from orchestrator.localfly.state import MachineRecord
from orchestrator.localfly.supervisor import LaunchSpec, Proc
from orchestrator.localfly.util import ApiError, iso_now, parse_duration
from orchestrator.localfly.validate import mount_relpath

__all__ = [
    "cancel_pending",
    "halt",
    "launch",
    "machine_env",
    "schedule",
    "stop_signal",
    "stop_timeout",
]

_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])
# Never hand a machine the caller's credentials.
_SCRUB = ("FLY_API_TOKEN", "LOCALFLY_TOKEN", "FLY_ACCESS_TOKEN")
DEFAULT_MAX_RETRIES = 10


def schedule(
    fly: LocalFly, m: MachineRecord, delay: float, work: Callable[[], Awaitable[None]]
) -> None:
    """Run ``work`` under the machine's lock after ``delay`` seconds (cancellable until then)."""
    rt = fly.rt(m.id)

    async def run() -> None:
        task = asyncio.current_task()
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            async with rt.lock:
                if task is not None:
                    rt.pending.discard(task)
                await work()
        finally:
            if task is not None:
                rt.pending.discard(task)

    rt.pending.add(fly.track(run()))


def cancel_pending(fly: LocalFly, m: MachineRecord) -> bool:
    """Cancel transitions that have not started yet; say whether there were any."""
    rt = fly.rt(m.id)
    had = bool(rt.pending)
    for task in list(rt.pending):
        task.cancel()
    rt.pending.clear()
    return had


def _free_port(preferred: int | None) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free loopback port")


def _prepare_root(fly: LocalFly, m: MachineRecord) -> Path:
    root = fly.machine_dir(m.id) / "root"
    if root.exists():
        # rmtree unlinks symlinks without following them, so volumes are never touched.
        shutil.rmtree(root)
    root.mkdir(parents=True, mode=0o700)
    for mount in m.config.get("mounts") or []:
        link = root / mount_relpath(str(mount["path"]))
        link.parent.mkdir(parents=True, exist_ok=True)
        data = fly.volume_data(str(mount["volume"]))
        data.mkdir(parents=True, exist_ok=True)
        link.symlink_to(data, target_is_directory=True)
    return root


def machine_env(fly: LocalFly, m: MachineRecord, port: int) -> dict[str, str]:
    """Return the environment a machine's process (or an exec in it) gets."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update({str(k): str(v) for k, v in (m.config.get("env") or {}).items()})
    if m.secrets_version >= 0:
        env.update(secrets.store(fly).values_at(m.app, m.secrets_version))
    root = fly.machine_dir(m.id) / "root"
    env.update(
        FLY_APP_NAME=m.app,
        FLY_MACHINE_ID=m.id,
        FLY_ALLOC_ID=m.id,
        FLY_REGION=m.region,
        FLY_IMAGE_REF=str(m.config.get("image", "")),
        FLY_MACHINE_VERSION=m.version,
        FLY_PRIVATE_IP=m.private_ip,
        FLY_PROCESS_GROUP=str((m.config.get("metadata") or {}).get("fly_process_group", "app")),
        PORT=str(port),
        LOCALFLY_ROOT=str(root),
        LOCALFLY_PROXY_URL=fly.proxy_url,
        LOCALFLY_STATE_DIR=str(fly.state_dir),
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH")) if p),
    )
    return env


def _argv(fly: LocalFly, m: MachineRecord) -> list[str]:
    return machine_argv(m.config, fly.state_dir)


def _log(fly: LocalFly, m: MachineRecord, line: str) -> None:
    path = fly.machine_dir(m.id) / "log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(f"[localfly] {iso_now()} {line}\n")


async def launch(fly: LocalFly, m: MachineRecord) -> None:
    """Start the machine's process (call under its lock)."""
    rt = fly.rt(m.id)
    if fly.closing or m.state == "destroyed":
        return
    if rt.proc is not None and rt.proc.running:
        # Two queued launches (an update and a crash restart) must not make two processes.
        return
    fly.set_state(m, "starting")
    if fly.profile.simulated:
        _launch_sim(fly, m)
        return
    try:
        argv = _argv(fly, m)
        root = _prepare_root(fly, m)
        port = _free_port(m.port)
        env = machine_env(fly, m, port)
        proc = fly.supervisor.spawn(
            LaunchSpec(tuple(argv), root, env, fly.machine_dir(m.id) / "log")
        )
    except (OSError, ApiError) as exc:
        _log(fly, m, f"launch failed: {exc}")
        fly.event(m, "launch", "failed", request={"error": str(exc)})
        fly.set_state(m, "failed")
        return
    rt.proc = proc
    m.pid, m.pid_started, m.port = proc.pid, proc.started, port
    if m.region in fly.outages:
        proc.signal_group(signal.SIGSTOP)
        rt.frozen = True
    fly.event(m, "start", "started")
    fly.set_state(m, "started")
    _start_checks(fly, m, port)
    fly.track(_watch(fly, m, proc))


def _launch_sim(fly: LocalFly, m: MachineRecord) -> None:
    """Start a ``sim`` machine: state only, no process, checks worked out when read."""
    rt = fly.rt(m.id)
    proc = SimProc(asyncio.get_running_loop())
    rt.proc = proc
    m.pid = m.pid_started = m.port = None
    if m.region in fly.outages:
        rt.frozen = True
    fly.event(m, "start", "started")
    fly.set_state(m, "started")
    _stop_checks(fly, m, None)
    specs = specs_from_config(m.config, fly.profile)
    if specs:
        rt.checks = SimChecks(
            specs, lambda: fly.forced_check_failure(m), fails_health(m.config, m.region)
        )
    fly.track(_watch(fly, m, proc))


def _start_checks(fly: LocalFly, m: MachineRecord, port: int) -> None:
    rt = fly.rt(m.id)
    _stop_checks(fly, m, None)
    specs = specs_from_config(m.config, fly.profile)
    if specs:
        rt.check_task = fly.track(
            run_checks(specs, port, rt.checks, lambda: fly.forced_check_failure(m))
        )


def _stop_checks(fly: LocalFly, m: MachineRecord, reason: str | None) -> None:
    rt = fly.rt(m.id)
    if rt.check_task is not None:
        rt.check_task.cancel()
        rt.check_task = None
    # A new dict rather than clear(): under ``sim`` the old one is a SimChecks.
    rt.checks = {}
    if reason:
        names = [*(m.config.get("checks") or {}), *service_check_names(m.config)]
        for name in sorted(names):
            rt.checks[name] = CheckResult(name, "critical", reason, iso_now())


def stop_signal(m: MachineRecord, requested: int | None = None) -> int:
    """Return the signal a stop sends: the request's, the config's, or SIGTERM."""
    if requested is not None:
        return requested
    name = str((m.config.get("stop_config") or {}).get("signal", "SIGTERM")).upper()
    return int(getattr(signal, name, signal.SIGTERM))


def stop_timeout(fly: LocalFly, m: MachineRecord, requested: float | None = None) -> float:
    """Return the SIGTERM-to-SIGKILL grace: the request's, the config's, or 5 s."""
    if requested is None:
        requested = 5.0
        with contextlib.suppress(ValueError, TypeError):
            requested = parse_duration((m.config.get("stop_config") or {}).get("timeout", "5s"))
    return fly.profile.kill_timeout(requested)


async def halt(
    fly: LocalFly,
    m: MachineRecord,
    final_state: str,
    *,
    sig: int | None = None,
    timeout: float | None = None,
) -> None:
    """Stop the machine's process, if any, and leave it in ``final_state`` (under its lock)."""
    rt = fly.rt(m.id)
    _stop_checks(fly, m, "machine is not running" if final_state != "destroyed" else None)
    proc = rt.proc
    if proc is not None:
        rc = await fly.supervisor.terminate(
            proc, stop_signal(m, sig), stop_timeout(fly, m, timeout)
        )
        rt.proc, rt.frozen = None, False
        _log(fly, m, f"process {proc.pid} stopped (status {rc})")
        fly.event(m, "exit", final_state, request={"exit_event": _exit_event(rc, True, False)})
    m.pid = m.pid_started = None
    fly.set_state(m, final_state)


def _exit_event(rc: int | None, requested: bool, restarting: bool) -> dict[str, object]:
    return {
        "exit_code": rc if rc is not None and rc >= 0 else -1,
        "signal": -rc if rc is not None and rc < 0 else -1,
        "requested_stop": requested,
        "restarting": restarting,
        "oom_killed": False,
        "exited_at": iso_now(),
    }


async def _watch(fly: LocalFly, m: MachineRecord, proc: Proc) -> None:
    """Apply the restart policy when the process exits on its own."""
    # Shielded: cancelling this watcher must not cancel the exit everyone else waits on.
    rc = await asyncio.shield(proc.exited)
    rt = fly.rt(m.id)
    if proc.expected or fly.closing:
        return
    async with rt.lock:
        if rt.proc is not proc:
            return
        rt.proc, rt.frozen = None, False
        m.pid = m.pid_started = None
        restart = m.config.get("restart") or {}
        policy = restart.get("policy", "on-failure")
        retries = int(restart.get("max_retries", DEFAULT_MAX_RETRIES))
        again = policy == "always" or (policy == "on-failure" and rc != 0 and m.restarts < retries)
        _log(fly, m, f"process {proc.pid} exited with status {rc}; restart: {again}")
        _stop_checks(fly, m, None if again else "machine is not running")
        # As Fly reports it: how many restarts this exit makes (flyctl's smoke checks read it).
        fly.event(
            m,
            "exit",
            "starting" if again else "stopped",
            request={
                "exit_event": _exit_event(rc, False, again),
                "restart_count": m.restarts + 1 if again else m.restarts,
            },
        )
        if not again:
            fly.set_state(m, "stopped")
            return
        m.restarts += 1
        fly.set_state(m, "starting")
    # Back off a little so a crash loop does not spin a core.
    schedule(fly, m, min(0.1 * 2 ** (m.restarts - 1), 5.0), lambda: launch(fly, m))
