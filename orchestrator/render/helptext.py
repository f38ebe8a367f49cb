"""Value placeholders in ``invoke --help TASK``: ``-r REGION, --region=REGION``, not ``-r``.

invoke 3 names a value only by its type (``STRING``, ``INT``) and a repeatable flag not at all,
and has no per-flag placeholder. `install` wraps its help formatter once, for flags this
project names; every other flag, and every task of other collections, keeps invoke's text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from invoke.parser.context import ParserContext

__all__ = ["PLACEHOLDERS", "install"]

PLACEHOLDERS: Mapping[str, str] = {
    "region": "REGION",
    "image": "IMAGE",
    "format": "FORMAT",
    "to": "RELEASE",
    "count": "N",
    "vm": "PRESET",
    "cpu": "N",
    "memory": "MB",
    "volume_size": "GB",
    "machine": "ID",
    "lines": "N",
    "since": "AGE",
    "promote": "REGION",
    "report": "PATH",
    "hook": "CMD",
    "profile": "PROFILE",
    "time_factor": "FACTOR",
    "older_than": "AGE",
    "group": "GROUP",
    "pause_after": "REGION",
    "timeout": "SECONDS",
    "reason": "TEXT",
    "action": "ACTION",
}

_ORIGINAL: Callable[[ParserContext, str], tuple[str, str]] | None = None


def _help_for(self: ParserContext, flag: str) -> tuple[str, str]:
    assert _ORIGINAL is not None
    namestr, helpstr = _ORIGINAL(self, flag)
    arg = self.flags[flag]
    placeholder = PLACEHOLDERS.get(str(arg.name))
    if placeholder is None or arg.kind is bool:
        return namestr, helpstr
    names = []
    for name in self.names_for(flag):
        short = len(name.strip("-")) == 1
        value = f" {placeholder}" if short else f"={placeholder}"
        if arg.optional:
            value = f" [{placeholder}]" if short else f"[={placeholder}]"
        names.append(name + value)
    if arg.kind is list and helpstr and "repeat" not in helpstr.lower():
        helpstr += " Repeatable."
    return ", ".join(sorted(names, key=len)), helpstr


def install() -> None:
    """Make invoke's help show this project's placeholders (idempotent)."""
    global _ORIGINAL
    if _ORIGINAL is not None:
        return
    _ORIGINAL = ParserContext.help_for
    ParserContext.help_for = _help_for  # type: ignore[method-assign]
