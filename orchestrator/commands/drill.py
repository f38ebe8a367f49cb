"""``invoke drill``'s entry point: check the request, connect, run the drill, record its verdict.

The drill engine (its phases, guard, state and report) is `orchestrator.drill`; docs/drills.md
says what a drill does to a fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

from orchestrator.connect import connect
from orchestrator.drill.events import DrillBus
from orchestrator.drill.history import DrillRecord, record_drill
from orchestrator.drill.preflight import check_request
from orchestrator.drill.report import DrillReport
from orchestrator.drill.runner import DrillRunner, Hook
from orchestrator.drill.state import DrillRequest, DrillState
from orchestrator.errors import ConfigError, DrillError
from orchestrator.execute.context import ExecuteOptions
from orchestrator.execute.journal import Journal
from orchestrator.execute.lock import DeployLock
from orchestrator.execute.primaries import refuse_split
from orchestrator.fleetconfig.load import load_spec
from orchestrator.plan.config import release_id
from orchestrator.settings import NO_APP_URL, Settings

__all__ = ["run_drill"]


async def run_drill(
    settings: Settings,
    request: DrillRequest,
    *,
    bus: DrillBus | None = None,
    options: ExecuteOptions | None = None,
    hook: Hook | None = None,
) -> DrillReport:
    """Run the drill ``request`` asks for and return its report.

    Raises:
        ConfigError: bad input (nothing was changed, nothing was called).
        DeployLocked: a deploy (or another drill) holds the app's lock.
        OrchestratorError: the API or the local Fly could not be reached.
    """
    spec = load_spec(settings.root, app_override=settings.app)
    saved = DrillState.load(settings.root)
    if request.resume or request.abort:
        flag = "--resume" if request.resume else "--abort"
        if saved is None and request.resume:
            raise ConfigError(
                "no interrupted drill to resume; `invoke status` shows the fleet", where=flag
            )
        if saved is not None:
            request = DrillRequest(
                region=saved.region,
                promote=saved.promoting,
                failback=saved.failback or request.abort,
                destroy_old_volumes=saved.destroy_old_volumes,
                hook=request.hook,
                resume=request.resume,
                abort=request.abort,
            )
        else:
            request = DrillRequest(region=spec.primary_region, abort=True, hook=request.hook)
    else:
        check_request(spec, request.region, request.promote)
        if saved is not None and not request.dry_run:
            raise DrillError(
                f"{saved.describe()}; finish it with `invoke drill --resume` or undo it with "
                "`invoke drill --abort` before starting another"
            )
    if settings.app_url == NO_APP_URL:
        raise ConfigError(
            "a drill writes to the app and measures it through its address, and FLY_APP_URL=none "
            "says it has none; point FLY_APP_URL at a `fly proxy` tunnel for the drill",
            where="FLY_APP_URL",
        )
    bus = bus or DrillBus()
    async with connect(settings) as conn:
        with contextlib.ExitStack() as stack:
            journal = stack.enter_context(Journal.open(settings.root))
            if not request.dry_run:
                # No deploy (and no other drill) may change the fleet while this one runs.
                stack.enter_context(
                    DeployLock(conn.settings, conn.app, release=release_id(spec), command="drill")
                )
            if not (request.resume or request.abort):
                # A drill on a split fleet would fail one side over onto the other.
                await refuse_split(conn, expected=spec.primary_region, command="drill")
            runner = DrillRunner(
                conn, spec, request, journal=journal, bus=bus, options=options, hook=hook
            )
            if saved is not None and (request.resume or request.abort):
                runner.restore(saved)
            with _stop_on_signals(runner):
                if request.resume or request.abort:
                    report = await runner.finish()
                else:
                    report = await runner.run()
            if not request.dry_run:
                record_drill(
                    settings.root,
                    DrillRecord(
                        report.region, report.primary_region, report.verdict, report.finished_at
                    ),
                )
            return report


@contextlib.contextmanager
def _stop_on_signals(runner: DrillRunner) -> Iterator[None]:
    """Route Ctrl-C and SIGTERM to the runner: the first Ctrl-C asks, the next one insists."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def interrupt() -> None:
        if runner.state.stop_requested is None:
            runner.request_stop("Ctrl-C")
        elif main is not None:
            runner.stop_now("a second Ctrl-C")
            main.cancel()

    def terminate() -> None:
        runner.stop_now("SIGTERM")
        if main is not None:
            main.cancel()

    installed = []
    for sig, handler in ((signal.SIGINT, interrupt), (signal.SIGTERM, terminate)):
        try:
            loop.add_signal_handler(sig, handler)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not the main thread (tests running drills in threads): no handlers
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
