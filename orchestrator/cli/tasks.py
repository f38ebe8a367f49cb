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
from typing import TYPE_CHECKING, Any, TypeVar

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task
from rich.console import Console

from orchestrator.cli.words import WordTask
from orchestrator.cli.words import install as install_word_parsing
from orchestrator.commands import deploy as deploying
from orchestrator.commands.status import fleet_status
from orchestrator.connect import connect, find_root, load_settings, local_running
from orchestrator.cost import cost_json
from orchestrator.errors import OrchestratorError
from orchestrator.execute.context import ExecuteOptions
from orchestrator.execute.events import EventBus
from orchestrator.fleetconfig.regions import validate_region
from orchestrator.plan.serialize import to_dot, to_json_text, to_mermaid
from orchestrator.render.cost import cost_lines
from orchestrator.render.errors import error_text, problem_text, run_failure_text
from orchestrator.render.helptext import install as install_help_placeholders
from orchestrator.render.live import LiveView, in_ci, make_console
from orchestrator.render.local import (
    local_down_view,
    local_prometheus_view,
    local_status_view,
    local_up_view,
)
from orchestrator.render.plan import plan_tree
from orchestrator.render.summary import deploy_summary, outcome_line, status_view
from orchestrator.settings import Settings

if TYPE_CHECKING:
    from orchestrator.commands.scale import Confirm
    from orchestrator.execute.ledger import ReleaseEntry, RunIntent
    from orchestrator.execute.results import DeployResult
    from orchestrator.render.rollout_report import GateLog
    from orchestrator.scale.request import ScaleRequest

T = TypeVar("T")

# The client retries rate limits and 5xx on its own; a bare "stamina.retry_scheduled" line on
# stderr tells an operator nothing, and a call that finally fails says what failed.
logging.getLogger("stamina").setLevel(logging.ERROR)

PLAN_FORMATS = ("tree", "json", "dot", "mermaid")

VOLUMES_ACTIONS = ("list", "prune")

install_help_placeholders()
install_word_parsing()


# -- helpers ----------------------------------------------------------------------------------


@contextmanager
def _errors() -> Iterator[None]:
    """Turn the package's errors into a one-line message and an exit code (2 bad input, 1 else)."""
    try:
        yield
    except OrchestratorError as exc:
        # One line per problem: a file with several is fixed in one go, not one run each.
        problems = getattr(exc, "problems", ())
        if problems:
            lines = [f"error: {' '.join(problem_text(p).split())}" for p in problems]
            raise Exit("\n".join(lines), exc.exit_code) from None
        raise Exit(error_text(exc), exc.exit_code) from None
    except KeyboardInterrupt:
        raise Exit("interrupted", 130) from None
    except BrokenPipeError:
        # The reader went away (``invoke status --json | head``): say nothing more, and exit as
        # a process killed by SIGPIPE would, without Python's "Exception ignored" at shutdown.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise Exit(code=141) from None


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _watched(coro: Coroutine[Any, Any, T], bus: EventBus, view: Console | None) -> T:
    """Run ``coro`` with its events shown live on ``view`` (``None``: no live view)."""
    if view is None:
        return _run(coro)
    with LiveView(view) as live:
        bus.subscribe(live)
        return _run(coro)


def _run_view(console: Console, json_: bool) -> Console | None:
    """Return where a run's live view goes: none for --json, but stderr in CI beside it."""
    if json_ and not in_ci():
        return None
    return make_console(stderr=True) if json_ else console


def _settings(c: Context) -> Settings:
    return load_settings(find_root(), os.environ, c.config.get("fly"))


def _idle_local(settings: Settings) -> bool:
    """Tell whether the fleet's local Fly is not running (reading the fleet would start it)."""
    return settings.backend == "local" and not local_running(settings)


