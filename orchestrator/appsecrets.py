"""``invoke secrets``: list, set and unset the app's secrets, and roll a change out as a release.

A secret is set on Fly (``/v1/apps/{app}/secrets``) and reaches a machine only when the machine
is next created or updated with ``min_secrets_version``. So a change is a release:

- ``--stage`` only sets it; the next ``invoke deploy`` rolls it out (the plan updates every
  machine launched with other secrets, reason ``secrets``), through the waves and gates;
- without ``--stage``, the change is followed at once by that deploy. If a wave fails its gates
  and its ``on_failure`` rolls back, the previous values are put back first (read from Fly
  before the change and kept only in memory), so the machines rolled back get them again.

Values are never printed, logged, journaled or written to a file; errors name the argument or
the secret, never a value.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.commands.deploy import DeployRequest, deploy
from orchestrator.connect import Connection, connect, ensure_app
from orchestrator.errors import ConfigError, DeployError, FlyAPIError, FlyNotFound
from orchestrator.execute.context import ExecuteOptions
from orchestrator.execute.events import EventBus, Note
from orchestrator.execute.results import DeployResult
from orchestrator.execute.secretstate import remember_version
from orchestrator.plan.config import META_SECRETS, secrets_fingerprint
from orchestrator.settings import Settings

__all__ = [
    "SecretChange",
    "SecretListing",
    "SecretsResult",
    "change_secrets",
    "list_secrets",
    "parse_set",
    "parse_unset",
]

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME_RULE = "letters, digits and _, not starting with a digit"


@dataclass(frozen=True, slots=True)
class SecretChange:
    """What ``secrets set``/``unset`` was asked to do (values never in its repr).

    Attributes:
        values: name → new value (set).
        unset: names to remove.
        stage: only set them; the next deploy rolls them out.
    """

    values: dict[str, str] = field(default_factory=dict, repr=False)
    unset: tuple[str, ...] = ()
    stage: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        """Return every name the change touches, sorted."""
        return tuple(sorted({*self.values, *self.unset}))


def parse_set(args: Sequence[str], *, stage: bool = False) -> SecretChange:
    """Read ``NAME=VALUE`` arguments; every bad one is reported at once, none echoes a value.

    Raises:
        ConfigError: no argument, an argument without ``=``, a bad or repeated name.
    """
    if not args:
        raise ConfigError("give at least one NAME=VALUE", where="secrets set")
    problems: list[str] = []
    values: dict[str, str] = {}
    for n, arg in enumerate(args, 1):
        name, sep, value = arg.partition("=")
        if not sep:
            problems.append(f"argument {n}: expected NAME=VALUE")
        elif not NAME.match(name):
            problems.append(f"argument {n}: secret name must be {_NAME_RULE}")
        elif name in values:
            problems.append(f"argument {n}: {name} is given twice")
        elif "\x00" in value:
            problems.append(f"argument {n}: the value of {name} contains a NUL byte")
        else:
            values[name] = value
    if problems:
        raise ConfigError("; ".join(problems), where="secrets set")
    return SecretChange(values=values, stage=stage)


def parse_unset(args: Sequence[str], *, stage: bool = False) -> SecretChange:
    """Read the names to unset; every bad one is reported at once.

    Raises:
        ConfigError: no name, or a name that is not one.
    """
    if not args:
        raise ConfigError("give at least one secret NAME", where="secrets unset")
    problems = [
        f"argument {n}: secret name must be {_NAME_RULE}"
        for n, arg in enumerate(args, 1)
        if not NAME.match(arg)
    ]
    if problems:
        raise ConfigError("; ".join(problems), where="secrets unset")
    return SecretChange(unset=tuple(dict.fromkeys(args)), stage=stage)


@dataclass(frozen=True, slots=True)
class SecretListing:
    """The app's secrets by name, and how many machines run the current set.

    Attributes:
        app: the app.
        secrets: ``(name, digest, updated_at)`` per secret, sorted by name.
        machines: managed machines that are not destroyed.
        current: of those, the ones launched with the current secrets.
    """

    app: str
    secrets: tuple[tuple[str, str, str | None], ...]
    machines: int
    current: int

    def to_json(self) -> dict[str, Any]:
        """Return the listing as JSON (names and digests: no value is ever known here)."""
        return {
            "app": self.app,
            "secrets": [{"name": n, "digest": d, "updated_at": u} for n, d, u in self.secrets],
            "machines": self.machines,
            "machines_current": self.current,
        }


@dataclass(frozen=True, slots=True)
class SecretsResult:
    """How ``secrets set``/``unset`` ended.

    Attributes:
        app: the app.
        names: the names changed.
        version: the app's secrets version after the change (``None``: nothing changed).
        staged: the change waits for the next deploy.
        deploy: the rollout that followed (``None`` when staged or nothing ran).
        restored: the previous values were put back before the automatic rollback.
        note: a line for the operator, when there is something to say.
    """

    app: str
    names: tuple[str, ...]
    version: int | None
    staged: bool
    deploy: DeployResult | None = None
    restored: bool = False
    note: str | None = None

    @property
    def ok(self) -> bool:
        """Tell whether the change (and its rollout, if any) succeeded."""
        return self.deploy is None or self.deploy.ok

    def to_json(self) -> dict[str, Any]:
        """Return the result as JSON (names, never values)."""
        return {
            "app": self.app,
            "names": list(self.names),
            "version": self.version,
            "staged": self.staged,
            "restored": self.restored,
            "note": self.note,
            "deploy": None if self.deploy is None else self.deploy.to_json(),
        }


async def _managed(conn: Connection) -> list[dict[str, str]]:
    try:
        machines = await conn.client.list_machines(conn.app)
    except FlyNotFound:
        return []
    return [dict(m.metadata) for m in machines if "orch_slot" in m.metadata]


async def list_secrets(settings: Settings) -> SecretListing:
    """List the app's secrets (names, digests) and how far the current set has rolled out."""
    async with connect(settings) as conn:
        try:
            listed = await conn.client.list_secrets(conn.app)
        except FlyNotFound:
            listed = []
        metas = await _managed(conn)
    fingerprint = secrets_fingerprint({s.name: s.digest for s in listed})
    current = sum(1 for meta in metas if meta.get(META_SECRETS, "") == fingerprint)
    rows = tuple((s.name, s.digest, s.updated_at) for s in listed)
    return SecretListing(app=conn.app, secrets=rows, machines=len(metas), current=current)


