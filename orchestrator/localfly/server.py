"""Run the local Fly in the foreground: state dir, token, sockets, recovery, shutdown.

On start the server takes ``<state>/server.lock`` (one server per state dir), kills any
machine process a previous server left behind (recorded pids, checked by create time,
and processes tagged with this state dir), moves half-done transitions to where they
were heading, and starts again every machine that was started. It then writes
``server.json`` (pid, ports, URLs) and serves the API and the proxy on two loopback
sockets. SIGTERM/SIGINT stop it: connections close, every machine process is stopped
(their recorded state stays, so the next start brings them back), ``server.json`` goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Generator
from pathlib import Path
from typing import Any

import uvicorn

from orchestrator.errors import LocalFlyError
from orchestrator.localfly import lifecycle
from orchestrator.localfly.app import LocalFlyApp
from orchestrator.localfly.core import RUNNING, LocalFly
from orchestrator.localfly.profiles import Profile
from orchestrator.localfly.state import MachineRecord
from orchestrator.localfly.statedir import prepare_state_dir, read_server_info
from orchestrator.localfly.stats import RequestLog
from orchestrator.localfly.supervisor import kill_orphan, kill_tagged, process_started

__all__ = ["recover", "serve"]

SHUTDOWN_KILL_TIMEOUT = 5.0


@contextlib.contextmanager
def _server_lock(state_dir: Path) -> Generator[None, None, None]:
    fd = os.open(state_dir / "server.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = read_server_info(state_dir) or {}
            raise LocalFlyError(
                f"a local Fly already runs on {state_dir} (pid {info.get('pid', '?')})"
            ) from None
        yield
    finally:
        os.close(fd)


def _bind(port: int) -> socket.socket:
    for candidate in (port, 0) if port else (0,):
        # IPPROTO_TCP named, not left 0: asyncio turns Nagle off (TCP_NODELAY) only on
        # sockets that say they are TCP, and accepted ones inherit the listener's proto. With
        # Nagle on, an answer's body waits for the client's delayed ACK of its headers: 40 ms
        # more on every call, on top of the profile's latency.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind(("127.0.0.1", candidate))
        except OSError:
            sock.close()
            continue
        sock.listen(2048)
        sock.setblocking(False)
        return sock
    raise LocalFlyError("cannot bind a loopback port")


def _launcher(fly: LocalFly, m: MachineRecord) -> Callable[[], Awaitable[None]]:
    return lambda: lifecycle.launch(fly, m)


async def recover(fly: LocalFly) -> None:
    """Clean up after a previous server and restart the machines that were started."""
    for pid in await asyncio.to_thread(kill_tagged, fly.state_dir):
        logging.getLogger("orchestrator.localfly").warning("killed orphan process %s", pid)
    for m in list(fly.machines.values()):
        if m.pid:
            await asyncio.to_thread(kill_orphan, m.pid, m.pid_started)
            m.pid = m.pid_started = None
        start = m.state in RUNNING
        if m.state in ("stopping", "suspending"):
            m.state = "stopped" if m.state == "stopping" else "suspended"
        if m.state == "destroying":
            m.state = "destroyed"
            for v in fly.volumes.values():
                if v.attached_machine_id == m.id:
                    v.attached_machine_id = None
                    fly.save(v)
        fly.save(m)
        if start:
            lifecycle.schedule(fly, m, 0, _launcher(fly, m))
    for v in fly.volumes.values():
        if v.state in ("creating", "hydrating", "restoring"):
            v.state = "created"
            fly.save(v)
    for s in fly.snapshots.values():
        if s.status == "running":
            s.status = "failed"
            fly.save(s)


def _write_info(state_dir: Path, info: dict[str, Any]) -> None:
    tmp = state_dir / "server.json.tmp"
    tmp.write_text(json.dumps(info, indent=1))
    tmp.replace(state_dir / "server.json")


def _drop_info(state_dir: Path) -> None:
    if (read_server_info(state_dir) or {}).get("pid") == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            (state_dir / "server.json").unlink()


class _Server(uvicorn.Server):
    """uvicorn without its signal capture: the local Fly stops its machines after serve."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # A dropped connection is an injected fault, not an error worth a log line.
        return "returned without completing response" not in record.getMessage()


def serve(state_dir: Path, profile: Profile, *, api_port: int = 0, proxy_port: int = 0) -> None:
    """Serve until SIGTERM/SIGINT, then stop every machine process."""
    state_dir = state_dir.resolve()
    token = prepare_state_dir(state_dir)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    logging.getLogger("uvicorn.error").addFilter(_QuietDrops())
    with _server_lock(state_dir):
        previous = read_server_info(state_dir) or {}
        api_sock = _bind(api_port or int(previous.get("api_port") or 0))
        proxy_sock = _bind(proxy_port or int(previous.get("proxy_port") or 0))
        asyncio.run(_serve(state_dir, profile, token, api_sock, proxy_sock))


async def _serve(
    state_dir: Path,
    profile: Profile,
    token: str,
    api_sock: socket.socket,
    proxy_sock: socket.socket,
) -> None:
    api_port = api_sock.getsockname()[1]
    proxy_port = proxy_sock.getsockname()[1]
    api_url, proxy_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{proxy_port}"
    fly = LocalFly(state_dir, profile, proxy_url=proxy_url)
    request_log = RequestLog(state_dir / "requests.log")
    app = LocalFlyApp(fly, token, request_log, proxy_port=proxy_port)
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_level="warning",
        access_log=False,
        http="h11",
        ws="none",
        timeout_graceful_shutdown=2,
        server_header=False,
    )
    server = _Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    try:
        await recover(fly)
        info = {
            "pid": os.getpid(),
            "pid_started": process_started(os.getpid()),
            "api_url": api_url,
            "proxy_url": proxy_url,
            "api_port": api_port,
            "proxy_port": proxy_port,
            "profile": profile.name,
            "time_factor": profile.time_factor,
            "state_dir": str(state_dir),
            "started_at": time.time(),
        }
        _write_info(state_dir, info)
        await server.serve(sockets=[api_sock, proxy_sock])
    finally:
        await fly.cancel_tasks()
        await fly.supervisor.shutdown(SHUTDOWN_KILL_TIMEOUT)
        for m in fly.machines.values():
            if m.pid is not None:
                m.pid = m.pid_started = None
                fly.save(m)
        await app.proxy.aclose()
        fly.store.close()
        request_log.close()
        _drop_info(state_dir)
