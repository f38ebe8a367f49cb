"""The deploy lock: one deploy per app, the holder named, stale locks released, live ones kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import DeployLocked
from orchestrator.execute.lock import DeployLock, lock_path

HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from orchestrator.execute.lock import DeployLock
    lock = DeployLock(Path(sys.argv[1]), "app", release="v2-abc", command="deploy")
    lock.acquire()
    print("held", flush=True)
    time.sleep(120)
    """
)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Start a process that takes the lock and keeps it; stopped by PID at teardown."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_second_deploy_fails_at_once_naming_the_holder(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    with pytest.raises(DeployLocked) as info:
        DeployLock(tmp_path, "app", release="v3", command="deploy").acquire()
    # Refused while the holder still holds it: nothing waited for the holder to let go
    # (how fast the refusal comes is measured by bench/latency.py).
    assert holder.poll() is None
    message = str(info.value)
    assert f"pid {holder.pid}" in message
    assert "v2-abc" in message
    assert info.value.holder["pid"] == holder.pid


def test_a_lock_of_a_killed_deploy_is_released(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    # The file still names the dead holder...
    assert json.loads(lock_path(tmp_path, "app").read_text())["pid"] == holder.pid
    # ...but the lock is taken over and the stale holder reported.
    with DeployLock(tmp_path, "app", release="v3") as lock:
        assert lock.stale is not None
        assert lock.stale.pid == holder.pid
        assert json.loads(lock_path(tmp_path, "app").read_text())["pid"] == os.getpid()
    assert lock_path(tmp_path, "app").read_text() == ""


def test_a_released_lock_can_be_taken_again_and_other_apps_are_independent(tmp_path: Path) -> None:
    with DeployLock(tmp_path, "app"):
        with DeployLock(tmp_path, "other-app") as other:
            assert other.held
        with pytest.raises(DeployLocked):
            DeployLock(tmp_path, "app").acquire()
    with DeployLock(tmp_path, "app") as again:
        assert again.stale is None
