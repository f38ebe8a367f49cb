"""Optional sub-command words: ``invoke volumes prune`` beside a bare ``invoke volumes``.

invoke's positional arguments are all required, and a word after a task that is not one of its
flags must be another task. A `WordTask` names, per parameter, the few words it accepts in
place: the parameter is positional with a default, so the task runs without it, and `install`
teaches invoke's parser to take one of those words (and only those) as its value. Any other
word still starts the next task, so ``invoke volumes deploy`` runs both, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from invoke.parser.argument import Argument
from invoke.parser.parser import ParseMachine
from invoke.tasks import Task

__all__ = ["WordTask", "install"]

_ORIGINAL: Callable[[ParseMachine, str], None] | None = None


class WordTask(Task[Callable[..., None]]):
    """Accept a bare word (one of ``words[param]``) as an optional positional parameter."""

    def __init__(self, body: Callable[..., Any], *, words: Mapping[str, Sequence[str]], **kw: Any):
        super().__init__(body, positional=list(words), **kw)
        self.words = {name: tuple(choices) for name, choices in words.items()}

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        """Return invoke's arguments, marking the word parameters with the words they take."""
        arguments: list[Argument] = super().get_arguments(ignore_unknown_help)
        for argument in arguments:
            if argument.name in self.words:
                argument.words = self.words[argument.name]  # type: ignore[attr-defined]
        return arguments


def _handle(self: ParseMachine, token: str) -> None:
    assert _ORIGINAL is not None
    context = self.context
    if (
        context is not None
        and self.current_state != "unknown"
        and not self.waiting_for_flag_value
        and token not in context.flags
    ):
        for argument in context.positional_args:
            if token in getattr(argument, "words", ()) and argument.raw_value is None:
                argument.set_value(token)
                return
    _ORIGINAL(self, token)


def install() -> None:
    """Make invoke's parser take a `WordTask`'s words (idempotent)."""
    global _ORIGINAL
    if _ORIGINAL is not None:
        return
    _ORIGINAL = ParseMachine.handle
    ParseMachine.handle = _handle  # type: ignore[method-assign]