def _say_started(settings: Settings) -> None:
    """Say on stderr that a local Fly now runs in the background, and how to stop it."""
    # stderr: a --json or --format json answer on stdout stays parseable.
    Console(stderr=True).print(
        f"! started the local Fly in the background ({settings.local_state_dir}); it keeps "
        "running after this command: stop it with `invoke local.down`",
        style="yellow",
        soft_wrap=True,
    )


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
def plan(
    c: Context, region: list[str] | None = None, format: str = "tree", image: str | None = None
) -> None:
    """Show the steps a deploy would run, without changing anything."""
    if format not in PLAN_FORMATS:
        raise Exit(f"error: --format: must be one of {', '.join(PLAN_FORMATS)}, got {format!r}", 2)
    with _errors():
        settings = _settings(c)
        idle = _idle_local(settings)
        the_plan, observed = _run(
            deploying.plan_with_fleet(settings, regions=region or [], image=image)
        )
    if idle:
        _say_started(settings)
    if format == "json":
        _emit(to_json_text(the_plan))
    elif format == "dot":
        _emit(to_dot(the_plan))
    elif format == "mermaid":
        _emit(to_mermaid(the_plan))
    else:
        from orchestrator.cost import plan_cost
        from orchestrator.execute.expected import plan_estimate
        from orchestrator.render.cost import cost_lines

        with _errors():
            eta = plan_estimate(_settings(c), the_plan)
        console = make_console()
        console.print(plan_tree(the_plan, eta))
        console.print(cost_lines(*plan_cost(the_plan, observed)))


@task(
    iterable=["region", "pause_after"],
    help={
        "region": "Deploy only this region (repeat for several); default: all regions, in waves.",
        "image": "Deploy this image instead of fly.toml's [build] image.",
        "dry_run": "Show the plan and stop; change nothing.",
        "resume": "Finish the last interrupted or failed deploy or rollback (same image, regions).",
        "json": "Print only the result as JSON on stdout.",
        "report": "Also write a report to PATH (.md or .html) and the other format beside it.",
        "pause_after": "Pause once REGION's wave passes its gates, until `invoke promote`.",
        "measure_writes": "Write to the primary region throughout; report its write downtime.",
    },
)
def deploy(
    c: Context,
    region: list[str] | None = None,
    image: str | None = None,
    dry_run: bool = False,
    resume: bool = False,
    json_: bool = False,
    report: str | None = None,
    pause_after: list[str] | None = None,
    measure_writes: bool = False,
) -> None:
    """Deploy the fleet in waves, gated on health and metrics, rolling back a failed wave."""
    request = deploying.DeployRequest(
        regions=tuple(region or ()),
        image=image,
        dry_run=dry_run,
        resume=resume,
        pause_after=tuple(pause_after or ()),
        measure_writes=measure_writes,
    )
    console = make_console()
    bus = EventBus()
    gates = _gate_log(bus)
    with _errors():
        settings, options = _settings(c), _options(c)
        result = _watched(
            deploying.deploy(settings, request, bus=bus, options=options),
            bus,
            _run_view(console, json_),
        )
    if isinstance(result, deploying.DryRun):
        if json_:
            print(to_json_text(result.plan), end="")
        else:
            console.print(plan_tree(result.plan))
            if result.fleet is not None:
                from orchestrator.cost import plan_cost

                console.print(cost_lines(*plan_cost(result.plan, result.fleet)))
            console.print("Dry run: nothing was changed.")
        return
    _write_report(report, result, "deploy", gates, json_)
    _finish_run(console, result, json_)


def _gate_log(bus: EventBus) -> GateLog:
    from orchestrator.render.rollout_report import GateLog

    log = GateLog()
    bus.subscribe(log)
    return log


def _write_report(
    path: str | None, result: DeployResult, command: str, gates: GateLog, json_: bool
) -> None:
    """Write ``--report PATH`` (Markdown and HTML) for a run's result, and say where."""
    if not path:
        return
    from pathlib import Path

    from orchestrator.render.rollout_report import write_rollout_reports

    with _errors():
        try:
            md, page = write_rollout_reports(result, Path(path), command=command, gates=gates)
        except OSError as exc:
            from orchestrator.errors import ConfigError

            raise ConfigError(f"cannot write the report: {exc}", where="--report") from exc
    Console(stderr=json_).print(f"report written to {md} and {page}", soft_wrap=True)


def _finish_run(
    console: Console, result: DeployResult, json_: bool, command: str = "deploy"
) -> None:
    """Print a deploy's or rollback's result, then exit 1 if it did not reach its goal."""
    if json_:
        _print_json(result.to_json())
    elif console.is_terminal:
        console.print(deploy_summary(result))
    else:
        # Each step already has its line in a log; the table would repeat them.
        console.print(outcome_line(result))
    if not result.ok:
        raise Exit(run_failure_text(result, command=command), result.exit_code)


