"""The state directory's own files: the token (0600) and ``server.json``.

Kept apart from the server so ``control`` can read them without importing the server.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

__all__ = ["prepare_state_dir", "read_server_info"]


def prepare_state_dir(state_dir: Path) -> str:
    """Create the state dir (0700) and its token (0600, made on first start); return it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    path = state_dir / "token"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)
        token = path.read_text().strip()
        if token:
            return token
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC, 0o600)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def read_server_info(state_dir: Path) -> dict[str, Any] | None:
    """Return ``server.json`` (pid, ports, URLs), or None."""
    try:
        data = json.loads((state_dir / "server.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
