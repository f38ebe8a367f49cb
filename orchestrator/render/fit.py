"""A renderable that takes its narrow form on a narrow terminal (80 columns)."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult

__all__ = ["NARROW", "FitWidth"]

# At or below this many columns the tables take their narrow form (an 80-column terminal).
NARROW = 100


class FitWidth:
    """A renderable that picks its wide or narrow form by the width it is given."""

    def __init__(
        self,
        wide: Callable[[], RenderableType],
        narrow: Callable[[int], RenderableType],
        *,
        at: int = NARROW,
    ) -> None:
        self.wide, self.narrow, self.at = wide, narrow, at

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """Yield the narrow form (given the width) up to ``at`` columns, else the wide one."""
        width = options.max_width
        yield self.narrow(width) if width <= self.at else self.wide()