def _confirm_restore(settings: Settings, regions: Any, *, yes: bool, json_: bool) -> None:
    """Say which records ``--restore-data`` loses; ask, or insist on --yes without a terminal."""
    from orchestrator.errors import ConfigError
    from orchestrator.execute.restoredata import preview
    from orchestrator.render.releases import restore_preview_text

    async def read() -> Any:
        async with connect(settings) as conn:
            return await preview(conn, regions)

    found = _run(read())
    err = Console(stderr=True)
    err.print(restore_preview_text(found), soft_wrap=True, markup=False, highlight=False)
    if yes:
        return
    if json_ or not sys.stdin.isatty():
        raise ConfigError(
            "no terminal to confirm on: pass --yes to restore the data (the records written "
            "since are lost)",
            where="--yes",
        )
    answer = err.input("Restore the data? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise Exit("not restored: nothing was changed", 1)


@task(
    iterable=["region"],
    help={
        "region": "Roll back only this region (repeat for several); default: every region.",
        "to": "The release to put back, e.g. v1-92d1226d or v1 (default: the previous one).",
        "json": "Print only the result as JSON on stdout.",
        "report": "Also write a report to PATH (.md or .html) and the other format beside it.",
        "restore_data": "Also put the machines back on volumes restored from the restore points.",
        "yes": "Restore data without asking (needed where there is no terminal).",
    },
)
def rollback(
    c: Context,
    region: list[str] | None = None,
    to: str | None = None,
    json_: bool = False,
    report: str | None = None,
    restore_data: bool = False,
    yes: bool = False,
) -> None:
    """Put the previous (or a named) release back on the fleet, from the journal."""
    from orchestrator.commands import rollback as rolling

    request = rolling.RollbackRequest(regions=tuple(region or ()), to=to, restore_data=restore_data)
    console = make_console()
    bus = EventBus()
    gates = _gate_log(bus)
    with _errors():
        settings, options = _settings(c), _options(c)
        if restore_data:
            _confirm_restore(settings, request.regions, yes=yes, json_=json_)
        result = _watched(
            rolling.rollback(settings, request, bus=bus, options=options),
            bus,
            _run_view(console, json_),
        )
    _write_report(report, result, "rollback", gates, json_)
    _finish_run(console, result, json_, "rollback")


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
        "yes": "Go ahead without asking when the change is large or destroys machines.",
        "report": "Also write a report of the change to PATH (.md or .html) and the other format.",
        "group": "A [processes] group: change only its machines ([groups.NAME] in the file).",
    },
)
def scale(
    c: Context,
    region: list[str] | None = None,
    count: str | None = None,
    vm: str | None = None,
    cpu: str | None = None,
    memory: str | None = None,
    volume_size: str | None = None,
    dry_run: bool = False,
    destroy_volumes: bool = False,
    usage: bool = False,
    json_: bool = False,
    yes: bool = False,
    report: str | None = None,
    group: str | None = None,
) -> None:
    """Show desired beside observed size per region, or change a region's count and size."""
    from orchestrator.commands import scale as scaling
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
            idle = _idle_local(settings)
            shown = _run(
                scaling.show_scale(
                    settings, regions=request.regions, usage=usage, group=request.group
                )
            )
            from orchestrator.cost import scale_costs

            now, wanted = scale_costs(shown)
            if idle:
                _say_started(settings)
            if json_:
                data = shown.to_json()
                data["monthly_cost"] = {"observed": cost_json(now), "desired": cost_json(wanted)}
                _print_json(data)
            else:
                console.print(scale_report_view(shown))
                console.print(cost_lines(now, wanted, what="desired sizes"))
            return
        if usage:
            raise ConfigError("only when showing; drop the change flags", where="--usage")
        from orchestrator.scale.advice import scale_warnings

        for warning in scale_warnings(settings, request):
            Console(stderr=True).print(f"! warning: {warning}", style="yellow", soft_wrap=True)
        bus = EventBus()
        confirm = _confirm_scale(console, settings, request, yes=yes, json_=json_)
        gates = _gate_log(bus)
        result = _watched(
            scaling.scale(settings, request, bus=bus, options=_options(c), confirm=confirm),
            bus,
            None if json_ or dry_run else console,
        )
    if json_:
        _print_json(result.to_json())
    elif isinstance(result, scaling.ScaleDryRun):
        console.print(edits_view(result.edits, dry_run=True))
        console.print(plan_tree(result.plan))
        console.print(extends_view(result.extends))
        console.print("Dry run: nothing was written or changed.")
    else:
        console.print(deploy_summary(result.result))
    if isinstance(result, scaling.ScaleResult):
        _write_report(report, result.result, "scale", gates, json_)
    if isinstance(result, scaling.ScaleResult) and not result.ok:
        raise Exit(run_failure_text(result.result, command="scale"), result.exit_code)


