"""The records database on the volume: a copy taken while the primary writes is usable."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path

import httpx

from .harness import Launcher, wait_for


def read_seqs(data_dir: Path) -> list[int]:
    """Open a copied records.db as SQLite would after a fork; check it and return its seqs."""
    conn = sqlite3.connect(data_dir / "records.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return [row[0] for row in conn.execute("SELECT seq FROM records ORDER BY seq")]
    finally:
        conn.close()


def test_copy_taken_during_writes_is_consistent(launcher: Launcher, tmp_path: Path) -> None:
    primary = launcher.start()
    stop = threading.Event()
    failures: list[int] = []

    def write_continuously() -> None:
        with httpx.Client(base_url=primary.url, timeout=10.0, trust_env=False) as client:
            n = 0
            while not stop.is_set():
                resp = client.post("/records", json={"data": {"n": n, "pad": "x" * 300}})
                if resp.status_code != 201:
                    failures.append(resp.status_code)
                n += 1

    writer = threading.Thread(target=write_continuously, daemon=True)
    writer.start()
    copies = []
    try:
        for i in range(1, 6):
            wait_for(
                lambda i=i: primary.status()["last_seq"] >= 15 * i,
                what=f"{15 * i} records",
            )
            copy = tmp_path / f"fork-{i}"
            shutil.copytree(primary.data_dir, copy)
            copies.append(copy)
    finally:
        stop.set()
        writer.join(10)
    assert not failures

    # Part of each copy's state is only in the WAL: that is what the test is about.
    assert (copies[0] / "records.db-wal").stat().st_size > 0
    # The app starts on an untouched copy and serves exactly what the copy holds.
    forked = launcher.start(region="dfw", primary_region="syd", data_dir=copies[0])
    served = [r["seq"] for r in forked.records()]
    assert served == list(range(1, forked.status()["last_seq"] + 1))
    assert len(served) >= 15
    for copy in copies[1:]:
        seqs = read_seqs(copy)
        assert seqs == list(range(1, len(seqs) + 1))
        assert len(seqs) >= 15


def test_clean_stop_leaves_a_single_database_file(launcher: Launcher) -> None:
    app = launcher.start()
    app.write("durable")

    assert app.stop() == 0

    assert sorted(p.name for p in app.data_dir.iterdir()) == ["records.db"]
    assert read_seqs(app.data_dir) == [1]


def test_replica_sets_a_damaged_database_aside(launcher: Launcher, tmp_path: Path) -> None:
    data = tmp_path / "damaged"
    data.mkdir()
    (data / "records.db").write_bytes(b"this is not an SQLite database" * 200)

    replica = launcher.start(region="dfw", primary_region="syd", data_dir=data)

    assert replica.status()["last_seq"] == 0
    assert [p.name for p in data.glob("records.db.corrupt-*")]
    assert "moved aside" in replica.stdout()


def test_primary_refuses_a_damaged_database(launcher: Launcher, tmp_path: Path) -> None:
    data = tmp_path / "damaged"
    data.mkdir()
    (data / "records.db").write_bytes(b"this is not an SQLite database" * 200)
    env = launcher.env(region="syd", primary_region="syd", release="v1", data_dir=data, extra=None)

    proc, _, err = launcher.spawn(env)

    assert proc.wait(10) == 1
    assert "will not start on a damaged database" in err.read_text()
    assert (data / "records.db").is_file()
