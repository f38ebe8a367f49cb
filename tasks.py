"""Deploy the fleet in this directory to Fly.io Machines, or to the embedded local Fly.

Run from the directory that holds your ``fly.toml`` and ``regions/`` (or below it). With
``FLY_API_TOKEN`` set the tasks drive Fly.io; without it they drive the local Fly, started on
first use under ``.localfly/``. Exit codes: 0 success, 1 a deploy failed, 2 bad input.

Every task is thin: it parses flags, calls the ``orchestrator`` package, and renders.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from invoke import Collection, Context, Exit, task
from rich.console import Console

from orchestrator.connect import connect, find_root, load_settings
from orchestrator.errors import OrchestratorError
from orchestrator.execute import deploy as deploying
from orchestrator.execute.context import ExecuteOptions
from orchestrator.execute.events import EventBus
from orchestrator.execute.status import collect_status
from orchestrator.plan.serialize import to_dot, to_json_text, to_mermaid
from orchestrator.render.live import LiveView, make_console
from orchestrator.render.local import local_down_view, local_status_view, local_up_view
from orchestrator.render.plan import plan_tree
from orchestrator.render.summary import deploy_summary, outcome_line, status_view
from orchestrator.settings import Settings
from orchestrator.spec.regions import validate_region

T = TypeVar("T")

# The client retries rate limits and 5xx on its own; a bare "stamina.retry_scheduled" line on
# stderr tells an operator nothing, and a call that finally fails says what failed.
logging.getLogger("stamina").setLevel(logging.ERROR)

PLAN_FORMATS = ("tree", "json", "dot", "mermaid")


# -- helpers ----------------------------------------------------------------------------------


@contextmanager
def _errors() -> Iterator[None]:
    """Turn the package's errors into a one-line message and an exit code (2 bad input, 1 else)."""
    try:
        yield
    except OrchestratorError as exc:
        # One line per problem: a file with several is fixed in one go, not one run each.
        parts = [str(p) for p in getattr(exc, "problems", ())] or [str(exc)]
        lines = [f"error: {' '.join(part.split())}" for part in parts]
        raise Exit("\n".join(lines), exc.exit_code) from None
    except KeyboardInterrupt:
        raise Exit("interrupted", 130) from None
    except BrokenPipeError:
        # The reader went away (``invoke status --json | head``): say nothing more, and exit as
        # a process killed by SIGPIPE would, without Python's "Exception ignored" at shutdown.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise Exit(code=141) from None


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _settings(c: Context) -> Settings:
    return load_settings(find_root(), os.environ, c.config.get("fly"))


def _options(c: Context) -> ExecuteOptions:
    return ExecuteOptions.from_config(c.config.get("orchestrator"))


def _emit(text: str) -> None:
    """Write ``text`` to stdout; a reader that went away (``| head``) ends the task quietly."""
    with _errors():
        sys.stdout.write(text)
        sys.stdout.flush()


def _print_json(data: Any) -> None:
    _emit(json.dumps(data, indent=2, sort_keys=True) + "\n")


# -- tasks ------------------------------------------------------------------------------------


@task(
    iterable=["region"],
    help={
        "region": "Plan only this region (repeat for several); default: every region, in waves.",
        "format": "Output format: tree (default), json, dot or mermaid.",
        "image": "Plan for this image instead of fly.toml's [build] image.",
    },
)
def plan(c, region=None, format="tree", image=None):
    """Show the steps a deploy would run, without changing anything."""
    if format not in PLAN_FORMATS:
        raise Exit(f"error: --format: must be one of {', '.join(PLAN_FORMATS)}, got {format!r}", 2)
    with _errors():
        the_plan = _run(deploying.plan(_settings(c), regions=region or [], image=image))
    if format == "json":
        _emit(to_json_text(the_plan))
    elif format == "dot":
        _emit(to_dot(the_plan))
    elif format == "mermaid":
        _emit(to_mermaid(the_plan))
    else:
        make_console().print(plan_tree(the_plan))


