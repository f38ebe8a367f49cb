"""Start, stop and inspect a local Fly server from another process.

``ensure_running`` starts ``python -m orchestrator.localfly serve`` detached (its output
in ``<state>/server.log``) unless one already answers for that state dir, and returns its
``Endpoint``. ``stop`` stops the server (SIGTERM, then SIGKILL), then kills by pid every
machine process recorded in the state that still runs (a crashed server's orphans), and
with ``purge=True`` deletes volumes, snapshots, logs and state (``images.toml`` stays).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

from orchestrator.errors import ConfigError, LocalFlyError
from orchestrator.localfly import prometheus
from orchestrator.localfly.profiles import get_profile
from orchestrator.localfly.state import AppRecord, MachineRecord, VolumeRecord, read_records
from orchestrator.localfly.statedir import read_server_info
from orchestrator.localfly.supervisor import is_alive, kill_orphan, kill_tagged

__all__ = ["Endpoint", "LocalStatus", "StopSummary", "ensure_running", "status", "stop"]

KEEP_ON_PURGE = {"images.toml"}
_CHILDREN: set[int] = set()


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a running local Fly answers.

    Attributes:
        api_url: the Machines API base URL (``http://127.0.0.1:PORT``; paths start ``/v1``).
        proxy_url: the edge proxy (plays ``https://<app>.fly.dev``).
        token: the bearer token (hidden from ``repr``).
        pid: the server's pid.
        state_dir: its state directory.
    """

    api_url: str
    proxy_url: str
    token: str = field(repr=False)
    pid: int
    state_dir: Path

    @property
    def headers(self) -> dict[str, str]:
        """Return the ``Authorization`` header for API calls."""
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True, slots=True)
class StopSummary:
    """What ``stop`` did.

    Attributes:
        state_dir: the state directory.
        server_pid: the server's pid, if one was running.
        server_stopped: a running server was stopped.
        machines_killed: pids of leftover machine processes killed after the server.
        purged: volumes, snapshots and state were deleted.
        prometheus_pid: the pid of its Prometheus server, when one was running and stopped.
    """

    state_dir: Path
    server_pid: int | None
    server_stopped: bool
    machines_killed: tuple[int, ...]
    purged: bool
    prometheus_pid: int | None = None


@dataclass(frozen=True, slots=True)
class LocalStatus:
    """What ``status`` found.

    Attributes:
        state_dir: the state directory.
        running: a server answers for it.
        pid: the server's pid.
        api_url: the API base URL.
        proxy_url: the edge proxy URL.
        profile: the server's profile.
        time_factor: the server's time factor.
        apps: how many apps exist.
        machines: machine counts by state (destroyed ones included).
        volumes: how many volumes exist (``pending_destroy`` included).
        processes: pids of machine processes that run now.
        prometheus_url: where its Prometheus server answers, when one runs.
    """

    state_dir: Path
    running: bool
    pid: int | None = None
    api_url: str | None = None
    proxy_url: str | None = None
    profile: str | None = None
    time_factor: float | None = None
    apps: int = 0
    machines: Mapping[str, int] = field(default_factory=dict)
    volumes: int = 0
    processes: tuple[int, ...] = ()
    prometheus_url: str | None = None


def _alive_info(state_dir: Path) -> dict[str, object] | None:
    info = read_server_info(state_dir)
    if not info or not isinstance(info.get("pid"), int):
        return None
    started = info.get("pid_started")
    pid = int(info["pid"])
    if not is_alive(pid, float(started) if isinstance(started, int | float) else None):
        return None
    return info


def _endpoint(state_dir: Path, info: Mapping[str, object]) -> Endpoint:
    token = (state_dir / "token").read_text().strip()
    return Endpoint(
        api_url=str(info["api_url"]),
        proxy_url=str(info["proxy_url"]),
        token=token,
        pid=int(str(info["pid"])),
        state_dir=state_dir,
    )


def _answers(endpoint: Endpoint) -> bool:
    try:
        r = httpx.get(
            f"{endpoint.api_url}/_localfly/info",
            headers=endpoint.headers,
            timeout=2.0,
            trust_env=False,
        )
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and r.json().get("pid") == endpoint.pid