def _confirm_scale(
    console: Console, settings: Settings, request: ScaleRequest, *, yes: bool, json_: bool
) -> Confirm | None:
    """Return how a large or destructive scale is confirmed: --yes, a question, or not at all."""
    from orchestrator.commands import scale as scaling

    if yes or request.dry_run:
        return lambda impact: True
    if json_ or not sys.stdin.isatty():
        return None  # the scale refuses with a one-line error naming --yes
    impact = _run(scaling.preview_impact(settings, request))
    if not impact.needs_confirmation:
        return None
    console.print(f"This scale needs confirmation: {impact.why()}.")
    # Not markup: rich would take "[y/N]" for a style tag and show "Go ahead? " alone.
    answer = console.input("Go ahead? [y/N] ", markup=False).strip().lower()
    approved = answer in ("y", "yes")
    return lambda impact: approved


@task(
    help={
        "region": "Show only this region.",
        "json": "Print only the status as JSON on stdout.",
    },
)
def status(c: Context, region: str | None = None, json_: bool = False) -> None:
    """Show every machine: state, release, checks, role, size and volume."""
    with _errors():
        if region is not None:
            validate_region(region, "--region")
        settings = _settings(c)

        fleet, cost = _run(fleet_status(settings, region=region))
    if json_:
        _print_json({**fleet.to_json(), "monthly_cost": cost_json(cost)})
    else:
        console = make_console()
        console.print(status_view(fleet))
        if fleet.exists:
            console.print(cost_lines(cost))
    if fleet.split_brain is not None:
        from orchestrator.render.errors import SPLIT_BRAIN_HELP

        raise Exit(f"error: {fleet.split_brain}; {SPLIT_BRAIN_HELP}", 1)
    if not fleet.healthy:
        names = ", ".join(m.id for m in fleet.unhealthy)
        # A created machine is launching (the orchestrator never creates one to leave stopped).
        booting = all(m.state in ("created", "starting", "replacing") for m in fleet.unhealthy)
        hint = "\nstill booting: run `invoke status` again in a few seconds" if booting else ""
        raise Exit(f"error: unhealthy machine(s): {names}{hint}", 1)