@task(
    iterable=["region"],
    help={
        "region": "Deploy only this region (repeat for several); default: all regions, in waves.",
        "image": "Deploy this image instead of fly.toml's [build] image.",
        "dry_run": "Show the plan and stop; change nothing.",
        "resume": "Finish the last interrupted or failed deploy or rollback (same image, regions).",
        "json": "Print only the result as JSON on stdout.",
    },
)
def deploy(c, region=None, image=None, dry_run=False, resume=False, json_=False):
    """Deploy the fleet in waves, gated on health and metrics, rolling back a failed wave."""
    request = deploying.DeployRequest(
        regions=tuple(region or ()), image=image, dry_run=dry_run, resume=resume
    )
    console = make_console()
    bus = EventBus()
    with _errors():
        settings, options = _settings(c), _options(c)
        if json_:
            result = _run(deploying.deploy(settings, request, bus=bus, options=options))
        else:
            with LiveView(console) as view:
                bus.subscribe(view)
                result = _run(deploying.deploy(settings, request, bus=bus, options=options))
    if isinstance(result, deploying.DryRun):
        if json_:
            print(to_json_text(result.plan), end="")
        else:
            console.print(plan_tree(result.plan))
            console.print("Dry run: nothing was changed.")
        return
    _finish_run(console, result, json_)


def _finish_run(console: Console, result: Any, json_: bool) -> None:
    """Print a deploy's or rollback's result, then exit 1 if it did not reach its goal."""
    if json_:
        _print_json(result.to_json())
    elif console.is_terminal:
        console.print(deploy_summary(result))
    else:
        # Each step already has its line in a log; the table would repeat them.
        console.print(outcome_line(result))
    if not result.ok:
        message = f"error: {result.error}" if result.error else ""
        if result.rollback is not None:
            message += f"\n{result.rollback.describe()}"
        raise Exit(message, result.exit_code)


@task(
    iterable=["region"],
    help={
        "region": "Roll back only this region (repeat for several); default: every region.",
        "to": "The release to put back, e.g. v1-92d1226d or v1 (default: the previous one).",
        "json": "Print only the result as JSON on stdout.",
    },
)
def rollback(c, region=None, to=None, json_=False):
    """Put the previous (or a named) release back on the fleet, from the journal."""
    from orchestrator.execute import rollback as rolling

    request = rolling.RollbackRequest(regions=tuple(region or ()), to=to)
    console = make_console()
    bus = EventBus()
    with _errors():
        settings, options = _settings(c), _options(c)
        if json_:
            result = _run(rolling.rollback(settings, request, bus=bus, options=options))
        else:
            with LiveView(console) as view:
                bus.subscribe(view)
                result = _run(rolling.rollback(settings, request, bus=bus, options=options))
    _finish_run(console, result, json_)