async def _apply(conn: Connection, values: dict[str, str], unset: Sequence[str]) -> int | None:
    version: int | None = None
    if values:
        version = await conn.client.set_secrets(conn.app, values)
    for name in unset:
        version = await conn.client.unset_secret(conn.app, name) or version
    return version


async def change_secrets(
    settings: Settings,
    change: SecretChange,
    *,
    bus: EventBus | None = None,
    options: ExecuteOptions | None = None,
) -> SecretsResult:
    """Set and unset secrets; unless staged, roll the change out as a release.

    Raises:
        ConfigError: the app does not exist on Fly.io.
        OrchestratorError: the API could not be reached or refused the change.
    """
    bus = bus or EventBus()
    async with connect(settings) as conn:
        await ensure_app(conn)
        previous: dict[str, str] | None = None
        if not change.stage:
            try:
                previous = await conn.client.reveal_secrets(conn.app, change.names)
            except FlyAPIError:
                # A token that may not read values: the change still rolls out, but a rollback
                # cannot give the machines the old values back.
                bus.emit(
                    Note(
                        "cannot read the current secret values (token permission); a rollback "
                        "would keep the new values",
                        level="warning",
                    )
                )
        version = await _apply(conn, change.values, change.unset)
        if version is not None:
            remember_version(settings.root, conn.app, version)
        machines = await _managed(conn)
        app = conn.app
        restore: tuple[dict[str, str], tuple[str, ...]] | None = None
        if previous is not None:
            back = tuple(n for n in change.names if n not in previous)
            restore = (previous, back)
    if change.stage or version is None or not machines:
        note = None
        if version is None:
            note = "nothing to change: none of those secrets exist"
        elif change.stage:
            note = "staged: machines get it at the next `invoke deploy`"
        else:
            note = "no machines yet: the first deploy starts them with these secrets"
        return SecretsResult(app, change.names, version, staged=change.stage, note=note)

    restored = False

    async def put_back() -> None:
        nonlocal restored
        if restore is None:
            return
        values, absent = restore
        async with connect(settings) as again:
            after = await _apply(again, values, absent)
        if after is not None:
            remember_version(settings.root, app, after)
        restored = True
        bus.emit(Note("the previous secret values are back; rolling the machines back to them"))

    result = await deploy(
        settings, DeployRequest(), bus=bus, options=options, before_rollback=put_back
    )
    if not isinstance(result, DeployResult):
        raise DeployError("the rollout of the secrets was not run")
    return SecretsResult(app, change.names, version, staged=False, deploy=result, restored=restored)