@task(
    help={
        "region": "Show only this region's machines.",
        "machine": "Show only this machine (id or name; a destroyed one too).",
        "follow": "Keep printing new lines (and new machines') until Ctrl-C.",
        "lines": "Show the last N lines of all the machines, in time order (default 100).",
        "since": "Only lines written since: an age (10m, 2h, 1d) or a time (2026-01-31T14:00Z).",
        "group": "Show only this [processes] group's machines.",
    },
)
def logs(
    c: Context,
    region: str | None = None,
    machine: str | None = None,
    follow: bool = False,
    lines: str | None = None,
    since: str | None = None,
    group: str | None = None,
) -> None:
    """Print the machines' output on the local Fly, each line prefixed by region and machine."""
    import sys
    from datetime import UTC, datetime

    from orchestrator.errors import ConfigError
    from orchestrator.fleetconfig.ages import parse_since
    from orchestrator.logs import DEFAULT_LINES, log_sources, require_local, stream_logs

    with _errors():
        settings = _settings(c)
        require_local(settings, region=region)
        last = DEFAULT_LINES
        if lines is not None:
            if not str(lines).isdigit():
                raise ConfigError(f"expected a whole number >= 0, got {lines!r}", where="--lines")
            last = int(lines)
        start = None if since is None else parse_since(since, "--since", datetime.now(UTC))

        async def show() -> None:
            async with connect(settings, start=False) as conn:
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
                    since=start,
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
        "region": "The region to take down in the drill (required unless --resume or --abort).",
        "promote": "The region to promote when --region is the primary (default: the nearest).",
        "json": "Print only the drill report as JSON on stdout.",
        "report": "Also write the report to PATH (.md or .html) and the other format beside it.",
        "dry_run": "Run the preflight and say what the drill would do; change nothing.",
        "failback": "Move the primary back at the end (--no-failback leaves it promoted).",
        "hook": "Run this shell command after each phase (DRILL_PHASE etc. in its environment).",
        "destroy_old_volumes": "Destroy the old primary's volumes once re-seeded (default: keep).",
        "resume": "Finish an interrupted drill: restore, re-seed, fail back, check integrity.",
        "abort": "Undo an interrupted drill (or a split): the pre-drill primary, least loss.",
    },
)
def drill(
    c: Context,
    region: str | None = None,
    promote: str | None = None,
    json_: bool = False,
    report: str | None = None,
    dry_run: bool = False,
    failback: bool = True,
    hook: str | None = None,
    destroy_old_volumes: bool = False,
    resume: bool = False,
    abort: bool = False,
) -> None:
    """Run a disaster-recovery drill: take a region down, fail over, measure, fail back."""
    from pathlib import Path

    from orchestrator.commands.drill import run_drill
    from orchestrator.drill import DrillBus, DrillRequest
    from orchestrator.render.drill import DrillView, drill_summary
    from orchestrator.render.drill_report import write_reports

    if resume and abort:
        raise Exit("error: --abort: give --resume or --abort, not both", 2)
    if not region and not (resume or abort):
        raise Exit("error: --region: name the region to take down, e.g. --region syd", 2)
    request = DrillRequest(
        region=region or "",
        promote=promote,
        dry_run=dry_run,
        failback=failback,
        destroy_old_volumes=destroy_old_volumes,
        hook=hook,
        resume=resume,
        abort=abort,
    )
    console = Console(stderr=json_)
    bus = DrillBus()
    with _errors():
        if region:
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
    if result.details.get("stopped"):
        raise Exit(f"error: drill {result.reason}", 130)
    if result.exit_code:
        raise Exit(f"error: drill {result.verdict}: {result.reason or 'objectives not met'}", 1)


def _after_dashes(c: Context) -> list[str]:
    """Return the words after ``--`` exactly as the shell gave them."""
    import shlex

    from orchestrator.errors import ConfigError

    if "--" in sys.argv:
        tail = sys.argv[sys.argv.index("--") + 1 :]
        if " ".join(tail) == c.remainder:
            return tail
    try:
        return shlex.split(c.remainder)
    except ValueError as exc:
        raise ConfigError(f"cannot split the words after --: {exc}", where="--") from None


@task(
    positional=["action"],
    help={
        "action": "list, set or unset; names and values follow --: set -- A=1 B=2, unset -- A.",
        "stage": "Only set them: machines get them at the next `invoke deploy`.",
        "json": "Print only the result as JSON on stdout (names and digests, never values).",
    },
)
def secrets(c: Context, action: str, stage: bool = False, json_: bool = False) -> None:
    """List, set or unset the app's secrets; a change rolls out as a release unless --stage."""
    from orchestrator import appsecrets
    from orchestrator.errors import ConfigError
    from orchestrator.render.secrets import secrets_change_line, secrets_view

    console = make_console()
    with _errors():
        if action not in ("list", "set", "unset"):
            raise ConfigError(f"must be list, set or unset, got {action!r}", where="secrets")
        words = _after_dashes(c)
        settings = _settings(c)
        if action == "list":
            if words or stage:
                raise ConfigError("list takes no names and no --stage", where="secrets list")
            listing = _run(appsecrets.list_secrets(settings))
            if json_:
                _print_json(listing.to_json())
            else:
                console.print(secrets_view(listing))
            return
        parse = appsecrets.parse_set if action == "set" else appsecrets.parse_unset
        change = parse(words, stage=stage)
        bus = EventBus()
        result = _watched(
            appsecrets.change_secrets(settings, change, bus=bus, options=_options(c)),
            bus,
            None if json_ or stage else console,
        )
    if json_:
        _print_json(result.to_json())
    else:
        if result.deploy is not None:
            console.print(outcome_line(result.deploy))
        console.print(secrets_change_line(result))
    if not result.ok and result.deploy is not None:
        raise Exit(f"error: {result.deploy.error}" if result.deploy.error else "", 1)


