"""What a deploy knows of the app's secrets: a fingerprint of names and digests, and a version.

The Machines API lists secrets with Fly's digests but no version; the version comes back only
from a change. Like flyctl (which keeps it in its own state), the orchestrator remembers the
newest version it set per app in ``.orchestrator/secrets.json`` (a number, never a value) and
sends it as ``min_secrets_version`` on every create and update.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path

from orchestrator.errors import FlyNotFound
from orchestrator.fly.client import FlyClient
from orchestrator.plan.config import Secrets, secrets_fingerprint

__all__ = [
    "VERSIONS_FILE",
    "known_version",
    "observe_secrets",
    "remember_version",
    "scale_secrets",
]

VERSIONS_FILE = "secrets.json"


def _path(root: Path) -> Path:
    return root / ".orchestrator" / VERSIONS_FILE


def known_version(root: Path, app: str) -> int | None:
    """Return the newest secrets version this directory set for ``app``, if any."""
    try:
        data = json.loads(_path(root).read_text())
    except (OSError, ValueError):
        return None
    value = data.get(app) if isinstance(data, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def remember_version(root: Path, app: str, version: int) -> None:
    """Record ``version`` as the app's newest secrets version (kept if an older one comes)."""
    path = _path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    data[app] = max(version, known_version(root, app) or 0)
    fd, tmp = tempfile.mkstemp(prefix=".secrets-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


async def observe_secrets(client: FlyClient, app: str, root: Path) -> Secrets:
    """Return the app's secrets as a plan compares them (an app not created yet has none)."""
    try:
        listed = await client.list_secrets(app)
    except FlyNotFound:
        listed = []
    fingerprint = secrets_fingerprint({s.name: s.digest for s in listed})
    return Secrets(fingerprint=fingerprint, version=known_version(root, app))


async def scale_secrets(client: FlyClient, app: str, root: Path) -> Secrets:
    """Return the app's secrets for a scale: new machines get them, none is rolled out."""
    found = await observe_secrets(client, app, root)
    return replace(found, rollout=False)
