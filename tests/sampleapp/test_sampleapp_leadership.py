"""Several machines in the primary region: exactly one takes writes, the others follow it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from .harness import AppProcess, EdgeProxy, Launcher, wait_for


def start_candidate(
    launcher: Launcher,
    edge: EdgeProxy,
    *,
    data_dir: Path | None = None,
    env: dict[str, str] | None = None,
) -> AppProcess:
    """Start a syd machine of a syd-primary app that talks to the stand-in proxy."""
    return launcher.start(
        region="syd",
        primary_region="syd",
        data_dir=data_dir,
        env={"LOCALFLY_PROXY_URL": edge.url, **(env or {})},
    )


def role_is(app: AppProcess, role: str) -> dict[str, object] | None:
    """Return the app's status once it reports this role."""
    status = app.status()
    return status if status["role"] == role else None


def same_records(a: AppProcess, b: AppProcess) -> bool:
    """Say whether two apps hold the same records."""
    return a.records() == b.records()


def test_second_machine_in_the_primary_region_follows_the_first(
    launcher: Launcher, edge: EdgeProxy
) -> None:
    first = start_candidate(launcher, edge)
    wait_for(lambda: role_is(first, "primary"), what="the first machine to take writes")
    edge.route(first)
    second = start_candidate(launcher, edge)
    edge.route(first, second)

    status = wait_for(
        lambda: (s := second.status())["leader"] == first.machine_id and s,
        what="the second machine to follow the first",
    )

    assert status["role"] == "replica"
    assert status["candidate"] is True
    refused = second.post("/records", json={"data": "x"})
    assert refused.status_code == 409
    assert refused.json()["leader"] == first.machine_id
    assert refused.headers["fly-replay"] == f"instance={first.machine_id}"
    for n in range(3):
        first.write(n)
    wait_for(lambda: same_records(second, first), what="the follower to catch up")
    # A replica elsewhere pulls from the one primary, although the proxy spreads syd traffic.
    replica = launcher.start(
        region="dfw", primary_region="syd", env={"LOCALFLY_PROXY_URL": edge.url}
    )
    wait_for(lambda: same_records(replica, first), what="the dfw replica to catch up")
    assert replica.status()["leader"] == first.machine_id
    assert first.status()["role"] == "primary"


def test_follower_takes_over_and_the_old_primary_follows_it_back(
    launcher: Launcher, edge: EdgeProxy
) -> None:
    first = start_candidate(launcher, edge)
    wait_for(lambda: role_is(first, "primary"), what="the first machine to take writes")
    edge.route(first)
    second = start_candidate(launcher, edge)
    edge.route(first, second)
    for n in range(3):
        first.write(n)
    wait_for(lambda: same_records(second, first), what="the follower to catch up")

    assert first.stop() == 0
    wait_for(lambda: role_is(second, "primary"), what="the follower to take over")
    assert second.write("after the takeover")["seq"] == 4

    # The old primary comes back (same machine, same volume) and finds a primary in place.
    back = start_candidate(
        launcher, edge, data_dir=first.data_dir, env={"FLY_MACHINE_ID": first.machine_id}
    )
    edge.route(back, second)
    status = wait_for(
        lambda: (s := back.status())["leader"] == second.machine_id and s,
        what="the old primary to follow the new one",
    )
    assert status["role"] == "replica"
    wait_for(lambda: same_records(back, second), what="the old primary to catch up")
    assert back.status()["orphaned_records"] == 0


def test_two_primaries_settle_on_the_one_that_was_first(
    launcher: Launcher, edge: EdgeProxy
) -> None:
    # Neither can see the other at first (the proxy routes to nobody): both take writes.
    first = start_candidate(launcher, edge)
    wait_for(lambda: role_is(first, "primary"), what="the first machine to take writes")
    second = start_candidate(launcher, edge)
    wait_for(lambda: role_is(second, "primary"), what="the second machine to take writes")
    first.write("kept")
    second.write("split-brain write")

    edge.route(first, second)

    wait_for(lambda: role_is(second, "replica"), what="the later primary to step down")
    wait_for(lambda: same_records(second, first), what="it to follow the first")
    assert [r["data"] for r in second.records()] == ["kept"]
    assert second.status()["orphaned_records"] == 1
    assert first.status()["role"] == "primary"


def test_stopping_primary_hands_off_without_losing_writes(
    launcher: Launcher, edge: EdgeProxy
) -> None:
    first = start_candidate(launcher, edge)
    wait_for(lambda: role_is(first, "primary"), what="the first machine to take writes")
    edge.route(first)
    # A slow follower: it is behind when the primary is told to stop.
    second = start_candidate(launcher, edge, env={"SAMPLE_APP_REPLICATE_INTERVAL": "0.4"})
    edge.route(first, second)
    wait_for(lambda: second.status()["leader"] == first.machine_id, what="the follower")

    written = [first.write(n)["seq"] for n in range(20)]
    assert first.stop() == 0

    wait_for(lambda: role_is(second, "primary"), what="the follower to take over")
    assert [r["seq"] for r in second.records()] == written
    assert second.write("next")["seq"] == 21
    assert "handed off" in first.stdout()


def test_primary_that_hung_does_not_take_the_role_back(launcher: Launcher, edge: EdgeProxy) -> None:
    first = start_candidate(launcher, edge)
    wait_for(lambda: role_is(first, "primary"), what="the first machine to take writes")
    edge.route(first)
    second = start_candidate(launcher, edge)
    edge.route(first, second)
    first.write("before the hang")
    wait_for(lambda: same_records(second, first), what="the follower to catch up")

    os.kill(first.proc.pid, signal.SIGSTOP)
    try:
        edge.route(second)  # the local Fly's proxy skips a frozen machine, as here
        status = wait_for(lambda: role_is(second, "primary"), what="the follower to take over")
        assert status["term"] == 2
        second.write("while the old primary hung")
    finally:
        os.kill(first.proc.pid, signal.SIGCONT)
    edge.route(first, second)

    # It became primary earlier, but in an older term: it steps down and keeps the new write.
    wait_for(lambda: role_is(first, "replica"), what="the old primary to step down")
    wait_for(lambda: same_records(first, second), what="the old primary to catch up")
    assert second.status()["role"] == "primary"
    assert [r["data"] for r in first.records()] == ["before the hang", "while the old primary hung"]


def test_many_primaries_settle_on_one_and_replicas_find_it(
    launcher: Launcher, edge: EdgeProxy
) -> None:
    # Five machines start while the proxy can route to none of them: each takes the writes.
    machines = []
    for _ in range(5):
        app = start_candidate(launcher, edge)
        wait_for(lambda app=app: role_is(app, "primary"), what="each machine to take writes")
        machines.append(app)
    edge.route(*machines)

    def one_primary() -> str | None:
        statuses = [app.status() for app in machines]
        primaries = [s["machine_id"] for s in statuses if s["role"] == "primary"]
        leaders = {s["leader"] for s in statuses}
        return primaries[0] if len(primaries) == 1 and leaders == set(primaries) else None

    winner = wait_for(one_primary, what="one primary that all follow", timeout=20)
    # The first to claim wins (all in term 1).
    assert winner == machines[0].machine_id
    primary = machines[0]
    primary.write("after settling")
    replica = launcher.start(
        region="dfw", primary_region="syd", env={"LOCALFLY_PROXY_URL": edge.url}
    )
    wait_for(lambda: same_records(replica, primary), what="the replica to find the primary")
    for app in machines[1:]:
        wait_for(lambda app=app: same_records(app, primary), what="the followers to catch up")