@task(
    help={
        "region": "The region of the machine (required).",
        "machine": "The machine (id or name); default: the region's first started machine.",
        "timeout": "Seconds the command may run (1-60, default 30).",
        "json": "Print only the result as JSON on stdout.",
    },
)
def ssh(
    c: Context,
    region: str | None = None,
    machine: str | None = None,
    timeout: str | None = None,
    json_: bool = False,
) -> None:
    """Run the command after -- on a machine, or show its processes, volume and memory."""
    from orchestrator import ssh as shell
    from orchestrator.errors import ConfigError
    from orchestrator.render.ssh import inspection_view

    with _errors():
        if not region:
            raise ConfigError("name the machine's region, e.g. --region syd", where="--region")
        validate_region(region, "--region")
        seconds = None
        if timeout is not None:
            if not str(timeout).isdigit():
                raise ConfigError(f"expected whole seconds, got {timeout!r}", where="--timeout")
            seconds = int(timeout)
        command = _after_dashes(c)
        settings = _settings(c)
        if not command:
            found = _run(shell.inspect_machine(settings, region=region, machine=machine))
            if json_:
                _print_json(found.to_json())
            else:
                make_console().print(inspection_view(found))
            return
        done = _run(
            shell.run_command(
                settings, region=region, command=command, machine=machine, timeout=seconds
            )
        )
    if json_:
        _print_json(done.to_json())
    else:
        _emit(done.result.stdout)
        if done.result.stderr:
            sys.stderr.write(done.result.stderr)
    if done.result.exit_code:
        raise Exit(code=done.result.exit_code)


@task(
    name="list",
    default=True,
    klass=WordTask,
    words={"action": VOLUMES_ACTIONS},
    help={
        "action": "list (default) or prune: `invoke volumes prune` destroys unattached ones.",
        "region": "Only this region's volumes.",
        "older_than": "prune: only volumes unattached for longer than this (7d, 12h).",
        "yes": "prune: destroy without asking (needed where there is no terminal).",
        "force": "prune: also destroy volumes holding records the primary lacks.",
        "json": "Print only JSON on stdout.",
    },
)
def volumes_list(
    c: Context,
    action: str = "list",
    region: str | None = None,
    older_than: str | None = None,
    yes: bool = False,
    force: bool = False,
    json_: bool = False,
) -> None:
    """List every volume and why an unattached one was kept; `prune` destroys those."""
    from orchestrator import volumes as vols
    from orchestrator.render.volumes import volumes_view

    if action == "prune":
        volumes_prune(c, region=region, older_than=older_than, yes=yes, force=force, json_=json_)
        return
    problems = [] if action == "list" else [f"--action: must be list or prune, got {action!r}"]
    given = {"--older-than": older_than is not None, "--yes": yes, "--force": force}
    problems += [f"{flag}: only with `invoke volumes prune`" for flag, on in given.items() if on]
    if problems:
        raise Exit("\n".join(f"error: {problem}" for problem in problems), 2)
    with _errors():
        if region is not None:
            region = validate_region(region, "--region").code
        settings = _settings(c)

        async def read() -> vols.VolumeList:
            async with connect(settings, start=False) as conn:
                return await vols.list_volumes(conn, settings.root, region=region)

        listing = _run(read())
    if json_:
        _print_json(listing.to_json())
    else:
        make_console().print(volumes_view(listing))


