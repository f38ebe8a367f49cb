"""Show what ``invoke local.up``, ``local.down`` and ``local.status`` did or found."""

from __future__ import annotations

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from orchestrator.localfly.control import Endpoint, LocalStatus, StopSummary
from orchestrator.localfly.prometheus import PromServer

__all__ = ["local_down_view", "local_prometheus_view", "local_status_view", "local_up_view"]


def local_up_view(endpoint: Endpoint) -> RenderableType:
    """Return where the running local Fly answers (never its token)."""
    text = Text(f"local Fly running (pid {endpoint.pid})\n", style="green")
    text.append(f"  Machines API  {endpoint.api_url}\n")
    text.append(f"  edge proxy    {endpoint.proxy_url}\n")
    text.append(f"  state         {endpoint.state_dir}", style="dim")
    return text


def local_prometheus_view(server: PromServer) -> RenderableType:
    """Return where the local Fly's Prometheus answers and what it scrapes."""
    text = Text(f"Prometheus running (pid {server.pid})\n", style="green")
    text.append(f"  query API     {server.url}/api/v1/query\n")
    text.append(f"  targets       {server.targets}", style="dim")
    return text


def local_down_view(summary: StopSummary) -> RenderableType:
    """Return what stopping the local Fly did."""
    if summary.server_stopped:
        text = Text(f"local Fly stopped (pid {summary.server_pid})", style="green")
    else:
        text = Text("local Fly was not running", style="dim")
    if summary.machines_killed:
        pids = ", ".join(str(p) for p in summary.machines_killed)
        text.append(f"\n  stopped leftover machine processes: {pids}")
    if summary.prometheus_pid is not None:
        text.append(f"\n  stopped its Prometheus (pid {summary.prometheus_pid})")
    if summary.purged:
        text.append(f"\n  purged {summary.state_dir} (volumes, snapshots, state)")
    return text


def local_status_view(status: LocalStatus) -> RenderableType:
    """Return the local Fly's state: running or not, where, and what it holds."""
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    if status.running:
        table.add_row("server", Text(f"running (pid {status.pid})", style="green"))
        table.add_row("Machines API", status.api_url or "")
        table.add_row("edge proxy", status.proxy_url or "")
        factor = f" x{status.time_factor:g}" if status.time_factor not in (None, 1.0) else ""
        table.add_row("profile", f"{status.profile}{factor}")
        if status.profile == "sim":
            # Nothing runs: say so, so nobody mistakes a benchmark's fleet for a working one.
            table.add_row(
                "",
                Text(
                    "simulated machines: state only, no processes (benchmarks and scale tests)",
                    style="yellow",
                ),
            )
    else:
        table.add_row("server", Text("not running", style="dim"))
    table.add_row("state", str(status.state_dir))
    table.add_row("apps", str(status.apps))
    machines = ", ".join(f"{n} {state}" for state, n in status.machines.items()) or "none"
    table.add_row("machines", machines)
    if status.prometheus_url:
        table.add_row("prometheus", status.prometheus_url)
    table.add_row("volumes", str(status.volumes))
    running = ", ".join(str(p) for p in status.processes) or "none"
    table.add_row("machine processes", running)
    return table
