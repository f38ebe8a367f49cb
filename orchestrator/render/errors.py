"""The command line's words for a failure: what went wrong and the one thing to do next.

The kind of every failure is decided once (`orchestrator.errors.ErrorKind`, carried by each
exception and by `DeployResult.error_kind`); this module only turns a kind into words, so a
hint never depends on guessing from an error's text.
"""

from __future__ import annotations

from orchestrator.errors import (
    ConfigError,
    ConfigProblems,
    DeployLocked,
    ErrorKind,
    FlyAuthError,
    LocalFlyNotRunning,
    OrchestratorError,
)
from orchestrator.execute.lock import DeployLockLost
from orchestrator.execute.primaries import SplitBrain
from orchestrator.execute.results import DeployResult
from orchestrator.hints import FLEET_ROLES_HELP

__all__ = ["SPLIT_BRAIN_HELP", "error_text", "flag_for", "problem_text", "run_failure_text"]

SPLIT_BRAIN_HELP = (
    "resolve it with `invoke drill --abort`, which makes the spec's primary_region the only "
    "primary and keeps every divergent record on its volume, named by sequence "
    '(docs/drills.md, "Interrupting a drill")'
)


# The options whose flag is not their name with dashes.
_FLAGS = {"cpus": "--cpu", "memory_mb": "--memory", "volume_size_gb": "--volume-size"}


def _one_line(text: str) -> str:
    return " ".join(text.split())


def flag_for(option: str) -> str:
    """Return the command-line flag that sets a request's ``option`` (``volume_size_gb``)."""
    return _FLAGS.get(option, "--" + option.replace("_", "-"))


def problem_text(exc: ConfigError) -> str:
    """Return an input problem as the command line words it: the flag, then what is wrong."""
    if isinstance(exc, ConfigProblems):
        return "\n".join(problem_text(p) for p in exc.problems)
    if exc.where is None and exc.option is not None:
        return f"{flag_for(exc.option)}: {exc.message}"
    return str(exc)


def error_text(exc: OrchestratorError) -> str:
    """Return the lines an exception ends a command with (``error: ...`` and a next step)."""
    said = problem_text(exc) if isinstance(exc, ConfigError) else str(exc)
    text = f"error: {_one_line(said)}"
    if isinstance(exc, DeployLockLost):
        text += ". Run `invoke deploy --resume` to finish what this run started"
    elif isinstance(exc, SplitBrain):
        text += f"; {SPLIT_BRAIN_HELP}"
    elif isinstance(exc, DeployLocked) and exc.lapses_in_s is not None:
        text += " (`invoke unlock` shows it, `invoke unlock --force` breaks it)"
    if isinstance(exc, FlyAuthError):
        text += "\nFly refused the token: check FLY_API_TOKEN (`fly tokens create deploy`)"
    elif exc.kind is ErrorKind.FLY and not isinstance(exc, LocalFlyNotRunning):
        text += "\nnothing is wrong with your input: run the command again once Fly answers"
    return text


def run_failure_text(result: DeployResult, *, command: str) -> str:
    """Return what a deploy, rollback or scale that did not reach its goal ends with.

    One ``error:`` line, then what the automatic rollback did (if one ran), then the next step,
    which follows from the failure's kind:

    - the release failed its gates: nothing to resume (it would fail again);
    - Fly or the network failed: ``invoke deploy --resume`` carries on (deploy and rollback
      runs; a scale is run again);
    - Fly refused the request as invalid (an image it cannot run): fix the input, deploy again.
    """
    lines = [f"error: {_one_line(result.error)}" if result.error else "error: the run failed"]
    report = result.rollback
    kind = result.error_kind or ErrorKind.FLY
    if report is not None:
        lines.append(report.describe())
        if not report.ok:
            lines.append(
                "the fleet is part-way back: `invoke deploy --resume` finishes the rollback"
            )
        return "\n".join(lines)
    if kind is ErrorKind.RELEASE:
        if command == "deploy":
            lines.append(
                "the release failed its gates and was left in place (on_failure = halt): "
                "`invoke rollback` puts the previous release back"
            )
        else:
            lines.append(f"the release failed its gates; `invoke {command}` again once it is fixed")
    elif kind is ErrorKind.INPUT:
        lines.append(
            "Fly refused the request as invalid (the image or the machine config): fix it and "
            f"run `invoke {command}` again; `--resume` would send the same request"
        )
    elif kind is ErrorKind.LOCKED:
        lines.append("another run holds the app; wait for it to finish")
    elif kind is ErrorKind.FLEET:
        lines[0] += f". {FLEET_ROLES_HELP}"
    elif command in ("deploy", "rollback"):
        lines.append(
            "the release is not at fault: Fly or the network failed; once Fly answers, "
            "`invoke deploy --resume` carries on"
        )
    else:
        lines.append(
            f"the release is not at fault: Fly or the network failed; run `invoke {command}` "
            "again once Fly answers"
        )
    return "\n".join(lines)
