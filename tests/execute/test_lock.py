"""The deploy lock on Fly: one holder at a time from any host, named, and never stuck.

Every test talks HTTP to a real local Fly. Holders that must die, freeze or be broken run as
child processes (``_HOLDER``), each with its own project directory, the way two hosts would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.errors import DeployLocked, FlyServerError
from orchestrator.execute.lock import (
    HOLDER_KEY,
    DeployLock,
    force_unlock,
    lock_machine_name,
    read_lock,
)
from orchestrator.fly.client import CONTROL_ROLE_KEY, LOCK_ROLE
from orchestrator.localfly import control
from orchestrator.localfly.control import Endpoint
from orchestrator.settings import Settings, Token

from .localfleet import kill_leftovers, wait_for

FLY_TOML = """app = "{app}"
primary_region = "syd"
[build]
  image = "registry.fly.io/sample-app:v1"
"""

# A holder in its own process: takes the lock, says HELD, waits; prints LOST when its
# heartbeat finds the lock gone. ``HOST`` pretends to be another machine (a CI runner).
_HOLDER = r"""
import asyncio, json, socket, sys, time
if len(sys.argv) > 5 and sys.argv[5]:
    socket.gethostname = lambda: sys.argv[5]
from pathlib import Path
from orchestrator.execute.lock import DeployLock, DeployLockLost
from orchestrator.settings import Settings, Token

