"""A real Prometheus server for the local Fly, scraping machines through file-based discovery.

Fly.io scrapes every machine that exposes metrics into its managed Prometheus; the local Fly
plays that part with the Debian package ``prometheus`` (``/usr/bin/prometheus``):

- `TargetFile` is kept by the running local Fly: ``<state>/prometheus/targets.json`` in
  Prometheus' ``file_sd_configs`` format, one entry per started machine with a process: its
  ``127.0.0.1:<port>`` and the labels ``app``, ``region``, ``instance`` (the machine id, as on
  Fly's managed Prometheus), ``machine_id``, ``image``, ``version`` (the release, from the
  machine's ``fly_release_id`` metadata, else the image tag) and ``process_group``. It is
  rewritten (atomically) shortly after any machine starts or stops.
- `start` runs ``prometheus`` on a free loopback port with its own config
  (``prometheus.yml``: scrape every second, the targets file) and data dir (``data/``),
  detached, its pid in ``server.json`` of that directory; `stop` stops it by that pid;
  `status` says whether it runs. The local Fly's ``control.stop`` stops it too.

A Prometheus the operating system's package may have started as a service is never used or
touched: everything here is under the local Fly's state dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from orchestrator.errors import ConfigError, LocalFlyError
from orchestrator.localfly.state import MachineRecord
from orchestrator.localfly.supervisor import is_alive

__all__ = [
    "PROMETHEUS_DIR",
    "PromServer",
    "TargetFile",
    "find_binary",
    "start",
    "status",
    "stop",
    "targets",
]

PROMETHEUS_DIR = "prometheus"
TARGETS = "targets.json"
SCRAPE_INTERVAL = "1s"
READY_TIMEOUT_S = 30.0
# Changes within this delay are written once.
_WRITE_DELAY_S = 0.1


def _dir(state_dir: Path) -> Path:
    return Path(state_dir) / PROMETHEUS_DIR


def _target(m: MachineRecord) -> dict[str, Any] | None:
    if m.state != "started" or m.port is None:
        return None
    meta = (m.config.get("metadata") or {}) if isinstance(m.config, dict) else {}
    image = str(m.config.get("image") or "")
    tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
    return {
        "targets": [f"127.0.0.1:{m.port}"],
        "labels": {
            "app": m.app,
            "region": m.region,
            "instance": m.id,
            "machine_id": m.id,
            "image": image,
            "version": str(meta.get("fly_release_id") or tag),
            "process_group": str(meta.get("fly_process_group") or "app"),
        },
    }


def targets(machines: Iterable[MachineRecord]) -> list[dict[str, Any]]:
    """Return the ``file_sd_configs`` entries of the started machines, by machine id."""
    found = [t for m in sorted(machines, key=lambda m: m.id) if (t := _target(m)) is not None]
    return found


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class TargetFile:
    """Keep ``targets.json`` current while the local Fly runs.

    Args:
        state_dir: the local Fly's state dir.
        machines: a callable returning every machine record (read when the file is written).
        enabled: ``False`` for simulated machines, which have no process to scrape.
    """

    def __init__(self, state_dir: Path, machines: Any, *, enabled: bool = True) -> None:
        self.path = _dir(state_dir) / TARGETS
        self._machines = machines
        self._enabled = enabled
        self._pending = False

    def changed(self) -> None:
        """Note that a machine started or stopped; the file is rewritten shortly."""
        if not self._enabled or self._pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.write()
            return
        self._pending = True
        loop.call_later(_WRITE_DELAY_S, self.write)

    def write(self) -> None:
        """Write the file now."""
        self._pending = False
        if not self._enabled:
            return
        _write_atomically(self.path, json.dumps(targets(self._machines()), indent=1) + "\n")


@dataclass(frozen=True, slots=True)
class PromServer:
    """A running Prometheus of the local Fly.

    Attributes:
        pid: its process id.
        url: where its HTTP API answers (``http://127.0.0.1:<port>``).
        config: its config file.
        targets: the file-based discovery file it reads.
    """

    pid: int
    url: str
    config: Path
    targets: Path


def find_binary() -> str:
    """Return the ``prometheus`` executable.

    Raises:
        ConfigError: it is not installed (with how to install it).
    """
    found = shutil.which("prometheus")
    if found is None:
        raise ConfigError(
            "the prometheus server is not installed: apt-get install prometheus (Debian), "
            "or put a prometheus binary on PATH",
            where="--prometheus",
        )
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _config_text(targets_path: Path) -> str:
    # JSON is valid YAML: no YAML library needed.
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [
            {
                "job_name": "localfly-machines",
                "scrape_interval": SCRAPE_INTERVAL,
                "scrape_timeout": SCRAPE_INTERVAL,
                "file_sd_configs": [{"files": [str(targets_path)], "refresh_interval": "1s"}],
            }
        ],
    }
    return json.dumps(config, indent=1) + "\n"


def _read_info(state_dir: Path) -> dict[str, Any] | None:
    path = _dir(state_dir) / "server.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def status(state_dir: Path) -> PromServer | None:
    """Return the local Fly's Prometheus when it runs, else ``None``."""
    info = _read_info(state_dir)
    if info is None:
        return None
    pid, started = int(info.get("pid", 0)), info.get("started")
    if not pid or not is_alive(pid, float(started) if started is not None else None):
        return None
    d = _dir(state_dir)
    config, found = d / "prometheus.yml", d / TARGETS
    return PromServer(pid=pid, url=str(info["url"]), config=config, targets=found)


def start(state_dir: Path, machines: Iterable[MachineRecord] = ()) -> PromServer:
    """Start Prometheus for the local Fly at ``state_dir`` (or return the running one).

    ``machines`` seed the targets file when the local Fly has not written it yet.

    Raises:
        ConfigError: ``prometheus`` is not installed.
        LocalFlyError: it did not start or did not become ready.
    """
    state_dir = Path(state_dir).resolve()
    running = status(state_dir)
    if running is not None:
        return running
    binary = find_binary()
    d = _dir(state_dir)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    targets_path = d / TARGETS
    if not targets_path.exists():
        _write_atomically(targets_path, json.dumps(targets(machines), indent=1) + "\n")
    config = d / "prometheus.yml"
    _write_atomically(config, _config_text(targets_path))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={d / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1d",
        "--log.level=warn",
    ]
    log = os.open(d / "prometheus.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        pid = os.posix_spawn(
            binary,
            argv,
            # Tagged as the local Fly's, so its stop finds it even without server.json.
            {**os.environ, "LOCALFLY_STATE_DIR": str(state_dir)},
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log, 1),
                (os.POSIX_SPAWN_DUP2, log, 2),
            ],
            setsid=True,
        )
    except OSError as exc:
        raise LocalFlyError(f"cannot start prometheus: {exc}") from exc
    finally:
        os.close(log)
    try:
        started = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        started = None
    _write_atomically(
        d / "server.json", json.dumps({"pid": pid, "started": started, "url": url}) + "\n"
    )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not is_alive(pid):
            _reap(pid)
            raise LocalFlyError(f"prometheus exited at start; see {d / 'prometheus.log'}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200:
                return PromServer(pid=pid, url=url, config=config, targets=targets_path)
        time.sleep(0.1)  # polling its readiness, with a deadline
    stop(state_dir)
    raise LocalFlyError(f"prometheus did not become ready in {READY_TIMEOUT_S:g}s")


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop(state_dir: Path, *, timeout: float = 10.0) -> int | None:
    """Stop the local Fly's Prometheus by its pid; return the pid it had, or ``None``."""
    running = status(Path(state_dir))
    if running is None:
        return None
    pid = running.pid
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while is_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    if is_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while is_alive(pid):
            _reap(pid)
            time.sleep(0.02)
    _reap(pid)
    (_dir(Path(state_dir)) / "server.json").unlink(missing_ok=True)
    return pid
