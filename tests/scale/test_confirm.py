"""Large and destructive scales ask first and say what they cost; the region file keeps step.

- A scale that adds more than 10 machines to a region, more than doubles it, or destroys any,
  needs ``--yes`` when nobody can be asked (no terminal): without it ``invoke scale`` exits 2
  with one line naming ``--yes``, the machine counts and the monthly cost change from Fly's
  published prices, and changes nothing (files or fleet).
- On a terminal (a real pseudo-terminal, 80x24) it asks instead, stating the monthly cost
  change: ``n`` changes nothing, ``y`` applies the scale.
- The region file is written only once the fleet has reached it: a scale interrupted with
  Ctrl-C leaves the file as it was, and the next deploy of the region converges the fleet back
  to it (keeping the volume of any machine it removes).
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest
from execute.localfleet import INVOKE, REPO, LocalFleet, wait_for

from orchestrator.pricing import format_usd, guest_per_month, volumes_per_month

pytestmark = pytest.mark.timeout(300)


def _region_files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "regions").iterdir())}


def _mutating_since(fleet: LocalFleet, mark: int) -> list[dict[str, object]]:
    return [
        r
        for r in fleet.requests_log()[mark:]
        if str(r.get("path", "")).startswith("/v1") and r.get("method") not in ("GET", "HEAD")
    ]


@pytest.mark.parametrize(
    ("count", "added"),
    [("500", 498), ("5", 3), ("1", -1)],
    ids=["adds-many", "more-than-doubles", "destroys"],
)
def test_without_yes_a_large_or_destructive_scale_is_refused_with_its_cost(
    fleet: LocalFleet, count: str, added: int
) -> None:
    files = _region_files(fleet.root)
    mark = len(fleet.requests_log())
    proc = fleet.invoke("scale", "--region", "syd", "--count", count)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    # The refusal is one line; a scale of the primary to one machine is also warned about.
    lines = [x for x in proc.stderr.strip().splitlines() if not x.startswith("! warning")]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: --yes: ")
    assert f"syd 2 → {count} machines ({added:+d})" in lines[0]
    # shared-cpu-1x 256 MB machines with 1 GB volumes in syd, at Fly's syd prices.
    per_machine = guest_per_month("shared", 1, 256, region="syd") + volumes_per_month(1)
    if added > 0:
        assert f"{format_usd(per_machine * added, signed=True)}/month" in lines[0]
    else:
        # A destroyed machine's volume is kept (and billed): only the machine is saved.
        saved = guest_per_month("shared", 1, 256, region="syd")
        assert f"{format_usd(-saved, signed=True)}/month" in lines[0]
        assert "volumes kept" in lines[0]
    assert "Traceback" not in proc.stderr
    assert _region_files(fleet.root) == files
    assert _mutating_since(fleet, mark) == []
    assert len(fleet.machines("syd")) == 2


def test_a_dry_run_never_asks_and_writes_nothing(fleet: LocalFleet) -> None:
    files = _region_files(fleet.root)
    mark = len(fleet.requests_log())
    dry = fleet.invoke("scale", "--region", "syd", "--count", "500", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert _region_files(fleet.root) == files
    assert _mutating_since(fleet, mark) == []


def test_an_interrupted_scale_leaves_the_file_and_a_deploy_converges_back(
    fleet: LocalFleet,
) -> None:
    files = _region_files(fleet.root)
    before = {m["id"] for m in fleet.machines("syd")}
    volumes_before = {v["id"] for v in fleet.volumes("syd")}
    mark = len(fleet.requests_log())
    proc = fleet.spawn("scale", "--region", "syd", "--count", "4", "--yes", capture=True)
    try:
        wait_for(
            lambda: (
                any(r.get("operation") == "Machines_create" for r in fleet.requests_log()[mark:])
                or proc.poll() is not None
            ),
            timeout=120,
            what="the scale to create a machine",
        )
        assert proc.poll() is None, "the scale ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out + err
    assert err.strip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in err
    # The file is never ahead of the fleet: it still says 2.
    assert _region_files(fleet.root) == files

    again = fleet.invoke("deploy", "--region", "syd", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    after = fleet.machines("syd")
    # Slots 1 and 2 keep their machines; whatever the interrupted scale created is gone.
    assert {m["id"] for m in after} == before
    # Nothing lost: every volume that existed is still there (extra ones are kept, unattached).
    assert volumes_before <= {v["id"] for v in fleet.volumes("syd")}
    status = fleet.invoke("status", "--region", "syd")
    assert status.returncode == 0, status.stdout + status.stderr


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _on_a_terminal(fleet: LocalFleet, args: list[str], answer: str) -> tuple[int, str]:
    """Run ``invoke ARGS`` on a pseudo-terminal (80x24), answer its question; return its output.

    What it printed is returned with colours taken out and lines joined by single spaces (rich
    wraps at 80 columns).
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {k: v for k, v in fleet._env().items() if k != "COLUMNS"}
    proc = subprocess.Popen(
        [str(INVOKE), "--search-root", str(REPO), *args],
        cwd=fleet.root,
        env={**env, "TERM": "xterm-256color"},
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    seen = b""
    answered = False
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)  # waits on output, with a deadline
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the terminal closed: the command ended
                    chunk = b""
                if not chunk:
                    break
                seen += chunk
            if not answered and "[y/N]" in _ANSI.sub("", seen.decode("utf-8", "replace")):
                os.write(master, answer.encode() + b"\r")
                answered = True
            if not ready and proc.poll() is not None:
                break
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = _ANSI.sub("", seen.decode("utf-8", "replace"))
    assert answered, text
    return code, " ".join(text.split())


def test_on_a_terminal_the_scale_asks_with_its_cost_and_only_y_applies_it(
    fleet: LocalFleet,
) -> None:
    files = _region_files(fleet.root)
    machines = {m["id"] for m in fleet.machines("syd")}
    assert len(machines) == 2
    saved = guest_per_month("shared", 1, 256, region="syd")
    cost = f"{format_usd(-saved, signed=True)}/month"

    mark = len(fleet.requests_log())
    code, said = _on_a_terminal(fleet, ["scale", "--region", "syd", "--count", "1"], "n")
    assert "This scale needs confirmation" in said, said
    assert "syd 2 → 1 machines (-1)" in said, said
    assert cost in said, said
    assert "Go ahead? [y/N]" in said
    assert code == 2, said
    assert "not confirmed; nothing was changed" in said
    assert "Traceback" not in said
    assert _region_files(fleet.root) == files
    assert _mutating_since(fleet, mark) == []
    assert {m["id"] for m in fleet.machines("syd")} == machines

    try:
        code, said = _on_a_terminal(fleet, ["scale", "--region", "syd", "--count", "1"], "y")
        assert code == 0, said
        assert cost in said, said
        assert len(fleet.machines("syd")) == 1
        assert b"count = 1" in (fleet.root / "regions" / "syd.toml").read_bytes()
    finally:
        # Back to the module's size: one machine added needs no confirmation.
        back = fleet.invoke("scale", "--region", "syd", "--count", "2")
        assert back.returncode == 0, back.stdout + back.stderr
    assert _region_files(fleet.root) == files
