"""Show a deploy as it happens: a live table per region and step on a terminal, lines elsewhere.

`LiveView` is an event subscriber (``bus.subscribe(view)``). On a terminal it keeps a rich
`Live` table of every step (region, step, status, elapsed, what it did) refreshed four times a
second; when the output is a pipe or a file (CI logs, tests) it prints one line per finished
step and per note instead, so logs stay readable. An automatic rollback adds its steps below
the deploy's, marked ``↩``; a metrics gate's bake shows its running figures on its row.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from rich import box
from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from orchestrator.execute.events import (
    Event,
    GateResult,
    Note,
    ReleaseFinished,
    ReleaseStarted,
    RollbackFinished,
    RollbackStarted,
    StepFinished,
    StepProgress,
    StepStarted,
)
from orchestrator.hints import with_next_step
from orchestrator.plan.steps import Step
from orchestrator.render.fit import FitWidth

__all__ = [
    "STATUS_STYLE",
    "LivePanel",
    "LiveView",
    "format_elapsed",
    "in_ci",
    "interactive",
    "make_console",
]

STATUS_STYLE = {
    "pending": ("·", "dim"),
    "running": ("▶", "bold yellow"),
    "succeeded": ("✓", "green"),
    "failed": ("✗", "bold red"),
    "skipped": ("-", "dim"),
    "cancelled": ("⊘", "dim yellow"),
}
_ROLLBACK_MARK = "↩"
_COLUMNS: tuple[tuple[str, JustifyMethod, str], ...] = (
    ("wave", "right", "dim"),
    ("region", "left", "bold blue"),
    ("step", "left", ""),
    ("status", "left", ""),
    ("elapsed", "right", ""),
)
_PIPE_WIDTH = 160
_NOTE_STYLE = {"info": "cyan", "warning": "yellow", "error": "bold red"}


def in_ci() -> bool:
    """Tell whether this runs in CI (``CI`` set to anything but empty, ``0`` or ``false``).

    GitHub Actions, GitLab, Buildkite and CircleCI all set ``CI=true``.
    """
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def interactive() -> bool:
    """Tell whether a command may wait for a person's answer: never in CI, never in a pipe."""
    return not in_ci() and os.isatty(0) and os.isatty(1)


