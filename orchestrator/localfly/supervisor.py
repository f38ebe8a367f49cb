"""Run machine processes: spawn, watch for exit, stop with SIGTERM then SIGKILL.

Every process starts in its own session, so its process group holds everything it
spawns and a stop signals the whole group. Exits are watched with a pidfd registered on
the event loop (no thread per process, no polling); a fallback poll task covers kernels
without pidfd. When a group leader exits, whatever it left in its group is killed, so a
stopped machine leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from orchestrator.localfly.util import iso_now

__all__ = [
    "LaunchSpec",
    "Proc",
    "Supervisor",
    "is_alive",
    "kill_orphan",
    "kill_tagged",
    "process_started",
]


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """What to run for a machine.

    Attributes:
        argv: the command.
        cwd: the working directory (the machine's root).
        env: the whole environment.
        log_path: the file stdout and stderr append to.
    """

    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str]
    log_path: Path


class Proc:
    """One OS process the supervisor started.

    Attributes:
        pid: its pid (also its process group id).
        started: its psutil create time, to recognise it later.
        exited: resolves to the exit status (negative: killed by that signal).
        expected: set before the supervisor signals it, so an exit is not a crash.
    """

    __slots__ = ("_fd", "exited", "expected", "pid", "popen", "started")

    def __init__(self, popen: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.started = process_started(popen.pid) or time.time()
        self.exited: asyncio.Future[int] = loop.create_future()
        self.expected = False
        self._fd: int | None = None

    @property
    def running(self) -> bool:
        """Say whether the process has not exited yet."""
        return not self.exited.done()

    def signal_group(self, sig: int) -> bool:
        """Send ``sig`` to the process group; False if it is already gone."""
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True


class Supervisor:
    """Start and stop machine processes and report their exits."""

    def __init__(self) -> None:
        self.procs: dict[int, Proc] = {}
        self._pollers: set[asyncio.Task[None]] = set()

    def spawn(self, spec: LaunchSpec) -> Proc:
        """Start a process; raises OSError when it cannot be executed."""
        loop = asyncio.get_running_loop()
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(spec.log_path, "ab", buffering=0) as log:
            log.write(f"[localfly] {iso_now()} exec {' '.join(spec.argv)}\n".encode())
            popen = subprocess.Popen(
                list(spec.argv),
                cwd=spec.cwd,
                env=dict(spec.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        proc = Proc(popen, loop)
        self.procs[proc.pid] = proc
        try:
            proc._fd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            poller = loop.create_task(self._poll_exit(proc))
            self._pollers.add(poller)
            poller.add_done_callback(self._pollers.discard)
        else:
            loop.add_reader(proc._fd, self._reap, proc)
        return proc

    def _reap(self, proc: Proc) -> None:
        if proc.popen.poll() is None:
            return
        if proc._fd is not None:
            asyncio.get_running_loop().remove_reader(proc._fd)
            os.close(proc._fd)
            proc._fd = None
        self._finish(proc)

    async def _poll_exit(self, proc: Proc) -> None:
        while proc.popen.poll() is None:
            await asyncio.sleep(0.2)
        self._finish(proc)

    def _finish(self, proc: Proc) -> None:
        # Whatever the leader left in its group dies with it: a machine is all or nothing.
        proc.signal_group(signal.SIGKILL)
        self.procs.pop(proc.pid, None)
        if not proc.exited.done():
            proc.exited.set_result(proc.popen.returncode or 0)

    async def terminate(
        self, proc: Proc, sig: int = signal.SIGTERM, timeout: float = 5.0
    ) -> int | None:
        """Stop a process: ``sig`` to its group, then SIGKILL after ``timeout`` seconds."""
        proc.expected = True
        if proc.running:
            proc.signal_group(sig)
            # A SIGSTOPped group (region outage) must run to act on the signal.
            proc.signal_group(signal.SIGCONT)
            try:
                await asyncio.wait_for(asyncio.shield(proc.exited), timeout)
            except TimeoutError:
                proc.signal_group(signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(proc.exited), 10.0)
        return None

    async def shutdown(self, timeout: float) -> None:
        """Stop every process this supervisor started, all at once."""
        procs = list(self.procs.values())
        await asyncio.gather(*(self.terminate(p, signal.SIGTERM, timeout) for p in procs))


def process_started(pid: int) -> float | None:
    """Return a process's create time, or None when it does not exist."""
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_alive(pid: int, started: float | None = None) -> bool:
    """Say whether ``pid`` runs (not a zombie) and, if given, was created at ``started``."""
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(p.create_time() - started) < 0.5
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def kill_orphan(pid: int, started: float | None, timeout: float = 5.0) -> bool:
    """Kill a process a previous server left behind, if it is still the same process.

    Returns True when it was running and is now gone (or a zombie).
    """
    if not is_alive(pid, started):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not is_alive(pid)


def kill_tagged(state_dir: Path) -> list[int]:
    """Kill processes whose environment names ``state_dir`` as their local Fly's.

    Machine processes carry ``LOCALFLY_STATE_DIR``; this finds those a crashed server
    never recorded (a spawn that was not yet written to the state).
    """
    target = str(state_dir)
    killed = []
    me = os.getpid()
    for p in psutil.process_iter(["pid"]):
        if p.pid == me:
            continue
        try:
            if p.environ().get("LOCALFLY_STATE_DIR") != target:
                continue
            started = p.create_time()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
        if kill_orphan(p.pid, started):
            killed.append(p.pid)
    return killed
