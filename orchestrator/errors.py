"""Every error the orchestrator raises, under one root.

The tree::

    OrchestratorError
     ├── ConfigError                 bad input: a file, key or flag (exit code 2)
 │    └── ConfigProblems         several of them, found in one reading, one line each
     ├── FlyAPIError                 the Machines API answered with an error
     │    ├── FlyBadRequest          400 / 422 (Fly's ``status`` may say ``name_taken`` ...)
     │    ├── FlyAuthError           401 / 403
     │    ├── FlyNotFound            404
     │    ├── FlyWaitTimeout         408 (a ``/wait`` that ran out, or a request timeout)
     │    ├── FlyConflict            409 (stale ``current_version``, state conflict)
     │    │    └── FlyLeaseHeld      409 on a lease held by someone else
     │    ├── FlyPreconditionFailed  412
     │    ├── FlyRateLimited         429 (``retry_after`` seconds when Fly said so)
     │    └── FlyServerError         5xx
     ├── FlyTransportError           no answer at all: connection refused/reset, timeout
     ├── LocalFlyError               the embedded local Fly could not be started or reached
     │    └── LocalFlyNotRunning     a read-only command found it stopped
     ├── DeployError                 a deploy, rollback or scale failed (exit code 1)
     │    ├── DeployLocked           another deploy holds the app's lock
     │    └── GateFailed             a health or metrics gate failed
     └── DrillError                  a disaster-recovery drill could not run

Low-level errors (httpx, OSError, sqlite3) are mapped once at the boundary with
``raise X(...) from exc`` so callers only ever catch these.

Every error has a `kind` (`ErrorKind`), decided here once per class, never guessed from a
message: the command line picks its exit code and the one thing to do next from it.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "EXIT_CODES",
    "ConfigError",
    "ConfigProblems",
    "DeployError",
    "DeployLocked",
    "DrillError",
    "ErrorKind",
    "FlyAPIError",
    "FlyAuthError",
    "FlyBadRequest",
    "FlyConflict",
    "FlyLeaseHeld",
    "FlyNotFound",
    "FlyPreconditionFailed",
    "FlyRateLimited",
    "FlyServerError",
    "FlyTransportError",
    "FlyWaitTimeout",
    "GateFailed",
    "LocalFlyError",
    "LocalFlyNotRunning",
    "NoPrimary",
    "OrchestratorError",
    "api_error_for_status",
    "kind_of",
]


class ErrorKind(StrEnum):
    """What an error says about whose move it is next.

    - ``input``: the operator's input (a file, key, flag, image) is wrong; fix it and run
      again. Exit code 2.
    - ``fly``: Fly.io, the local Fly or the network failed, or the fleet changed under the run;
      the release is not at fault and ``--resume`` carries on once Fly answers. Exit code 1.
    - ``release``: the release itself failed its gates (health, checks, metrics). Resuming would
      fail again; fix the release. Exit code 1.
    - ``locked``: another operator's run holds the app. Exit code 1.
    - ``fleet``: the fleet's own state forbids the command (two primaries, an unfinished
      drill); the error says what resolves it. Exit code 1.
    """

    INPUT = "input"
    FLY = "fly"
    RELEASE = "release"
    LOCKED = "locked"
    FLEET = "fleet"


EXIT_CODES = {
    ErrorKind.INPUT: 2,
    ErrorKind.FLY: 1,
    ErrorKind.RELEASE: 1,
    ErrorKind.LOCKED: 1,
    ErrorKind.FLEET: 1,
}


class OrchestratorError(Exception):
    """Root of every error this package raises."""

    kind: ErrorKind = ErrorKind.FLY

    @property
    def exit_code(self) -> int:
        """Return the command line's exit code for this error's kind."""
        return EXIT_CODES[self.kind]


class ConfigError(OrchestratorError):
    """Bad input: a config file, a key in it, a flag or an environment variable.

    The message is one line that names where the problem is (``regions/syd.toml: count``)
    and what is allowed. Nothing has been changed when this is raised.

    Attributes:
        where: the file, key or place at fault, as the operator names it.
        option: the command's option at fault, by its name in the request (``region``,
            ``volume_size``), for errors raised below the command line: the command line names
            its flag (`orchestrator.render.errors.flag_for`).
    """

    kind = ErrorKind.INPUT

    def __init__(self, message: str, *, where: str | None = None, option: str | None = None):
        self.where = where
        self.option = option
        self.message = message
        place = where or option
        super().__init__(f"{place}: {message}" if place else message)


class ConfigProblems(ConfigError):
    """Every problem found in one reading of the input, so a user fixes them all in one go.

    ``str()`` is one line per problem (each ``where: message``); ``problems`` keeps them as
    :class:`ConfigError` values, in the order found.
    """

    def __init__(self, problems: list[ConfigError]) -> None:
        self.problems = tuple(problems)
        first = self.problems[0] if self.problems else ConfigError("no problem")
        super().__init__(first.message, where=first.where, option=first.option)
        self.args = ("\n".join(str(p) for p in self.problems),)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class FlyAPIError(OrchestratorError):
    """The Machines API answered with an error status.

    Attributes:
        status_code: the HTTP status.
        fly_status: Fly's ``status`` string from the error body (``insufficient_capacity``,
            ``name_taken``, ``unknown``...) or ``None``.
        message: Fly's ``error`` (or ``message``) text.
        request_id: the ``fly-request-id`` response header, for support tickets.
        method: the HTTP method of the request.
        path: the request path (never the query string, never a header).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        fly_status: str | None = None,
        request_id: str | None = None,
        method: str = "",
        path: str = "",
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.fly_status = fly_status
        self.request_id = request_id
        self.method = method
        self.path = path
        where = f"{method} {path}".strip()
        rid = f" (fly-request-id {request_id})" if request_id else ""
        super().__init__(f"{where}: {status_code} {message}{rid}" if where else message)