root, app, url, ttl = Path(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
token = sys.stdin.readline().strip()
settings = Settings(root=root, app=app, backend="fly", base_url=url, token=Token(token),
                    lock_ttl_s=ttl)

async def main():
    with DeployLock(settings, app, release="v2-abc", command="deploy"):
        print("HELD", time.time(), flush=True)
        await asyncio.sleep(600)

try:
    asyncio.run(main())
except DeployLockLost as exc:
    print("LOST", time.time(), exc.reason, flush=True)
    sys.exit(3)
"""


def _project(tmp_path: Path, name: str, app: str) -> Path:
    root = tmp_path / name
    root.mkdir()
    (root / "fly.toml").write_text(FLY_TOML.format(app=app))
    return root


def _settings(root: Path, app: str, ep: Endpoint, ttl: float = 30.0) -> Settings:
    return Settings(
        root=root,
        app=app,
        backend="fly",
        base_url=ep.api_url,
        token=Token(ep.token),
        lock_ttl_s=ttl,
    )


def _create_app(ep: Endpoint, app: str) -> None:
    resp = httpx.post(
        f"{ep.api_url}/v1/apps", json={"name": app, "org_slug": "personal"}, headers=ep.headers
    )
    assert resp.status_code == 201, resp.text


def _all_machines(ep: Endpoint, app: str) -> list[dict[str, object]]:
    resp = httpx.get(f"{ep.api_url}/v1/apps/{app}/machines", headers=ep.headers)
    resp.raise_for_status()
    return [m for m in resp.json() if m["state"] != "destroyed"]


class Holder:
    """A lock holder in a child process, stopped by PID at the end."""

    def __init__(
        self, root: Path, app: str, ep: Endpoint, *, ttl: float = 30.0, host: str = ""
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(root), app, ep.api_url, str(ttl), host],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write(ep.token + "\n")
        self.proc.stdin.close()
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def said(self, word: str) -> str | None:
        return next((line for line in self.lines if line.startswith(word)), None)

    def wait_said(self, word: str, timeout: float = 30.0) -> float:
        line = wait_for(lambda: self.said(word), timeout=timeout, what=f"holder to say {word}")
        return float(line.split()[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                os.kill(self.proc.pid, sig)
        self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def app(localfly: Endpoint) -> str:
    name = f"lock-{uuid.uuid4().hex[:8]}"
    _create_app(localfly, name)
    return name


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for holder in started:
        holder.stop()


def test_a_second_host_is_refused_at_once_with_the_holder_named(
    tmp_path: Path, localfly: Endpoint, app: str, holders: list[Holder]
) -> None:
    a = Holder(_project(tmp_path, "a", app), app, localfly, host="ci-runner-7")
    holders.append(a)
    a.wait_said("HELD")
    with pytest.raises(DeployLocked) as info:
        DeployLock(_settings(_project(tmp_path, "b", app), app, localfly), app).acquire()
    message = str(info.value)
    assert "deploy of v2-abc" in message
    assert "ci-runner-7" in message
    assert f"pid {a.proc.pid}" in message
    assert info.value.holder["host"] == "ci-runner-7"
    # The refused host changed nothing: still one lock machine, still A's lease.
    state = read_lock(_settings(tmp_path / "a", app, localfly), app)
    assert state.holder is not None
    assert state.holder.pid == a.proc.pid


def test_the_first_lock_makes_one_lock_machine_that_the_fleet_does_not_see(
    tmp_path: Path, localfly: Endpoint, app: str
) -> None:
    roots = [_project(tmp_path, f"h{i}", app) for i in range(4)]
    won: list[DeployLock] = []
    refused: list[str] = []
    barrier = threading.Barrier(len(roots))

    def race(root: Path) -> None:
        lock = DeployLock(_settings(root, app, localfly), app)
        barrier.wait()
        try:
            lock.acquire()
            won.append(lock)
        except DeployLocked as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=race, args=(r,)) for r in roots]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert len(won) == 1, refused
        assert len(refused) == len(roots) - 1
        machines = _all_machines(localfly, app)
        assert [m["name"] for m in machines] == [lock_machine_name(app)]
        assert machines[0]["state"] != "started"  # it never runs
        assert machines[0]["config"]["metadata"][CONTROL_ROLE_KEY] == LOCK_ROLE  # type: ignore[index]
    finally:
        for lock in won:
            lock.release()

    import asyncio

    from orchestrator.fly.client import FlyClient

    async def fleet_view() -> list[str]:
        async with FlyClient(localfly.api_url, localfly.token) as client:
            return [m.id for m in await client.list_machines(app)]

    assert asyncio.run(fleet_view()) == []


def test_a_released_lock_is_free_and_keeps_no_holder(
    tmp_path: Path, localfly: Endpoint, app: str
) -> None:
    a = _settings(_project(tmp_path, "a", app), app, localfly)
    with DeployLock(a, app, command="scale") as lock:
        assert lock.held
        assert read_lock(a, app).holder is not None
    state = read_lock(a, app)
    assert not state.held
    assert state.last_holder is None
    with DeployLock(_settings(_project(tmp_path, "b", app), app, localfly), app) as again:
        assert again.stale is None


def test_a_holder_killed_on_this_host_is_taken_over_at_once(
    tmp_path: Path, localfly: Endpoint, app: str, holders: list[Holder]
) -> None:
    a = Holder(_project(tmp_path, "a", app), app, localfly)
    holders.append(a)
    a.wait_said("HELD")
    os.kill(a.proc.pid, signal.SIGKILL)
    a.proc.wait(timeout=10)
    with DeployLock(_settings(_project(tmp_path, "b", app), app, localfly), app) as lock:
        assert lock.stale is not None
        assert lock.stale.pid == a.proc.pid


def test_a_holder_killed_elsewhere_blocks_until_its_heartbeat_expires(
    tmp_path: Path, localfly: Endpoint, app: str, holders: list[Holder]
) -> None:
    a = Holder(_project(tmp_path, "a", app), app, localfly, ttl=3, host="ci-runner-9")
    holders.append(a)
    a.wait_said("HELD")
    os.kill(a.proc.pid, signal.SIGKILL)
    a.proc.wait(timeout=10)
    b = _settings(_project(tmp_path, "b", app), app, localfly)
    with pytest.raises(DeployLocked, match="ci-runner-9"):
        DeployLock(b, app).acquire()
    wait_for(lambda: not read_lock(b, app).held, timeout=15, what="the dead holder's lease")
    with DeployLock(b, app) as lock:
        assert lock.stale is not None
        assert lock.stale.host == "ci-runner-9"


def test_a_frozen_holder_loses_the_lock_and_stops_never_two_holders(
    tmp_path: Path, localfly: Endpoint, app: str, holders: list[Holder]
) -> None:
    a = Holder(_project(tmp_path, "a", app), app, localfly, ttl=3)
    holders.append(a)
    a.wait_said("HELD")
    os.kill(a.proc.pid, signal.SIGSTOP)  # alive but silent: its heartbeat stops
    b = _settings(_project(tmp_path, "b", app), app, localfly, ttl=30)
    wait_for(lambda: not read_lock(b, app).held, timeout=15, what="the frozen holder's lease")
    with DeployLock(b, app) as lock:
        os.kill(a.proc.pid, signal.SIGCONT)
        a.wait_said("LOST", timeout=15)
        assert a.proc.wait(timeout=10) == 3
        # B still holds: A's renewal did not take the lease back.
        state = read_lock(b, app)
        assert state.holder is not None
        assert lock.holder is not None
        assert state.holder.id == lock.holder.id
        assert lock.held


def test_unlock_force_breaks_a_live_holder_which_stops(
    tmp_path: Path, localfly: Endpoint, app: str, holders: list[Holder]
) -> None:
    a = Holder(_project(tmp_path, "a", app), app, localfly, ttl=3, host="laptop-2")
    holders.append(a)
    a.wait_said("HELD")
    b = _settings(_project(tmp_path, "b", app), app, localfly)
    broken = force_unlock(b, app)
    assert broken.holder is not None
    assert broken.holder.host == "laptop-2"
    assert broken.holder.release == "v2-abc"
    with DeployLock(b, app) as lock:
        a.wait_said("LOST", timeout=15)
        assert lock.held
    meta = httpx.get(
        f"{localfly.api_url}/v1/apps/{app}/machines/{broken.machine_id}/metadata",
        headers=localfly.headers,
    ).json()
    assert HOLDER_KEY not in meta


def test_unlock_force_on_a_free_lock_breaks_nothing(
    tmp_path: Path, localfly: Endpoint, app: str
) -> None:
    b = _settings(_project(tmp_path, "b", app), app, localfly)
    state = force_unlock(b, app)
    assert state.machine_id is None
    assert not state.held


def test_the_local_fly_restarted_while_held_never_gives_two_holders(
    tmp_path: Path, holders: list[Holder]
) -> None:
    state_dir = tmp_path / "fly"
    state_dir.mkdir(mode=0o700)
    ep = control.ensure_running(state_dir)
    try:
        app = f"lock-{uuid.uuid4().hex[:8]}"
        _create_app(ep, app)
        a = Holder(_project(tmp_path, "a", app), app, ep, ttl=4)
        holders.append(a)
        a.wait_said("HELD")
        control.stop(state_dir)
        ep = control.ensure_running(state_dir)
        b = _settings(_project(tmp_path, "b", app), app, ep)
        # The lease is Fly's state: it outlived the restart, and A is still named.
        with pytest.raises(DeployLocked, match=f"pid {a.proc.pid}"):
            DeployLock(b, app).acquire()
        lost_at = a.wait_said("LOST", timeout=20)
        wait_for(lambda: not read_lock(b, app).held, timeout=20, what="A's lease to lapse")
        with DeployLock(b, app) as lock:
            got_at = time.time()
            assert lock.held
        assert lost_at <= got_at
    finally:
        control.stop(state_dir)
        kill_leftovers(state_dir)


def test_an_outage_of_the_lock_machines_region_freezes_the_lock_without_a_second_holder(
    tmp_path: Path, localfly: Endpoint, app: str, holders: list[Holder]
) -> None:
    a = Holder(_project(tmp_path, "a", app), app, localfly, ttl=3)
    holders.append(a)
    a.wait_said("HELD")
    b = _settings(_project(tmp_path, "b", app), app, localfly)
    listed = httpx.get(f"{localfly.api_url}/v1/apps/{app}/machines", headers=localfly.headers)
    (region,) = {m["region"] for m in listed.json() if m["name"] == f"{app}-deploy-lock"}
    # The lock machine keeps out of the fleet's regions (syd is fly.toml's primary region).
    assert region != "syd"
    down = httpx.post(f"{localfly.api_url}/_localfly/outage/{region}", headers=localfly.headers)
    assert down.status_code == 200, down.text
    try:
        # Past the TTL with no renewal possible: nobody else gets the lock meanwhile (Fly
        # cannot act on the machine for them either).
        wait_for(lambda: read_lock(b, app).lease is None, timeout=20, what="A's lease to lapse")
        with pytest.raises(FlyServerError, match="unavailable"):
            DeployLock(b, app).acquire()
    finally:
        up = httpx.delete(
            f"{localfly.api_url}/_localfly/outage/{region}", headers=localfly.headers
        )
        assert up.status_code == 200, up.text
    # Back up: A's next renewal finds its own record intact and keeps the lock.
    wait_for(lambda: read_lock(b, app).held, timeout=20, what="A to renew after the outage")
    state = read_lock(b, app)
    assert state.holder is not None
    assert state.holder.pid == a.proc.pid
    assert a.said("LOST") is None
    with pytest.raises(DeployLocked):
        DeployLock(b, app).acquire()