@task(
    name="prune",
    help={
        "region": "Only this region's volumes.",
        "older_than": "Only volumes unattached for longer than this (7d, 12h).",
        "yes": "Destroy without asking (needed where there is no terminal).",
        "force": "Also destroy volumes holding records the primary lacks (or that cannot tell).",
        "json": "Print only JSON on stdout.",
    },
)
def volumes_prune(
    c: Context,
    region: str | None = None,
    older_than: str | None = None,
    yes: bool = False,
    force: bool = False,
    json_: bool = False,
) -> None:
    """Destroy unattached volumes, after asking; never one holding records the primary lacks."""
    from datetime import UTC, datetime

    from orchestrator import volumes as vols
    from orchestrator.errors import ConfigError
    from orchestrator.execute.lock import DeployLock
    from orchestrator.fleetconfig.ages import parse_age
    from orchestrator.render.volumes import prune_view

    console = make_console()
    with _errors():
        if region is not None:
            region = validate_region(region, "--region").code
        age = None if older_than is None else parse_age(older_than, "--older-than")
        settings = _settings(c)
        on_terminal = sys.stdin.isatty() and not json_

        async def prune() -> dict[str, list[str]]:
            async with connect(settings, start=False) as conn:
                # Under the deploy lock: a scale-up reuses unattached volumes.
                with DeployLock(conn.settings, conn.app, release="", command="volumes prune"):
                    listing = await vols.list_volumes(conn, settings.root, region=region)
                    found = vols.prune_candidates(listing, now=datetime.now(UTC), older_than_s=age)
                    lacking = await vols.lacking_records(conn, found)
                    refused = [v for v in found if lacking[v.id] != 0 and not force]
                    doomed = [v for v in found if v not in refused]
                    if not json_:
                        console.print(prune_view(doomed, refused, lacking))
                    kept = [v.id for v in refused]
                    if doomed and not yes:
                        if not on_terminal:
                            raise ConfigError(
                                f"no terminal to confirm on: pass --yes to destroy "
                                f"{len(doomed)} volume(s)",
                                where="--yes",
                            )
                        question = f"Destroy {len(doomed)} volume(s)? [y/N] "
                        answer = await asyncio.to_thread(input, question)
                        if answer.strip().lower() not in ("y", "yes"):
                            return {"destroyed": [], "refused": kept}
                    destroyed = []
                    for volume in doomed:
                        now = await conn.client.get_volume(conn.app, volume.id)
                        if now.attached_machine_id:
                            continue  # a machine took it meanwhile
                        await conn.client.destroy_volume(conn.app, volume.id)
                        destroyed.append(volume.id)
                    return {"destroyed": destroyed, "refused": kept}

        result = _run(prune())
    if json_:
        _print_json(result)
    elif result["destroyed"]:
        console.print(f"destroyed {len(result['destroyed'])} volume(s)")


volumes = Collection("volumes", volumes_list, volumes_prune)


def _ask_run(c: Context, action: str, reason: str | None = None) -> str:
    """Send a promote or abort request to the app's running deploy; return what was asked."""
    from orchestrator.errors import ConfigError
    from orchestrator.execute.control import ABORT_KEY, PROMOTE_KEY, request_body, send_request
    from orchestrator.execute.ledger import read_ledger
    from orchestrator.execute.lock import ci_run_url, current_user, read_lock

    settings = _settings(c)

    async def ask() -> str:
        async with connect(settings, start=False) as conn:
            intent, _ = await read_ledger(conn)
            lock = await asyncio.to_thread(read_lock, conn.settings, conn.app)
            live = intent is not None and lock.holder is not None and lock.holder.id == intent.id
            if intent is None or not live or intent.phase in ("finished", "rolling_back"):
                raise ConfigError(f"no deploy of {conn.app!r} is running", where=action)
            import socket

            by = f"{current_user(os.environ)}@{socket.gethostname()}"
            ci = ci_run_url(os.environ)
            what = f"the {intent.command} of {intent.release} by {intent.by}"
            if action == "promote":
                if intent.phase != "paused" or intent.paused_after is None:
                    raise ConfigError(f"{what} is not paused", where="promote")
                body = request_body(intent.id, by, wave=intent.paused_after, ci_url=ci)
                await send_request(conn.client, conn.settings, conn.app, PROMOTE_KEY, body)
                return f"promoted {what}: it goes on after wave {intent.paused_after}"
            body = request_body(intent.id, by, reason=reason or "", ci_url=ci)
            await send_request(conn.client, conn.settings, conn.app, ABORT_KEY, body)
            return (
                f"asked {what} to stop: it stops before its next step and applies that "
                "wave's on_failure"
            )

    return _run(ask())


@task
def promote(c: Context) -> None:
    """Let a paused deploy (from any host) go on to its next wave."""
    with _errors():
        message = _ask_run(c, "promote")
    make_console().print(message)


@task(help={"reason": "Why, for the record and the deploy's error line."})
def abort(c: Context, reason: str | None = None) -> None:
    """Stop a running deploy (from any host) at its next safe point; its on_failure applies."""
    with _errors():
        message = _ask_run(c, "abort", reason)
    make_console().print(message)


@task(help={"json": "Print only the releases as JSON on stdout."})
def releases(c: Context, json_: bool = False) -> None:
    """List the app's releases, newest first, as recorded on Fly (the same from every host)."""
    from orchestrator.execute.ledger import read_ledger
    from orchestrator.render.releases import releases_view

    with _errors():
        settings = _settings(c)

        async def read() -> tuple[str, RunIntent | None, list[ReleaseEntry]]:
            async with connect(settings, start=False) as conn:
                intent, entries = await read_ledger(conn)
                return conn.app, intent, entries

        app, intent, entries = _run(read())
    if json_:
        _print_json({"app": app, "releases": [e.to_json() for e in entries]})
    else:
        make_console().print(releases_view(app, entries, intent))