@task(
    iterable=["region"],
    help={
        "region": "The region to change (repeat for several); without a change, show only it.",
        "count": "Machines wanted in each named region (0 empties a replica region).",
        "vm": "A VM preset: shared-cpu-1x..8x, performance-1x..16x; memory goes to its default.",
        "cpu": "CPUs within the region's kind: shared 1, 2, 4, 6, 8; performance 1-16.",
        "memory": "Memory per machine in MB, within the CPUs' range (docs/scaling.md).",
        "volume_size": "Each machine's volume in GB; volumes only grow (existing ones extend).",
        "dry_run": "Show the file changes and the plan; change nothing.",
        "destroy_volumes": "Also destroy the volumes of machines a scale-down removes.",
        "usage": "When showing, also measure CPU, memory, p95, errors and volume use.",
        "json": "Print only JSON on stdout.",
        "group": "A [processes] group: change only its machines ([groups.NAME] in the file).",
    },
)
def scale(
    c,
    region=None,
    count=None,
    vm=None,
    cpu=None,
    memory=None,
    volume_size=None,
    dry_run=False,
    destroy_volumes=False,
    usage=False,
    json_=False,
    group=None,
):
    """Show desired beside observed size per region, or change a region's count and size."""
    from orchestrator import scale as scaling
    from orchestrator.errors import ConfigError
    from orchestrator.render.scale import edits_view, extends_view, scale_report_view

    console = make_console()
    with _errors():
        settings = _settings(c)
        request = scaling.parse_scale_flags(
            region=region,
            count=count,
            vm=vm,
            cpu=cpu,
            memory=memory,
            volume_size=volume_size,
            dry_run=dry_run,
            destroy_volumes=destroy_volumes,
            fleet_regions=scaling.fleet_regions(settings),
            group=group,
        )
        if not request.changes:
            report = _run(
                scaling.show_scale(
                    settings, regions=request.regions, usage=usage, group=request.group
                )
            )
            if json_:
                _print_json(report.to_json())
            else:
                console.print(scale_report_view(report))
            return
        if usage:
            raise ConfigError("only when showing; drop the change flags", where="--usage")
        bus = EventBus()
        if json_ or dry_run:
            result = _run(scaling.scale(settings, request, bus=bus, options=_options(c)))
        else:
            with LiveView(console) as view:
                bus.subscribe(view)
                result = _run(scaling.scale(settings, request, bus=bus, options=_options(c)))
    if json_:
        _print_json(result.to_json())
    elif isinstance(result, scaling.ScaleDryRun):
        console.print(edits_view(result.edits, dry_run=True))
        console.print(plan_tree(result.plan))
        console.print(extends_view(result.extends))
        console.print("Dry run: nothing was written or changed.")
    else:
        console.print(deploy_summary(result.result))
    if isinstance(result, scaling.ScaleResult) and not result.ok:
        raise Exit(f"error: {result.result.error}" if result.result.error else "", 1)


@task(
    help={
        "region": "Show only this region.",
        "json": "Print only the status as JSON on stdout.",
    },
)
def status(c, region=None, json_=False):
    """Show every machine: state, release, checks, role, size and volume."""
    with _errors():
        if region is not None:
            validate_region(region, "--region")
        settings = _settings(c)

        async def gather():
            async with connect(settings) as conn:
                return await collect_status(conn, region=region)

        fleet = _run(gather())
    if json_:
        _print_json(fleet.to_json())
    else:
        make_console().print(status_view(fleet))
    if not fleet.healthy:
        names = ", ".join(m.id for m in fleet.unhealthy)
        raise Exit(f"error: unhealthy machine(s): {names}", 1)


@task(
    help={
        "region": "Show only this region's machines.",
        "machine": "Show only this machine (id or name; a destroyed one too).",
        "follow": "Keep printing new lines (and new machines') until Ctrl-C.",
        "lines": "Show only the last N lines of each machine first (default: all).",
        "group": "Show only this [processes] group's machines.",
    },
)
def logs(c, region=None, machine=None, follow=False, lines=None, group=None):
    """Print the machines' output on the local Fly, each line prefixed by region and machine."""
    import sys

    from orchestrator.errors import ConfigError
    from orchestrator.logs import log_sources, require_local, stream_logs

    with _errors():
        settings = _settings(c)
        require_local(settings, region=region)
        last = None
        if lines is not None:
            if not str(lines).isdigit():
                raise ConfigError(f"expected a whole number >= 0, got {lines!r}", where="--lines")
            last = int(lines)

        async def show():
            async with connect(settings) as conn:
                sources = await log_sources(conn, region=region, machine=machine, group=group)
                if not sources:
                    print(f"no machines{f' in {region}' if region else ''}", file=sys.stderr)
                    if not follow:
                        return
                stream = stream_logs(
                    conn,
                    sources,
                    follow=follow,
                    lines=last,
                    region=region,
                    rescan=not machine,
                    group=group,
                )
                async for line in stream:
                    print(line.format(), flush=True)

        try:
            _run(show())
        except KeyboardInterrupt:
            return  # Ctrl-C is how a --follow ends


