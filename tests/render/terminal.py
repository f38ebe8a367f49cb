"""Run a command in a real terminal: a detached tmux session of 80x24, read with capture-pane.

Each `Terminal` has its own tmux server (its own socket name), killed when the test ends. The
pane stays after the command exits (``remain-on-exit``), so its last screen can be read.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from execute.localfleet import wait_for


class Terminal:
    """One tmux server with one 80x24 pane."""

    def __init__(self, width: int = 80, height: int = 24) -> None:
        self.socket = f"orch-test-{uuid.uuid4().hex[:10]}"
        self.width, self.height = width, height
        # Read when the server starts, so a command that ends at once still leaves its pane.
        self.config = Path(tempfile.mkdtemp(prefix="orch-tmux-")) / "tmux.conf"
        self.config.write_text("set -g remain-on-exit on\nset -g history-limit 5000\n")

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-u", "-f", str(self.config), "-L", self.socket, *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout

    def run(self, argv: list[str], *, cwd: Path, env: Mapping[str, str]) -> None:
        """Start ``argv`` in the pane, in ``cwd``, with exactly ``env`` (plus TERM)."""
        command = " ".join(
            [
                "env -i",
                *(shlex.quote(f"{k}={v}") for k, v in env.items()),
                "TERM=xterm-256color",
                "LANG=C.UTF-8",
                *(shlex.quote(a) for a in argv),
            ]
        )
        self.tmux(
            "new-session", "-d", "-x", str(self.width), "-y", str(self.height),
            "-c", str(cwd), "-s", "t", command,
        )  # fmt: skip

    def screen(self, *, joined: bool = False) -> str:
        """Return what the pane shows and its history; ``joined`` rejoins wrapped lines."""
        return self.tmux("capture-pane", "-p", "-S", "-", *(["-J"] if joined else []), "-t", "t")

    def finished(self) -> bool:
        return self.tmux("display-message", "-p", "-t", "t", "#{pane_dead}").strip() == "1"

    def wait_finished(self, timeout: float = 240) -> str:
        wait_for(self.finished, timeout=timeout, every=0.1, what="the command in tmux to end")
        return self.screen()

    def close(self) -> None:
        subprocess.run(
            ["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30, check=False
        )
        shutil.rmtree(self.config.parent, ignore_errors=True)


@contextmanager
def terminal(width: int = 80, height: int = 24) -> Iterator[Terminal]:
    """Yield a fresh 80x24 tmux terminal; its server is killed afterwards, whatever happened."""
    term = Terminal(width, height)
    try:
        yield term
    finally:
        term.close()


def unwrapped(term: Terminal) -> bool:
    """Tell whether no line on the screen was wrapped by the terminal (capture -J changes none)."""
    # Blank lines are left out: -J also trims the blank tail of the screen differently.
    plain = [line.rstrip() for line in term.screen().splitlines() if line.strip()]
    joined = [line.rstrip() for line in term.screen(joined=True).splitlines() if line.strip()]
    return plain == joined