class FlyBadRequest(FlyAPIError):
    """400 or 422: the request was malformed or failed validation.

    Asking again sends the same request and gets the same answer (an image Fly cannot pull, a
    config it refuses), so this is bad input, not a Fly failure to resume after.
    """

    kind = ErrorKind.INPUT


class FlyAuthError(FlyAPIError):
    """401 or 403: the token is missing, wrong or lacks permission."""


class FlyNotFound(FlyAPIError):
    """404: the app, machine, volume or lease does not exist."""


class FlyWaitTimeout(FlyAPIError):
    """408: a ``/wait`` ran out before the machine reached the state, or the request timed out."""


class FlyConflict(FlyAPIError):
    """409: a stale ``current_version`` or a state that forbids the operation."""


class FlyLeaseHeld(FlyConflict):
    """409 because another holder has the machine's lease."""


class FlyPreconditionFailed(FlyAPIError):
    """412: a stale ``machine_version`` on a metadata update."""


class FlyRateLimited(FlyAPIError):
    """429: the request was rate limited.

    Attributes:
        retry_after: seconds from the ``Retry-After`` header, when given.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class FlyServerError(FlyAPIError):
    """5xx: the platform failed; usually transient."""


class FlyTransportError(OrchestratorError):
    """The API could not be reached: connection refused or reset, DNS, or a client timeout."""


class LocalFlyError(OrchestratorError):
    """The embedded local Fly could not be started, reached or stopped."""


class LocalFlyNotRunning(LocalFlyError):
    """A read-only command found the local Fly stopped (it never starts one)."""


class DeployError(OrchestratorError):
    """A deploy, rollback or scale did not reach its goal."""


class DeployLocked(DeployError):
    """Another deploy holds the app's lock.

    Attributes:
        holder: who holds it (host, pid, release), as recorded in the lock.
        lapses_in_s: seconds until the holder's lease lapses unless renewed; ``None`` when the
            lock could not be read to the end (it kept changing).
    """

    kind = ErrorKind.LOCKED

    def __init__(
        self,
        message: str,
        *,
        holder: dict[str, object] | None = None,
        lapses_in_s: float | None = None,
    ) -> None:
        self.holder = holder or {}
        self.lapses_in_s = lapses_in_s
        super().__init__(message)


class GateFailed(DeployError):
    """A health or metrics gate failed; the message names the region, machine and check."""

    kind = ErrorKind.RELEASE


class NoPrimary(DeployError):
    """No machine of the primary region answers as the primary: the fleet takes no writes.

    Not the release's fault and not Fly's: resuming would meet the same fleet. The command
    line says how to see each machine's role.
    """

    kind = ErrorKind.FLEET


class DrillError(OrchestratorError):
    """A disaster-recovery drill could not run or could not restore the fleet."""


def kind_of(exc: BaseException) -> ErrorKind:
    """Return the kind of ``exc``; anything outside this tree is a failure of the run, not input."""
    return exc.kind if isinstance(exc, OrchestratorError) else ErrorKind.FLY


def api_error_for_status(
    status_code: int, body_status: str | None, message: str
) -> type[FlyAPIError]:
    """Pick the error class for an HTTP status (and Fly's body ``status``)."""
    if status_code in (400, 422):
        return FlyBadRequest
    if status_code in (401, 403):
        return FlyAuthError
    if status_code == 404:
        return FlyNotFound
    if status_code == 408:
        return FlyWaitTimeout
    if status_code == 409:
        # Which 409 it is follows from the request (`fly.wire.error_from_response`: a 409 to
        # taking a lease is a held lease), never from the wording of the message.
        return FlyConflict
    if status_code == 412:
        return FlyPreconditionFailed
    if status_code == 429:
        return FlyRateLimited
    if status_code >= 500:
        return FlyServerError
    return FlyAPIError