def make_console(*, stderr: bool = False) -> Console:
    """Return a stdout console; wide when writing to a pipe or file, where lines never wrap.

    rich assumes 80 columns when stdout is not a terminal; a log line cut at 80 columns
    (a machine id folded in two) is worse than a long one. ``COLUMNS`` still wins.
    """
    if in_ci():
        # CI logs are plain text: no live view, no colours, no cursor games, long lines.
        width = int(os.environ.get("COLUMNS", _PIPE_WIDTH))
        return Console(
            stderr=stderr,
            width=width,
            no_color=True,
            force_terminal=False,
            force_interactive=False,
            highlight=False,
        )
    console = Console(stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(stderr=stderr, width=_PIPE_WIDTH)
    return console


def format_elapsed(seconds: float | None) -> str:
    """Format seconds as ``0.4s``, ``12.3s`` or ``2m05s``."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


@dataclass(slots=True)
class _Row:
    step: Step
    status: str = "pending"
    started: float | None = None
    finished: float | None = None
    text: str = ""
    rollback: bool = False

    def elapsed(self, now: float) -> float | None:
        if self.started is None:
            return None
        return (self.finished or now) - self.started


class LivePanel:
    """A transient rich `Live` panel while the ``with`` block runs, on a terminal only.

    Subclasses give `_render` (the panel) and may print what stays in the scrollback in
    `_after_live`. Off a terminal (``live`` false) they print lines instead, and nothing here
    draws.
    """

    console: Console
    _live_wanted: bool
    _live: Live | None

    def _render(self) -> RenderableType:
        raise NotImplementedError

    def _after_live(self) -> None:
        """Print what should stay once the live panel is gone."""

    def __enter__(self) -> Self:
        if self._live_wanted:
            self._live = Live(
                get_renderable=self._render,
                console=self.console,
                refresh_per_second=4,
                transient=True,
            )
            self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
            self._after_live()


class LiveView(LivePanel):
    """Render executor events on a console.

    Args:
        console: where to draw.
        live: draw a live-updating table (default: when the console is a terminal).
    """

    def __init__(self, console: Console, *, live: bool | None = None) -> None:
        self.console = console
        self._live_wanted = (console.is_terminal and not in_ci()) if live is None else live
        # In CI every line carries its UTC time, as CI logs are read after the fact.
        self._stamp = in_ci()
        self._live: Live | None = None
        self._rows: dict[str, _Row] = {}
        self._title = ""
        self._notes: list[Text] = []
        # Step ids repeat in a rollback (``dfw:machine.update:1`` again): rows are keyed by
        # phase too, and the phase changes when a rollback starts.
        self._phase = ""

    def _after_live(self) -> None:
        # The transient table goes; the notes stay in the scrollback.
        for note in self._notes:
            self.console.print(note)

    def __call__(self, event: Event) -> None:
        """Take one event."""
        if isinstance(event, ReleaseStarted):
            self._phase = ""
            self._rows = {s.id: _Row(s) for s in event.steps}
            regions = ", ".join(event.regions) or "no region"
            was = ", ".join(event.replacing)
            if event.command == "rollback":
                self._title = (
                    f"{event.app}: rolling back {regions}"
                    + (f" from {was}" if was else "")
                    + f" to {event.release} ({event.image}), {event.mutating_steps} mutating "
                    "step(s)"
                )
            else:
                self._title = (
                    f"{event.app}: release {event.release} ({event.image}) in {regions}, "
                    f"{event.mutating_steps} mutating step(s)"
                    + (f", replacing {was}" if was else "")
                )
            self._line(Text(self._title, style="bold"))
            changing = {s.region for s in event.steps}
            for index, wave in enumerate(event.waves, start=1):
                idle = [r for r in wave if r not in changing]
                if not idle:
                    continue
                what = f"wave {index}" if len(idle) == len(wave) else f"wave {index}:"
                text = Text(f"· {what} {', '.join(idle)}: nothing to change", style="dim")
                self._notes.append(text)
                if self._live is None:
                    self._line(text)
        elif isinstance(event, RollbackStarted):
            self._phase = f"rollback-{event.run}/"
            for step in event.steps:
                self._rows[self._phase + step.id] = _Row(step, rollback=True)
            regions = ", ".join(event.regions) or "no region"
            how = "finishing the rollback" if event.policy == "resume" else event.policy
            # Why is the failed step's line just above; it is not repeated here.
            header = Text(
                f"{_ROLLBACK_MARK} rolling back {regions} to {event.release} ({how}, run "
                f"{event.run}, {event.mutating_steps} mutating step(s))",
                style="bold yellow",
            )
            if not self._title:
                self._title = header.plain
            self._notes.append(header)
            self._line(header)
        elif isinstance(event, RollbackFinished):
            # The failed step's own line says why; the command's summary says it once more.
            text = Text(
                f"{_ROLLBACK_MARK} rollback to {event.release} {event.outcome}",
                style="yellow" if event.outcome != "failed" else "bold red",
            )
            self._notes.append(text)
            self._line(text)
        elif isinstance(event, StepStarted):
            row = self._rows.setdefault(self._phase + event.step.id, _Row(event.step))
            row.status = "running"
            row.started = time.monotonic()
        elif isinstance(event, StepProgress):
            row = self._rows.setdefault(self._phase + event.step.id, _Row(event.step))
            row.text = event.detail
        elif isinstance(event, StepFinished):
            row = self._rows.setdefault(self._phase + event.step.id, _Row(event.step))
            row.status = event.outcome
            if event.started_at is not None:
                row.finished = time.monotonic()
                if row.started is None:
                    row.started = row.finished - (event.at - event.started_at).total_seconds()
            # The step's id is already on the row; the error repeats it for the JSON's sake.
            row.text = (event.error or "").removeprefix(f"{event.step.id}: ") or event.detail or ""
            if self._live is None and event.outcome != "skipped":
                self._line(self._step_line(row))
        elif isinstance(event, GateResult):
            pass  # the gate's StepFinished carries the same detail
        elif isinstance(event, Note):
            where = f"{event.step_id}: " if event.step_id else ""
            said = with_next_step(event.message, event.next_step)
            text = Text(f"! {where}{said}", style=_NOTE_STYLE.get(event.level, ""))
            self._notes.append(text)
            if self._live is None:
                self._line(text)
        elif isinstance(event, ReleaseFinished):
            skipped = sum(1 for r in self._rows.values() if r.status == "skipped")
            if skipped and self._live is None:
                self._line(Text(f"- {skipped} step(s) skipped", style="dim"))

    def _line(self, text: Text) -> None:
        if self._live is None:
            if self._stamp:
                stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                text = Text(f"{stamp} ").append_text(text)
            self.console.print(text, soft_wrap=True)

    def _step_line(self, row: _Row) -> Text:
        mark, style = STATUS_STYLE.get(row.status, ("?", ""))
        line = Text()
        line.append(f"{mark} ", style=style)
        if row.rollback:
            line.append(f"{_ROLLBACK_MARK} ", style="yellow")
        line.append(row.step.id, style="bold" if row.step.mutating else "")
        elapsed = format_elapsed(row.elapsed(time.monotonic()))
        if elapsed:
            line.append(f"  {elapsed}", style="dim")
        if row.text:
            line.append(f"  {row.text}", style="red" if row.status == "failed" else "")
        return line

    def _render(self) -> RenderableType:
        table = FitWidth(lambda: self._table(), lambda width: self._table(width=width))
        return Group(Text(self._title, style="bold"), table, *self._notes[-5:])

    @staticmethod
    def _name(row: _Row) -> str:
        name = row.step.kind.value + (f" {row.step.slot}" if row.step.slot else "")
        return f"{_ROLLBACK_MARK} {name}" if row.rollback else name

    def _table(self, *, width: int | None = None) -> Table:
        """Return the steps' table; given a (narrow) ``width``: no borders, the detail cut."""
        now = time.monotonic()
        if width is not None:
            table = Table(
                box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0)
            )
        else:
            table = Table(expand=False, show_lines=False)
        # The detail gives way first: the other columns keep their full width.
        names = [self._name(r) for r in self._rows.values()] or ["step"]
        statuses = [f"x {r.status}" for r in self._rows.values()] or ["status"]
        fixed = [4, 6, max(len(n) for n in names), max(len(t) for t in statuses), 7]
        # Each column is followed by its padding and a blank separator.
        detail = 80 if width is None else max(width - sum(fixed) - 2 * len(fixed) - 1, 8)
        for (name, justify, style), size in zip(_COLUMNS, fixed, strict=True):
            table.add_column(name, justify=justify, style=style, no_wrap=True, min_width=size)
        table.add_column("detail", overflow="ellipsis", max_width=detail, no_wrap=True)
        previous_region = None
        for row in self._rows.values():
            mark, style = STATUS_STYLE.get(row.status, ("?", ""))
            name = self._name(row)
            first = row.step.region != previous_region
            previous_region = row.step.region
            table.add_row(
                str(row.step.wave) if first else "",
                row.step.region if first else "",
                name,
                Text(f"{mark} {row.status}", style=style),
                format_elapsed(row.elapsed(now)),
                row.text,
            )
        return table