@task(
    help={
        "region": "The region to take down in the drill (required).",
        "promote": "The region to promote when --region is the primary (default: the nearest).",
        "json": "Print only the drill report as JSON on stdout.",
        "report": "Also write the report to PATH (.md or .html) and the other format beside it.",
        "dry_run": "Run the preflight and say what the drill would do; change nothing.",
        "failback": "Move the primary back at the end (--no-failback leaves it promoted).",
        "hook": "Run this shell command after each phase (DRILL_PHASE etc. in its environment).",
        "destroy_old_volumes": "Destroy the old primary's volumes once re-seeded (default: keep).",
    },
)
def drill(
    c,
    region=None,
    promote=None,
    json_=False,
    report=None,
    dry_run=False,
    failback=True,
    hook=None,
    destroy_old_volumes=False,
):
    """Run a disaster-recovery drill: take a region down, fail over, measure, fail back."""
    from pathlib import Path

    from orchestrator.drill import DrillBus, DrillRequest, run_drill, write_reports
    from orchestrator.render.drill import DrillView, drill_summary

    if not region:
        raise Exit("error: --region: name the region to take down, e.g. --region syd", 2)
    request = DrillRequest(
        region=region,
        promote=promote,
        dry_run=dry_run,
        failback=failback,
        destroy_old_volumes=destroy_old_volumes,
        hook=hook,
    )
    console = Console(stderr=json_)
    bus = DrillBus()
    with _errors():
        validate_region(region, "--region")
        if promote is not None:
            validate_region(promote, "--promote")
        settings, options = _settings(c), _options(c)
        if json_:
            result = _run(run_drill(settings, request, bus=bus, options=options))
        else:
            with DrillView(console) as view:
                bus.subscribe(view)
                result = _run(run_drill(settings, request, bus=bus, options=options))
    if report:
        written = write_reports(result, Path(report))
        console.print(f"report written to {written[0]} and {written[1]}")
    if json_:
        _print_json(result.to_json())
    else:
        console.print(drill_summary(result))
    if result.exit_code:
        raise Exit(f"error: drill {result.verdict}: {result.reason or 'objectives not met'}", 1)


# -- the local Fly ----------------------------------------------------------------------------


@task(
    name="up",
    help={
        "profile": "Latency profile: fast (default) or realistic.",
        "time_factor": "Scale the realistic profile's durations (0.1 = ten times faster).",
    },
)
def local_up(c, profile="fast", time_factor=1.0):
    """Start the embedded local Fly in the background (if it is not running)."""
    from orchestrator.localfly import cli

    if profile not in ("fast", "realistic"):
        raise Exit(f"error: --profile: must be fast or realistic, got {profile!r}", 2)
    if time_factor <= 0:
        raise Exit(f"error: --time-factor: must be a positive number, got {time_factor}", 2)
    with _errors():
        endpoint = cli.up(find_root(), profile=profile, time_factor=time_factor)
    make_console().print(local_up_view(endpoint))


@task(name="down", help={"purge": "Also delete its state: machines, volumes and snapshots."})
def local_down(c, purge=False):
    """Stop the local Fly and every machine process it started."""
    from orchestrator.localfly import cli

    with _errors():
        summary = cli.down(find_root(), purge=purge)
    make_console().print(local_down_view(summary))


@task(name="status")
def local_status(c):
    """Show whether the local Fly runs, where, and what it holds."""
    from orchestrator.localfly import cli

    with _errors():
        found = cli.status(find_root())
    make_console().print(local_status_view(found))


local = Collection("local", local_up, local_down, local_status)
ns = Collection(plan, deploy, rollback, scale, status, logs, drill, local)
