"""``invoke ssh``: run a command on one machine, or look inside it before scaling.

Fly's ``fly ssh console -C`` goes through WireGuard; this goes through the Machines API's
``exec`` endpoint instead (the same token, no tunnel), and ``GET .../ps``. With a command it
returns the command's output and exit code. Without one it gathers what an operator looks at
before scaling a region: the machine's processes, how full its volume is (``df -h`` of the
mount) and how much of its memory the processes use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.connect import Connection, connect
from orchestrator.errors import ConfigError, DeployError, FlyNotFound
from orchestrator.fleetconfig.regions import validate_region
from orchestrator.fly.models import ExecResult, Machine, ProcessStat
from orchestrator.plan.config import META_SLOT
from orchestrator.settings import Settings

__all__ = ["Inspection", "SshResult", "inspect_machine", "pick_machine", "run_command"]

# Fly's exec endpoint waits at most this long for a command.
MAX_TIMEOUT_S = 60


@dataclass(frozen=True, slots=True)
class SshResult:
    """A command's answer: where it ran, its exit code and its output."""

    machine_id: str
    region: str
    command: tuple[str, ...]
    result: ExecResult

    def to_json(self) -> dict[str, Any]:
        """Return the result as JSON."""
        return {
            "machine": self.machine_id,
            "region": self.region,
            "command": list(self.command),
            "exit_code": self.result.exit_code,
            "stdout": self.result.stdout,
            "stderr": self.result.stderr,
        }


@dataclass(frozen=True, slots=True)
class Inspection:
    """What a look inside a machine found.

    Attributes:
        machine: the machine.
        processes: its processes, by pid.
        volume_path: where its volume is mounted (``None``: no volume).
        volume: the ``df -h`` line of the mount (``None`` when there is no volume or df failed).
        memory_mb: the machine's memory (its guest).
        rss_bytes: the resident memory of all its processes.
    """

    machine: Machine
    processes: tuple[ProcessStat, ...]
    volume_path: str | None
    volume: str | None
    memory_mb: int
    rss_bytes: int

    @property
    def memory_used(self) -> float | None:
        """Return the share of the machine's memory its processes hold (None: size unknown)."""
        if not self.memory_mb:
            return None
        return self.rss_bytes / (self.memory_mb * 1024 * 1024)

    def to_json(self) -> dict[str, Any]:
        """Return the inspection as JSON."""
        return {
            "machine": self.machine.id,
            "region": self.machine.region,
            "processes": [
                {
                    "pid": p.pid,
                    "command": p.command,
                    "rss_bytes": p.rss_bytes,
                    "cpu_ms": p.cpu_ms,
                    "listening": list(p.listening),
                }
                for p in self.processes
            ],
            "volume_path": self.volume_path,
            "volume": self.volume,
            "memory_mb": self.memory_mb,
            "rss_bytes": self.rss_bytes,
        }


def _slot(machine: Machine) -> int:
    value = machine.config.metadata.get(META_SLOT, "")
    return int(value) if value.isdigit() else 1 << 30


async def pick_machine(conn: Connection, region: str, machine: str | None) -> Machine:
    """Return the machine to use: ``--machine`` (id or name) or the region's first started one.

    Raises:
        ConfigError: a bad region, no such machine in the region, or none started there.
    """
    code = validate_region(region, "--region").code
    try:
        machines = await conn.client.list_machines(conn.app, region=code)
    except FlyNotFound:
        machines = []
    live = [m for m in machines if m.state not in ("destroyed", "destroying")]
    if machine is not None:
        found = [m for m in live if machine in (m.id, m.name)]
        if not found:
            known = ", ".join(m.id for m in live) or "none"
            raise ConfigError(
                f"no machine {machine!r} in {code}; machines there: {known}", where="--machine"
            )
        return found[0]
    started = sorted((m for m in live if m.state == "started"), key=lambda m: (_slot(m), m.id))
    if not started:
        raise ConfigError(f"no started machine in {code} to run on", where="--region")
    return started[0]


def _timeout(value: int | None) -> int:
    if value is None:
        return 30
    if not 1 <= value <= MAX_TIMEOUT_S:
        raise ConfigError(
            f"expected seconds from 1 to {MAX_TIMEOUT_S}, got {value}", where="--timeout"
        )
    return value


async def run_command(
    settings: Settings,
    *,
    region: str,
    command: Sequence[str],
    machine: str | None = None,
    timeout: int | None = None,
) -> SshResult:
    """Run ``command`` on a machine of ``region`` through the exec endpoint."""
    seconds = _timeout(timeout)
    if not command:
        raise ConfigError("give the command after --", where="ssh")
    async with connect(settings) as conn:
        target = await pick_machine(conn, region, machine)
        result = await conn.client.exec_machine(conn.app, target.id, list(command), timeout=seconds)
    return SshResult(target.id, target.region, tuple(command), result)


async def inspect_machine(
    settings: Settings, *, region: str, machine: str | None = None
) -> Inspection:
    """Gather a machine's processes, volume usage and memory use."""
    async with connect(settings) as conn:
        target = await pick_machine(conn, region, machine)
        if target.state != "started":
            raise DeployError(f"machine {target.id} is {target.state}; start it to look inside")
        processes = tuple(await conn.client.list_processes(conn.app, target.id))
        mount = next((m.path for m in target.config.mounts if m.path), None)
        volume = None
        if mount is not None:
            df = await conn.client.exec_machine(conn.app, target.id, ["df", "-h", mount])
            lines = [line for line in df.stdout.splitlines() if line.strip()]
            if df.exit_code == 0 and len(lines) >= 2:
                volume = " ".join(lines[-1].split()[1:5])
    memory = int(target.config.guest.memory_mb or 0)
    return Inspection(
        machine=target,
        processes=processes,
        volume_path=mount,
        volume=volume,
        memory_mb=memory,
        rss_bytes=sum(p.rss_bytes for p in processes),
    )
