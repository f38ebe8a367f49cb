"""Find the user's fleet, decide which Machines API to talk to, and open a client to it.

This is where the command line turns "the directory I am in plus my environment" into a
working connection:

1. `find_root` walks up from the working directory (never the package's install location) to
   the directory holding ``fly.toml``.
2. `load_settings` reads ``FLY_API_TOKEN``, ``FLY_FLAPS_BASE_URL``, ``FLY_APP_NAME`` and
   ``FLY_APP_URL`` from the environment, falling back to the same keys in the project's
   ``invoke.yaml`` (section ``fly``: ``api_token``, ``flaps_base_url``, ``app_name``,
   ``app_url``); the environment wins.
3. `connect` starts the embedded local Fly under ``<root>/.localfly`` when there is no token,
   opens one `FlyClient` and one `ProxyClient` (the app through the edge proxy), and closes both.

The token travels from the environment into `Settings.token` (a `Token`, never shown) and from
there into the client's ``Authorization`` header; nothing here prints, logs or stores it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError, FlyNotFound, LocalFlyError, LocalFlyNotRunning
from orchestrator.fly.client import FlyClient
from orchestrator.fly.proxy import ProxyClient
from orchestrator.settings import NO_APP_URL, Settings, Token, resolve_settings

__all__ = [
    "Connection",
    "app_exists",
    "connect",
    "ensure_app",
    "find_root",
    "load_settings",
    "local_running",
    "start_local",
]

FLY_TOML = "fly.toml"

# invoke.yaml's ``fly`` section → the environment variable each key stands in for.
_YAML_KEYS = {
    "api_token": "FLY_API_TOKEN",
    "flaps_base_url": "FLY_FLAPS_BASE_URL",
    "app_name": "FLY_APP_NAME",
    "app_url": "FLY_APP_URL",
}


def find_root(start: Path | None = None) -> Path:
    """Return the nearest directory at or above ``start`` (default: cwd) holding ``fly.toml``.

    Raises:
        ConfigError: there is no ``fly.toml`` there or above.
    """
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / FLY_TOML).is_file():
            return directory
    raise ConfigError(
        f"no fly.toml in {here} or any parent; run from your fleet's directory", where=FLY_TOML
    )


def load_settings(
    root: Path,
    environ: Mapping[str, str] | None = None,
    config: Mapping[str, Any] | None = None,
) -> Settings:
    """Resolve the settings from the environment and the ``fly`` section of ``invoke.yaml``.

    Args:
        root: the directory holding ``fly.toml``.
        environ: the environment (default ``os.environ``).
        config: invoke's ``fly`` config section, if any.

    Raises:
        ConfigError: a bad ``FLY_FLAPS_BASE_URL``, or a section value that is not a string.
    """
    env = dict(os.environ if environ is None else environ)
    merged: dict[str, str] = {}
    for key, name in _YAML_KEYS.items():
        value = (config or {}).get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise ConfigError(f"must be a string, got {type(value).__name__}", where=f"fly.{key}")
        merged[name] = value
    for name in _YAML_KEYS.values():
        if env.get(name, "").strip():
            merged[name] = env[name]
    for name, value in env.items():
        merged.setdefault(name, value)
    return resolve_settings(root, merged)


@dataclass(frozen=True, slots=True)
class Connection:
    """An open line to the Machines API and to the app behind the edge proxy.

    Attributes:
        settings: the resolved settings (with the local Fly's URL and token filled in).
        app: the app name.
        client: the Machines API client.
        probe: the app's HTTP endpoints through the proxy.
        proxy_url: the proxy's base URL.
        started_local: this connection started the local Fly (it keeps running after).
    """

    settings: Settings
    app: str
    client: FlyClient
    probe: ProxyClient
    proxy_url: str
    started_local: bool = False

    @property
    def backend(self) -> str:
        """Return ``local`` or ``fly``."""
        return self.settings.backend


def local_running(settings: Settings) -> bool:
    """Tell whether the local Fly of ``settings`` runs now (starts nothing)."""
    from orchestrator.localfly import control  # the server's code is only needed here

    return control.status(settings.local_state_dir).running


def start_local(
    settings: Settings, *, profile: str | None = None, time_factor: float | None = None
) -> tuple[Settings, str]:
    """Start the local Fly if it is not running; return the filled settings and the proxy URL.

    Raises:
        LocalFlyError: it could not be started.
    """
    from orchestrator.localfly import control

    kwargs: dict[str, Any] = {}
    if profile is not None:
        kwargs["profile"] = profile
    if time_factor is not None:
        kwargs["time_factor"] = time_factor
    try:
        endpoint = control.ensure_running(settings.local_state_dir, **kwargs)
    except LocalFlyError:
        raise
    except OSError as exc:
        raise LocalFlyError(f"cannot start the local Fly: {exc}") from exc
    return replace(settings, base_url=endpoint.api_url, token=Token(endpoint.token)), (
        endpoint.proxy_url
    )


@contextlib.asynccontextmanager
async def connect(
    settings: Settings, *, timeout: float = 30.0, start: bool = True
) -> AsyncIterator[Connection]:
    """Open a client (starting the local Fly when the backend is local) and close it after.

    Args:
        settings: where the API is.
        timeout: each request's timeout.
        start: start the local Fly when it is not running; ``False`` (read-only commands
            such as ``invoke status``) raises `LocalFlyNotRunning` instead.

    Raises:
        ConfigError: no app name (``fly.toml: app`` or ``FLY_APP_NAME``).
        LocalFlyError: the local Fly could not be started.
        LocalFlyNotRunning: ``start`` is false and the local Fly is not running.
    """
    if not settings.app:
        raise ConfigError("no app name; set `app` in fly.toml or FLY_APP_NAME", where=FLY_TOML)
    app = settings.app
    started = False
    if settings.backend == "local":
        running = await asyncio.to_thread(local_running, settings)
        if not running and not start:
            raise LocalFlyNotRunning(
                f"the local Fly is not running (state in {settings.local_state_dir}); start "
                "it with `invoke local.up`, or deploy with `invoke deploy`"
            )
        settings, proxy_url = await asyncio.to_thread(start_local, settings)
        started = not running
        host_header = True
    else:
        proxy_url = settings.app_url or f"https://{app}.fly.dev"
        host_header = False
    # An app with no public address: nothing is ever sent to this URL (the probe says so).
    reachable = settings.app_url != NO_APP_URL
    if not reachable:
        proxy_url = f"https://{app}.fly.dev"
    if settings.base_url is None or settings.token is None:
        raise LocalFlyError("the local Fly gave no API URL or token")
    client = FlyClient(settings.base_url, settings.token, timeout=timeout)
    probe = ProxyClient(proxy_url, app, host_header=host_header, reachable=reachable)
    try:
        yield Connection(
            settings=settings,
            app=app,
            client=client,
            probe=probe,
            proxy_url=proxy_url,
            started_local=started,
        )
    finally:
        await probe.aclose()
        await client.aclose()


async def app_exists(conn: Connection) -> bool:
    """Tell whether the app exists on the backend."""
    try:
        await conn.client.get_app(conn.app)
    except FlyNotFound:
        return False
    return True


async def ensure_app(conn: Connection) -> None:
    """Create the app on the local Fly when it is missing; on Fly.io, say how to create it.

    Raises:
        ConfigError: the app does not exist on Fly.io (creating apps there is ``fly apps
            create``'s job: it picks the organization and bills it).
    """
    if await app_exists(conn):
        return
    if conn.backend != "local":
        raise ConfigError(
            f"app {conn.app!r} does not exist on Fly.io; create it with `fly apps create "
            f"{conn.app}`",
            where="fly.toml: app",
        )
    await conn.client.create_app(conn.app, idempotency_key=f"orchestrator-{conn.app}")
