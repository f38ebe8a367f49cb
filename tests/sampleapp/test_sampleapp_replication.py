"""Replicas follow the primary through the edge proxy, from scratch or from a fork."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from .harness import AppProcess, EdgeProxy, Launcher, wait_for


def start_replica(launcher: Launcher, edge: EdgeProxy, **kwargs: Any) -> AppProcess:
    """Start a dfw replica of a syd primary that pulls through the stand-in proxy."""
    env = {"LOCALFLY_PROXY_URL": edge.url, **kwargs.pop("env", {})}
    return launcher.start(region="dfw", primary_region="syd", env=env, **kwargs)


def caught_up(replica: AppProcess, primary: AppProcess) -> bool:
    """Say whether the replica holds exactly the primary's records."""
    return replica.records() == primary.records()


def test_replica_catches_up_with_the_same_seqs(launcher: Launcher, edge: EdgeProxy) -> None:
    primary = launcher.start(region="syd", primary_region="syd")
    edge.route(primary)
    replica = start_replica(launcher, edge)

    written = [primary.write({"n": n}) for n in range(5)]

    wait_for(lambda: caught_up(replica, primary), what="the replica to catch up")
    assert [r["seq"] for r in replica.records()] == [w["seq"] for w in written]
    status = replica.status()
    assert status["last_seq"] == 5
    assert status["last_write_at"] == written[-1]["at"]
    # Seconds since the last good pull, which came after the replica started (how far
    # behind a replica runs is measured by bench/latency.py).
    assert status["replication_lag_s"] is not None
    assert 0 <= status["replication_lag_s"] <= status["uptime_s"]
    # The pulls went to the proxy as an app request that prefers the primary's region.
    assert edge.seen
    assert all(h["host"] == "sample-app.fly.dev" for h in edge.seen)
    assert all(h["fly-prefer-region"] == "syd" for h in edge.seen)


@pytest.mark.parametrize("answer_from", ["another region", "a replica in the primary region"])
def test_replica_refuses_records_not_from_the_primary(
    launcher: Launcher, edge: EdgeProxy, answer_from: str
) -> None:
    primary = launcher.start(region="syd", primary_region="syd")
    primary.write("only on the primary")
    if answer_from == "another region":
        edge.route(primary)
        edge.region = "ams"  # the proxy says the answer came from ams
    else:
        # Mid-promotion: a syd machine still configured with PRIMARY_REGION=ams is a replica.
        copy = primary.data_dir.parent / "stale-copy"
        shutil.copytree(primary.data_dir, copy)
        stale = launcher.start(region="syd", primary_region="ams", data_dir=copy)
        edge.route(stale)
    replica = start_replica(launcher, edge)

    status = wait_for(
        lambda: (s := replica.status())["replication"]["pulls_failed"] >= 3 and s,
        what="the replica to refuse a few pulls",
    )

    assert status["last_seq"] == 0
    assert "refused" in status["replication"]["last_error"]
    assert status["replication_lag_s"] is None

    edge.route(primary)
    edge.region = None
    wait_for(lambda: caught_up(replica, primary), what="the replica to catch up")


def test_forked_replica_continues_from_the_fork_point(launcher: Launcher, edge: EdgeProxy) -> None:
    primary = launcher.start(region="syd", primary_region="syd")
    edge.route(primary)
    for n in range(3):
        primary.write(n)
    fork = primary.data_dir.parent / "fork"
    # A volume fork copies the directory while the primary keeps running.
    shutil.copytree(primary.data_dir, fork)
    edge.route()  # hold replication back, to see the fork's own contents first

    replica = start_replica(launcher, edge, data_dir=fork)

    assert replica.status()["last_seq"] == 3
    assert replica.records() == primary.records()
    primary.write(3)
    edge.route(primary)
    wait_for(lambda: caught_up(replica, primary), what="the forked replica to catch up")
    # Only what the fork lacked was pulled: every pull started at the fork point or later.
    paths = [h[":path"] for h in edge.seen]
    assert paths
    assert not [p for p in paths if "after=0&" in p or "after=1&" in p], paths


def test_promoted_replica_writes_after_its_own_last_seq(
    launcher: Launcher, edge: EdgeProxy
) -> None:
    primary = launcher.start(region="syd", primary_region="syd")
    edge.route(primary)
    replica = start_replica(launcher, edge)
    for n in range(4):
        primary.write(n)
    wait_for(lambda: caught_up(replica, primary), what="the replica to catch up")
    assert replica.stop() == 0

    # The machine is updated with PRIMARY_REGION=dfw, which restarts it.
    promoted = launcher.start(region="dfw", primary_region="dfw", data_dir=replica.data_dir)

    assert promoted.status()["role"] == "primary"
    assert promoted.write("first write on dfw")["seq"] == 5


def test_old_primary_sets_aside_what_the_new_primary_never_had(
    launcher: Launcher, edge: EdgeProxy
) -> None:
    old = launcher.start(region="syd", primary_region="syd")
    for n in range(3):
        old.write(f"kept {n}")
    dfw_volume = old.data_dir.parent / "dfw-volume"
    shutil.copytree(old.data_dir, dfw_volume)
    for n in range(2):
        old.write(f"lost {n}")  # written after the last replication: the failover loses them
    assert old.stop() == 0

    new = launcher.start(region="dfw", primary_region="dfw", data_dir=dfw_volume)
    new.write("new 4")
    new.write("new 5")
    new.write("new 6")
    edge.route(new)
    rejoined = launcher.start(
        region="syd",
        primary_region="dfw",
        data_dir=old.data_dir,
        env={"LOCALFLY_PROXY_URL": edge.url},
    )

    wait_for(lambda: caught_up(rejoined, new), what="the old primary to follow the new one")
    assert [r["data"] for r in rejoined.records()] == [
        "kept 0",
        "kept 1",
        "kept 2",
        "new 4",
        "new 5",
        "new 6",
    ]
    assert rejoined.status()["orphaned_records"] == 2
    assert "set aside 2 record(s)" in rejoined.stdout()
