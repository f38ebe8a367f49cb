"""Helpers for the local Fly's tests: images, clients, polling, process checks."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil

from orchestrator.fly.client import FlyClient
from orchestrator.fly.models import Machine
from orchestrator.localfly.control import Endpoint
from orchestrator.localfly.state import MachineRecord, read_records

T = TypeVar("T")

# echo-app: a stdlib HTTP server on $PORT that answers every GET with who it is; a POST gets
# 201 with the body's size, or 409 with `fly-replay: $ECHO_REPLAY` when that is set.
_ECHO = (
    "import http.server, json, os\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        env = os.environ\n"
    "        body = json.dumps({'region': env['FLY_REGION'], 'machine_id': env['FLY_MACHINE_ID'],\n"
    "                           'image': env['FLY_IMAGE_REF'], 'path': self.path}).encode()\n"
    "        self.send_response(200)\n"
    "        self.send_header('content-type', 'application/json')\n"
    "        self.send_header('content-length', str(len(body)))\n"
    "        self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "    def do_POST(self):\n"
    "        size = len(self.rfile.read(int(self.headers.get('content-length') or 0)))\n"
    "        replay = os.environ.get('ECHO_REPLAY')\n"
    "        body = json.dumps({'machine_id': os.environ['FLY_MACHINE_ID'], 'size': size,\n"
    "                           'replay_src': self.headers.get('fly-replay-src')}).encode()\n"
    "        self.send_response(409 if replay else 201)\n"
    "        if replay:\n"
    "            self.send_header('fly-replay', replay)\n"
    "        self.send_header('content-length', str(len(body)))\n"
    "        self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "    def log_message(self, *args):\n"
    "        pass\n"
    "http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n"
)


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


# stubborn: ignores SIGTERM, then listens on $PORT (so a passing tcp check means "ignoring").
_STUBBORN = (
    "import os, signal, socket, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "s = socket.create_server(('127.0.0.1', int(os.environ['PORT'])))\n"
    "time.sleep(3600)\n"
)
ECHO_IMAGES = (
    f'"echo-app" = ["{{python}}", "-c", {_toml_string(_ECHO)}]\n'
    '"sleeper" = ["sleep", "3600"]\n'
    '"crasher" = ["{python}", "-c", "import time, sys; time.sleep(0.2); sys.exit(3)"]\n'
    f'"stubborn" = ["{{python}}", "-c", {_toml_string(_STUBBORN)}]\n'
)


def unique_app(prefix: str = "t") -> str:
    """Return a fresh app name."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def fly_client(endpoint: Endpoint) -> FlyClient:
    """Return a FlyClient for the local Fly."""
    return FlyClient(endpoint.api_url, endpoint.token)


def api(endpoint: Endpoint, **kw: Any) -> httpx.Client:
    """Return a raw HTTP client with the token."""
    return httpx.Client(base_url=endpoint.api_url, headers=endpoint.headers, timeout=30, **kw)


def echo_config(**extra: Any) -> dict[str, Any]:
    """Return a machine config running echo-app with an http check."""
    config: dict[str, Any] = {
        "image": "echo-app:v1",
        "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256},
        "services": [{"protocol": "tcp", "internal_port": 8080, "ports": [{"port": 443}]}],
        "checks": {
            "alive": {"type": "http", "port": 8080, "path": "/", "interval": "1s", "timeout": "1s"}
        },
    }
    config.update(extra)
    return config


def service_config(**extra: Any) -> dict[str, Any]:
    """Return echo-app's config with its http check as a service check (Fly routes on those)."""
    check = {"type": "http", "path": "/", "interval": "1s", "timeout": "1s"}
    service = {
        "protocol": "tcp",
        "internal_port": 8080,
        "ports": [{"port": 443}],
        "checks": [check],
    }
    return echo_config(services=[service], checks={}, **extra)


def sample_config(volume_id: str, release: str, primary: str = "syd") -> dict[str, Any]:
    """Return a machine config running the sample app with its volume and /status check."""
    return {
        "image": f"registry.fly.io/sample-app:{release}",
        "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256},
        "env": {"PRIMARY_REGION": primary},
        "mounts": [{"volume": volume_id, "path": "/app/.data"}],
        "services": [{"protocol": "tcp", "internal_port": 8080, "ports": [{"port": 443}]}],
        "checks": {
            "status": {
                "type": "http",
                "port": 8080,
                "path": "/status",
                "interval": "1s",
                "timeout": "1s",
            }
        },
        "metadata": {"fly_platform_version": "v2", "fly_process_group": "app"},
    }


def wait_for(condition: Callable[[], T | None], *, timeout: float = 20.0, what: str = "") -> T:
    """Poll ``condition`` until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.02)  # polling a condition with a deadline, not synchronising on time


async def await_for(
    condition: Callable[[], Awaitable[T | None]], *, timeout: float = 20.0, what: str = ""
) -> T:
    """Poll an async ``condition`` until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await asyncio.sleep(0.02)  # polling with a deadline


async def passing(fly: FlyClient, app: str, machine_id: str, timeout: float = 20.0) -> Machine:
    """Wait until a machine is started with every check passing; return it."""

    async def check() -> Machine | None:
        m = await fly.get_machine(app, machine_id)
        return m if m.state == "started" and m.checks_passing else None

    return await await_for(check, timeout=timeout, what=f"{machine_id} checks passing")


def machine_pid(state_dir: Path, machine_id: str) -> int | None:
    """Return the pid the server recorded for a machine."""
    for m in read_records(state_dir / "state.db", MachineRecord):
        if m.id == machine_id:
            return m.pid
    return None


def machine_pids(state_dir: Path) -> list[int]:
    """Return every machine pid recorded in a state dir."""
    return [m.pid for m in read_records(state_dir / "state.db", MachineRecord) if m.pid]


def alive(pid: int) -> bool:
    """Say whether ``pid`` runs (a zombie does not count)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def tagged_processes(state_dir: Path) -> list[int]:
    """Return live processes that belong to a state dir (server or machine)."""
    marker = str(state_dir.resolve())
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            if marker in " ".join(p.info["cmdline"] or []) or (
                p.environ().get("LOCALFLY_STATE_DIR") == marker
            ):
                found.append(p.pid)
        except (psutil.Error, OSError):
            continue
    return found


def assert_no_processes(state_dir: Path, pids: list[int]) -> None:
    """Fail unless every pid is gone and nothing of ``state_dir`` runs (polls briefly)."""
    try:
        wait_for(
            lambda: not [p for p in pids if alive(p)] and not tagged_processes(state_dir),
            timeout=10,
            what="processes to exit",
        )
    except AssertionError:
        left = sorted({*(p for p in pids if alive(p)), *tagged_processes(state_dir)})
        for pid in left:
            psutil.Process(pid).kill()
        raise AssertionError(f"processes left behind: {left}") from None


def machine_port(state_dir: Path, machine_id: str) -> int | None:
    """Return the loopback port the server gave a machine."""
    for m in read_records(state_dir / "state.db", MachineRecord):
        if m.id == machine_id:
            return m.port
    return None


def reap(pid: int) -> None:
    """Collect the exit of a child process the test killed itself (no zombie left)."""
    import os

    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
