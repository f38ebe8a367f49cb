"""App secrets: the ``/v1/apps/{app}/secrets`` endpoints and what a machine's process gets.

Values live in one file, ``<state>/secrets.json``, created with mode 0600 and replaced
atomically on every change; nothing else the local Fly writes (``requests.log``,
``server.log``, machine logs, ``state.db``) ever holds a value. Every change makes a new
app-wide secrets version, as on Fly. A machine is pinned to the version that was current
when it was last created or updated (``min_secrets_version`` may not name a newer one), so
a change reaches a machine only through its next create or update: a restart keeps the
values it booted with. Digests are HMACs under a key kept in the same file, so a digest
shown by ``list`` cannot be turned back into a short value by guessing.

Error messages name the secret, never its value.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets as _random
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

from starlette.responses import Response

from orchestrator.localfly.core import Call, LocalFly, json_response
from orchestrator.localfly.util import ApiError, iso_now

__all__ = [
    "FILE_NAME",
    "SecretStore",
    "delete_secret",
    "get_secret",
    "list_secrets",
    "set_secret",
    "update_secrets",
]

FILE_NAME = "secrets.json"
# Fly takes secret names as environment variable names.
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_VALUE_BYTES = 64 * 1024
# Versions a stopped or long-lived machine may still be pinned to.
KEEP_VERSIONS = 50


class SecretStore:
    """Every app's secrets, versioned, in one 0600 file under the state dir."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME
        self._lock = threading.Lock()
        self._data = self._read()

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"key": _random.token_hex(32), "apps": {}}
        except (OSError, ValueError) as exc:
            raise ApiError(500, f"cannot read the secrets file: {type(exc).__name__}") from None
        if not isinstance(data, dict) or not isinstance(data.get("apps"), dict):
            raise ApiError(500, "the secrets file is not in the expected shape")
        os.chmod(self.path, 0o600)
        return data

    def _write(self) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".secrets-", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(self._data, f, separators=(",", ":"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _app(self, app: str) -> dict[str, Any]:
        apps: dict[str, dict[str, Any]] = self._data["apps"]
        return apps.setdefault(app, {"version": 0, "versions": {"0": {}}})

    def version(self, app: str) -> int:
        """Return the app's current secrets version (0 before the first change)."""
        with self._lock:
            return int(self._app(app)["version"])

    def current(self, app: str) -> dict[str, dict[str, str]]:
        """Return the app's current secrets: ``{name: {value, created_at, updated_at}}``."""
        with self._lock:
            entry = self._app(app)
            return dict(entry["versions"][str(entry["version"])])

    def values_at(self, app: str, version: int) -> dict[str, str]:
        """Return the values a machine pinned to ``version`` gets (``{}`` for none)."""
        with self._lock:
            entry = self._app(app)
            at = entry["versions"].get(str(version))
            if at is None:
                # Pruned: the oldest version still kept is the nearest thing it had.
                kept = [int(v) for v in entry["versions"] if int(v) <= version]
                at = entry["versions"][str(max(kept))] if kept else {}
            return {name: str(item["value"]) for name, item in at.items()}

    def change(self, app: str, values: dict[str, str | None]) -> int:
        """Set (str) or unset (None) names at once as one new version; return it."""
        with self._lock:
            entry = self._app(app)
            now = iso_now()
            secrets = {k: dict(v) for k, v in entry["versions"][str(entry["version"])].items()}
            for name, value in values.items():
                if value is None:
                    secrets.pop(name, None)
                    continue
                created = secrets.get(name, {}).get("created_at", now)
                secrets[name] = {"value": value, "created_at": created, "updated_at": now}
            version = int(entry["version"]) + 1
            entry["version"] = version
            entry["versions"][str(version)] = secrets
            for old in sorted(int(v) for v in entry["versions"])[:-KEEP_VERSIONS]:
                del entry["versions"][str(old)]
            self._write()
            return version

    def forget(self, app: str) -> None:
        """Drop an app's secrets (the app was deleted)."""
        with self._lock:
            if self._data["apps"].pop(app, None) is not None:
                self._write()

    def digest(self, value: str) -> str:
        """Return the digest shown for a value (an HMAC: not reversible by guessing)."""
        key = bytes.fromhex(str(self._data["key"]))
        return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:16]


_STORES: weakref.WeakKeyDictionary[LocalFly, SecretStore] = weakref.WeakKeyDictionary()


def store(fly: LocalFly) -> SecretStore:
    """Return the local Fly's secret store (loaded on first use)."""
    found = _STORES.get(fly)
    if found is None:
        found = _STORES[fly] = SecretStore(fly.state_dir)
    return found


def _name(name: str) -> str:
    if not NAME.match(name) or len(name) > 256:
        raise ApiError(
            400, "invalid secret name: letters, digits and _ only, not starting with a digit"
        )
    return name


def _value(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ApiError(400, f"invalid value for secret {name}: must be a string")
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise ApiError(400, f"invalid value for secret {name}: larger than 64 KiB")
    if "\x00" in value:
        raise ApiError(400, f"invalid value for secret {name}: contains a NUL byte")
    return value


def _min_version(fly: LocalFly, call: Call, app: str) -> None:
    text = call.query("min_version")
    if text is None:
        return
    if not text.isdigit():
        raise ApiError(400, "invalid min_version: must be a whole number")
    current = store(fly).version(app)
    if int(text) > current:
        raise ApiError(400, f"secrets version {text} does not exist yet (current {current})")


def _shown(fly: LocalFly, name: str, item: dict[str, str], show: bool) -> dict[str, Any]:
    out = {
        "name": name,
        "digest": store(fly).digest(item["value"]),
        "created_at": item["created_at"],
        "updated_at": item["updated_at"],
    }
    if show:
        out["value"] = item["value"]
    return out


def _listing(fly: LocalFly, app: str, show: bool) -> list[dict[str, Any]]:
    current = store(fly).current(app)
    return [_shown(fly, n, current[n], show) for n in sorted(current)]


async def _body(call: Call) -> dict[str, Any]:
    body = await call.json()
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body


async def list_secrets(fly: LocalFly, call: Call) -> Response:
    """Answer ``GET /apps/{app}/secrets`` (values only with ``show_secrets``)."""
    app = fly.app(call.params["app_name"]).name
    _min_version(fly, call, app)
    return json_response({"secrets": _listing(fly, app, call.flag("show_secrets"))})


async def update_secrets(fly: LocalFly, call: Call) -> Response:
    """Answer ``POST /apps/{app}/secrets``: set and unset (null) several at once."""
    app = fly.app(call.params["app_name"]).name
    values = (await _body(call)).get("values")
    if not isinstance(values, dict) or not values:
        raise ApiError(400, "values: give at least one secret name, with a value or null")
    checked: dict[str, str | None] = {}
    for name, value in values.items():
        checked[_name(str(name))] = None if value is None else _value(name, value)
    version = store(fly).change(app, checked)
    return json_response(
        {"secrets": _listing(fly, app, False), "version": version, "Version": version}
    )


async def get_secret(fly: LocalFly, call: Call) -> Response:
    """Answer ``GET /apps/{app}/secrets/{name}``."""
    app = fly.app(call.params["app_name"]).name
    name = _name(call.params["secret_name"])
    _min_version(fly, call, app)
    item = store(fly).current(app).get(name)
    if item is None:
        raise ApiError(404, f"secret {name} not found")
    return json_response(_shown(fly, name, item, call.flag("show_secrets")))


async def set_secret(fly: LocalFly, call: Call) -> Response:
    """Answer ``POST /apps/{app}/secrets/{name}``: 201 with the new version."""
    app = fly.app(call.params["app_name"]).name
    name = _name(call.params["secret_name"])
    value = _value(name, (await _body(call)).get("value"))
    version = store(fly).change(app, {name: value})
    item = store(fly).current(app)[name]
    out = {**_shown(fly, name, item, False), "version": version, "Version": version}
    return json_response(out, 201)


async def delete_secret(fly: LocalFly, call: Call) -> Response:
    """Answer ``DELETE /apps/{app}/secrets/{name}``."""
    app = fly.app(call.params["app_name"]).name
    name = _name(call.params["secret_name"])
    if name not in store(fly).current(app):
        raise ApiError(404, f"secret {name} not found")
    version = store(fly).change(app, {name: None})
    return json_response({"version": version, "Version": version})


def pin(fly: LocalFly, app: str, body: dict[str, Any]) -> int:
    """Return the secrets version a machine created or updated with ``body`` is pinned to.

    -1 (no secrets at all) with ``skip_secrets``; 400 when ``min_secrets_version`` names a
    version the app does not have yet.
    """
    if body.get("skip_secrets"):
        return -1
    current = store(fly).version(app)
    wanted = body.get("min_secrets_version")
    if wanted is not None and int(wanted) > current:
        raise ApiError(
            400,
            f"min_secrets_version {int(wanted)} is newer than the app's secrets "
            f"(version {current})",
        )
    return current