@task(
    help={
        "force": "Break the lock, whoever holds it; says what it broke.",
        "json": "Print only the lock as JSON on stdout.",
    },
)
def unlock(c: Context, force: bool = False, json_: bool = False) -> None:
    """Show who holds the app's deploy lock (on Fly, shared by every host); --force breaks it."""
    from orchestrator.execute.lock import force_unlock, read_lock
    from orchestrator.render.lock import lock_view

    with _errors():
        settings = _settings(c)

        async def reach() -> tuple[Settings, str]:
            async with connect(settings, start=False) as conn:
                return conn.settings, conn.app

        filled, app = _run(reach())
        state = force_unlock(filled, app) if force else read_lock(filled, app)
    if json_:
        _print_json({"app": app, "broken": force and state.held, **state.to_json()})
    else:
        make_console().print(lock_view(app, state, broke=force))


@task(
    help={
        "region": "The region the rehearsal machine runs in (on a fork of the primary's data).",
        "image": "Rehearse this image instead of fly.toml's [build] image.",
        "json": "Print only the verdict and its figures as JSON on stdout.",
    },
)
def rehearse(
    c: Context, region: str | None = None, image: str | None = None, json_: bool = False
) -> None:
    """Try a release on a fork of the primary's data, outside the proxy's rotation."""
    from orchestrator.commands import rehearse as rehearsing
    from orchestrator.render.rehearsal import rehearsal_view

    if not region:
        raise Exit("error: --region: name the region to rehearse in, e.g. --region syd", 2)
    with _errors():
        validate_region(region, "--region")
        settings = _settings(c)
        request = rehearsing.RehearseRequest(region=region, image=image)
        result = _run(rehearsing.rehearse(settings, request, options=_options(c)))
    if json_:
        _print_json(result.to_json())
    else:
        make_console().print(rehearsal_view(result))
    if not result.passed:
        raise Exit(f"error: rehearsal failed: {'; '.join(result.problems)}", 1)


# -- the local Fly ----------------------------------------------------------------------------


@task(
    name="up",
    help={
        "profile": "Latency profile: fast (default), realistic, or sim (no processes).",
        "time_factor": "Scale the realistic profile's durations (0.1 = ten times faster).",
        "prometheus": "Also run a Prometheus scraping every machine (Debian package prometheus).",
    },
)
def local_up(
    c: Context, profile: str = "fast", time_factor: float = 1.0, prometheus: bool = False
) -> None:
    """Start the embedded local Fly in the background (if it is not running)."""
    from orchestrator.localfly import cli

    if profile not in ("fast", "realistic", "sim"):
        raise Exit(f"error: --profile: must be fast, realistic or sim, got {profile!r}", 2)
    if time_factor <= 0:
        raise Exit(f"error: --time-factor: must be a positive number, got {time_factor}", 2)
    with _errors():
        endpoint = cli.up(find_root(), profile=profile, time_factor=time_factor)
        server = cli.prometheus(find_root()) if prometheus else None
    make_console().print(local_up_view(endpoint))
    if server is not None:
        make_console().print(local_prometheus_view(server))


@task(name="down", help={"purge": "Also delete its state: machines, volumes and snapshots."})
def local_down(c: Context, purge: bool = False) -> None:
    """Stop the local Fly and every machine process it started."""
    from orchestrator.localfly import cli

    with _errors():
        summary = cli.down(find_root(), purge=purge)
    make_console().print(local_down_view(summary))


@task(name="status")
def local_status(c: Context) -> None:
    """Show whether the local Fly runs, where, and what it holds."""
    from orchestrator.localfly import cli

    with _errors():
        found = cli.status(find_root())
    make_console().print(local_status_view(found))


local = Collection("local", local_up, local_down, local_status)
ns = Collection(
    plan,
    deploy,
    rollback,
    scale,
    status,
    logs,
    drill,
    volumes,
    releases,
    unlock,
    promote,
    abort,
    rehearse,
    local,
)
ns.add_task(secrets)
ns.add_task(ssh)
