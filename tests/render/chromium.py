"""Render an HTML file in headless Chromium (the Debian package ``chromium``) to a PNG.

Chromium runs with a fresh profile, no network features and no sandbox (tests run as root),
in its own process group, which is killed by its id if it overruns.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium() -> str:
    """Return the Chromium binary; fail (never skip) when it is missing: .ci/run installs it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is not installed: apt-get install -y chromium (as .ci/run does)"
    return found


def screenshot(page: Path, out: Path, *, width: int = 1000, height: int = 1400) -> Path:
    """Render ``page`` to ``out`` (PNG) and return ``out``."""
    profile = out.parent / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            chromium(),
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={out}",
            page.resolve().as_uri(),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert out.is_file(), f"chromium wrote no screenshot: {err.decode(errors='replace')[-2000:]}"
    return out
