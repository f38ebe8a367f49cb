"""Decide where the Machines API is, which token it takes, and which app is deployed.

`resolve_settings` reads the environment once: with ``FLY_API_TOKEN`` set the orchestrator talks to
Fly.io at ``FLY_FLAPS_BASE_URL`` (fly-go's name; default ``https://api.machines.dev``); without it,
to the embedded local Fly, whose URL and token the local Fly control fills in when it starts
(``dataclasses.replace(settings, base_url=..., token=...)``).

The token is held in a `Token`, whose ``repr``, ``str`` and format never show the secret.
"""

from __future__ import annotations

import hmac
import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from orchestrator.errors import ConfigError

__all__ = [
    "DEFAULT_BASE_URL",
    "NO_APP_URL",
    "Backend",
    "Settings",
    "Token",
    "resolve",
    "resolve_settings",
    "validate_base_url",
]

DEFAULT_BASE_URL = "https://api.machines.dev"

Backend = Literal["local", "fly"]

_REDACTED = "***"


class Token:
    """Hold an API token so that printing, logging or formatting it never shows the secret.

    Not a `str` subclass on purpose: string concatenation, ``json.dumps`` and f-strings would
    otherwise copy the secret out. Call `reveal` at the one place that needs it (the
    ``Authorization`` header).
    """

    __slots__ = ("_secret",)

    _secret: str

    def __init__(self, secret: str) -> None:
        object.__setattr__(self, "_secret", secret)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Token is immutable")

    def reveal(self) -> str:
        """Return the secret itself."""
        return self._secret

    def __repr__(self) -> str:
        return f"Token({_REDACTED!r})"

    def __str__(self) -> str:
        return _REDACTED

    def __format__(self, spec: str) -> str:
        return format(_REDACTED, spec)

    def __bool__(self) -> bool:
        return bool(self._secret)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Token):
            return NotImplemented
        # Constant-time, so a comparison never leaks how much of a token matched.
        return hmac.compare_digest(self._secret.encode(), other._secret.encode())

    def __hash__(self) -> int:
        return hash((Token, self._secret))

    def __reduce__(self) -> tuple[type[Token], tuple[str]]:
        return (Token, (self._secret,))


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the orchestrator works and which API it talks to.

    Attributes:
        root: the directory holding the user's ``fly.toml`` and ``regions/``.
        app: the app name (``FLY_APP_NAME``, else ``app`` in ``fly.toml``), or ``None``.
        backend: ``"fly"`` for Fly.io, ``"local"`` for the embedded local Fly.
        base_url: the Machines API base URL (without ``/v1``); ``None`` for the local Fly until
            it has been started.
        token: the API token; ``None`` for the local Fly until it has been started.
        app_url: where the app answers (gates, drills): ``FLY_APP_URL``, a custom domain or a
            ``fly proxy`` tunnel; ``None`` means ``https://<app>.fly.dev`` on Fly.io and the
            local Fly's edge proxy locally; ``"none"`` for an app with no public address, whose
            gates rely on Fly's checks alone.
        lock_ttl_s: how long the deploy lock outlives its holder's last heartbeat
            (``ORCHESTRATOR_LOCK_TTL``, seconds).
    """

    root: Path
    app: str | None
    backend: Backend
    base_url: str | None
    token: Token | None
    app_url: str | None = None
    lock_ttl_s: float = 30.0

    @property
    def local_state_dir(self) -> Path:
        """Return the local Fly's state directory, ``<root>/.localfly``."""
        return self.root / ".localfly"


def validate_base_url(url: str, *, where: str = "FLY_FLAPS_BASE_URL") -> str:
    """Check a Machines API base URL and return it without a trailing slash.

    Raises:
        ConfigError: the URL is malformed, is not http(s), or is plain ``http://`` to a host
            that is not loopback (the token would cross the network in clear text).
    """
    text = url.strip()
    shown = text if len(text) <= 80 else text[:77] + "..."
    try:
        parts = urlsplit(text)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        raise ConfigError(f"not a valid URL: {shown!r}", where=where) from None
    if any(c.isspace() for c in text) or not parts.hostname or not port_ok:
        raise ConfigError(f"not a valid URL: {shown!r}", where=where)
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"must be an http(s) URL, got {shown!r}", where=where)
    if parts.username or parts.password:
        raise ConfigError("must not carry credentials; use FLY_API_TOKEN", where=where)
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            f"plain http:// is only allowed to a loopback host, got {parts.hostname!r}; "
            "use https://",
            where=where,
        )
    return text.rstrip("/")


def resolve_settings(
    root: Path, environ: Mapping[str, str], *, backend: Backend | None = None
) -> Settings:
    """Build the settings from the environment (pass ``os.environ``).

    Args:
        root: the directory holding ``fly.toml``.
        environ: the environment to read ``FLY_API_TOKEN``, ``FLY_FLAPS_BASE_URL`` and
            ``FLY_APP_NAME`` from.
        backend: a backend asked for explicitly (a flag or ``invoke.yaml``); ``None`` picks
            ``"fly"`` when a token is set, else ``"local"``.

    Raises:
        ConfigError: ``backend="fly"`` without ``FLY_API_TOKEN``, or a bad ``FLY_FLAPS_BASE_URL``.
    """
    raw_token = environ.get("FLY_API_TOKEN", "").strip()
    chosen: Backend = backend if backend is not None else ("fly" if raw_token else "local")
    app = environ.get("FLY_APP_NAME", "").strip() or _app_from_fly_toml(root)
    app_url = _app_url(environ.get("FLY_APP_URL", ""))
    lock_ttl_s = _lock_ttl(environ.get("ORCHESTRATOR_LOCK_TTL", ""))
    if chosen == "local":
        return Settings(
            root=root,
            app=app,
            backend="local",
            base_url=None,
            token=None,
            app_url=app_url,
            lock_ttl_s=lock_ttl_s,
        )
    if not raw_token:
        raise ConfigError(
            "the fly backend needs an API token (fly tokens create deploy)", where="FLY_API_TOKEN"
        )
    base_url = validate_base_url(environ.get("FLY_FLAPS_BASE_URL", "").strip() or DEFAULT_BASE_URL)
    return Settings(
        root=root,
        app=app,
        backend="fly",
        base_url=base_url,
        token=Token(raw_token),
        app_url=app_url,
        lock_ttl_s=lock_ttl_s,
    )


NO_APP_URL = "none"


def _app_url(text: str) -> str | None:
    """Check ``FLY_APP_URL``: an http(s) URL (plain http to a loopback host only) or ``none``."""
    text = text.strip()
    if text.lower() == NO_APP_URL:
        return NO_APP_URL
    return validate_base_url(text, where="FLY_APP_URL") if text else None


def _lock_ttl(text: str) -> float:
    text = text.strip()
    if not text:
        return 30.0
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 2.0 <= value <= 3600.0:
        raise ConfigError(
            f"must be a number of seconds from 2 to 3600, got {text!r}",
            where="ORCHESTRATOR_LOCK_TTL",
        )
    return value


# docs/architecture.md names the function ``resolve``; both names are kept.
resolve = resolve_settings


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _app_from_fly_toml(root: Path) -> str | None:
    # Only a fallback for the app name; reporting a broken fly.toml is the spec loader's job.
    try:
        data = tomllib.loads((root / "fly.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    app = data.get("app")
    return (app.strip() or None) if isinstance(app, str) else None
