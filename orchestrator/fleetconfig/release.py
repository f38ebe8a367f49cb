"""``[deploy]`` of fly.toml: the release command and its timeout, read as flyctl reads them.

flyctl's ``[deploy] release_command`` runs once per deploy, before any machine changes, on a
temporary machine from the new image (the app's env and secrets, no volume); a non-zero exit
or ``release_command_timeout`` (default 5 minutes) fails the deploy. The other ``[deploy]``
keys flyctl knows (``strategy``, ``max_unavailable``...) are tolerated: waves and
``max_unavailable`` come from ``regions/``.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path

from orchestrator.errors import ConfigError
from orchestrator.fleetconfig.model import ReleaseCommand
from orchestrator.fleetconfig.values import Table, read_toml

__all__ = ["DEFAULT_TIMEOUT_S", "read_release_command"]

DEFAULT_TIMEOUT_S = 300.0
_KNOWN = ("release_command", "release_command_timeout")
_TOLERATED = (
    "canaries",
    "max_unavailable",
    "release_command_vm",
    "strategy",
    "wait_timeout",
    "seed_command",
)


def read_release_command(
    root: Path, overlay: Mapping[str, str] | None = None
) -> ReleaseCommand | None:
    """Return fly.toml's release command, or None when it has none.

    Raises:
        ConfigError: a bad ``[deploy]`` key, an empty or unsplittable command, a bad timeout.
    """
    top = read_toml(root, "fly.toml", overlay or {})
    raw = top.get("deploy")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError("expected a table ([deploy])", where="fly.toml: deploy")
    ignored: list[str] = []
    table = Table(raw, "fly.toml", "deploy", _KNOWN, tolerated=_TOLERATED, ignored=ignored)
    text = table.string("release_command")
    if text is None:
        if table.has("release_command_timeout"):
            raise ConfigError(
                "set without a release_command", where=table.at("release_command_timeout")
            )
        return None
    try:
        argv = tuple(shlex.split(text))
    except ValueError as exc:
        raise ConfigError(
            f"cannot split it into words: {exc}", where=table.at("release_command")
        ) from None
    if not argv:
        raise ConfigError("is empty", where=table.at("release_command"))
    timeout = table.duration("release_command_timeout", positive=True)
    return ReleaseCommand(
        argv=argv,
        timeout_s=DEFAULT_TIMEOUT_S if timeout is None else timeout,
        ignored_keys=tuple(ignored),
    )