@contextlib.contextmanager
def _control_lock(state_dir: Path) -> Generator[None, None, None]:
    fd = os.open(state_dir / "control.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _log_tail(state_dir: Path) -> str:
    try:
        lines = (state_dir / "server.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def ensure_running(
    state_dir: Path | str,
    *,
    profile: str = "fast",
    time_factor: float = 1.0,
    timeout: float = 30.0,
) -> Endpoint:
    """Return the endpoint of the server for ``state_dir``, starting it if needed.

    A server that already runs keeps its profile; stop it first to change profiles.
    Raises ConfigError for a bad profile or time factor, LocalFlyError when the server
    does not come up within ``timeout`` seconds.
    """
    try:
        get_profile(profile, time_factor)
    except ValueError as exc:
        raise ConfigError(str(exc), where="local Fly profile") from None
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    with _control_lock(state_dir):
        info = _alive_info(state_dir)
        if info is not None:
            endpoint = _endpoint(state_dir, info)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if _answers(endpoint):
                    return endpoint
                time.sleep(0.05)
            raise LocalFlyError(
                f"the local Fly (pid {endpoint.pid}) on {state_dir} does not answer"
            )
        pid = _spawn_server(state_dir, profile, time_factor)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _reap_children()
            if not is_alive(pid):
                raise LocalFlyError(f"the local Fly exited at start: {_log_tail(state_dir)}")
            info = read_server_info(state_dir)
            if info and info.get("pid") == pid:
                endpoint = _endpoint(state_dir, info)
                if _answers(endpoint):
                    return endpoint
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        raise LocalFlyError(
            f"the local Fly did not start within {timeout:g}s: {_log_tail(state_dir)}"
        )


def _spawn_server(state_dir: Path, profile: str, time_factor: float) -> int:
    """Start the server detached (own session, output to ``server.log``); return its pid."""
    argv = [
        sys.executable,
        "-m",
        "orchestrator.localfly",
        "serve",
        "--state-dir",
        str(state_dir),
        "--profile",
        profile,
        "--time-factor",
        repr(float(time_factor)),
    ]
    log = os.open(state_dir / "server.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        # posix_spawn, not Popen: no Popen object outlives this call to warn at exit, and
        # only stdin/stdout/stderr are inherited (Python's own fds are close-on-exec).
        pid = os.posix_spawn(
            sys.executable,
            argv,
            dict(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log, 1),
                (os.POSIX_SPAWN_DUP2, log, 2),
            ],
            setsid=True,
        )
    except OSError as exc:
        raise LocalFlyError(f"cannot start the local Fly: {exc}") from exc
    finally:
        os.close(log)
    _CHILDREN.add(pid)
    return pid


def _reap_children() -> None:
    """Collect the exit status of servers this process started and that have ended."""
    for pid in list(_CHILDREN):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _CHILDREN.discard(pid)


def stop(state_dir: Path | str, purge: bool = False, *, timeout: float = 30.0) -> StopSummary:
    """Stop the server and every machine process it started; optionally purge its state."""
    state_dir = Path(state_dir).resolve()
    if not state_dir.exists():
        return StopSummary(state_dir, None, False, (), False)
    with _control_lock(state_dir):
        return _stop(state_dir, purge, timeout)


def _stop(state_dir: Path, purge: bool, timeout: float) -> StopSummary:
    _reap_children()
    prom_pid = prometheus.stop(state_dir)
    info = _alive_info(state_dir)
    server_pid = int(str(info["pid"])) if info else None
    if server_pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server_pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        # is_alive counts a zombie as gone, so this ends even when we are its parent.
        while is_alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if is_alive(server_pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(server_pid, signal.SIGKILL)
            while is_alive(server_pid):
                time.sleep(0.02)
    _reap_children()
    killed = [
        m.pid
        for m in read_records(state_dir / "state.db", MachineRecord)
        if m.pid and kill_orphan(m.pid, m.pid_started)
    ]
    killed += kill_tagged(state_dir)
    if purge:
        for child in state_dir.iterdir():
            if child.name in KEEP_ON_PURGE:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
    else:
        (state_dir / "server.json").unlink(missing_ok=True)
    return StopSummary(
        state_dir, server_pid, server_pid is not None, tuple(killed), purge, prom_pid
    )


def status(state_dir: Path | str) -> LocalStatus:
    """Describe the local Fly of ``state_dir`` without starting it."""
    state_dir = Path(state_dir).resolve()
    db = state_dir / "state.db"
    machines = read_records(db, MachineRecord)
    processes = tuple(m.pid for m in machines if m.pid and is_alive(m.pid, m.pid_started))
    found = LocalStatus(
        state_dir=state_dir,
        running=False,
        apps=len(read_records(db, AppRecord)),
        machines=dict(sorted(Counter(m.state for m in machines).items())),
        volumes=len(read_records(db, VolumeRecord)),
        processes=processes,
        prometheus_url=server.url if (server := prometheus.status(state_dir)) else None,
    )
    info = _alive_info(state_dir)
    if info is None:
        return found
    tf = info.get("time_factor")
    return replace(
        found,
        running=True,
        pid=int(str(info["pid"])),
        api_url=str(info["api_url"]),
        proxy_url=str(info["proxy_url"]),
        profile=str(info.get("profile")),
        time_factor=float(tf) if isinstance(tf, int | float) else None,
    )
