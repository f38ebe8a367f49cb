"""`invoke volumes` and `invoke volumes prune` on a real local Fly.

One story on one fleet: syd deployed with two machines and some records, scaled down to one
(the second machine's volume is kept), listed with why it was kept, then pruned: refused
without a terminal or ``--yes``, refused while it holds a record the primary lacks, destroyed
only with ``--force``. ``prune`` is a word after ``volumes``; invoke's ``volumes.prune`` is the
same task.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from execute.localfleet import INVOKE, REPO, LocalFleet, copy_fleet, wait_for

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    """Deploy syd (two machines), write records, scale it down to one machine."""
    local = LocalFleet.start(copy_fleet(tmp_path_factory.mktemp("volumes") / "fleet"))
    try:
        first = local.invoke("deploy", "--region", "syd")
        assert first.returncode == 0, first.stdout + first.stderr
        for i in range(3):
            local.write_record(f"before-scale-{i}")
        down = local.invoke("scale", "--region", "syd", "--count", "1", "--yes")
        assert down.returncode == 0, down.stdout + down.stderr
        yield local
    finally:
        local.stop()


def _listing(fleet: LocalFleet) -> dict[str, Any]:
    proc = fleet.invoke("volumes", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def _kept(fleet: LocalFleet) -> dict[str, Any]:
    [volume] = [v for v in _listing(fleet)["volumes"] if v["kept"] is not None]
    return volume


def test_the_list_says_why_a_volume_was_kept_and_since_when(fleet: LocalFleet) -> None:
    volumes = _listing(fleet)["volumes"]
    kept = _kept(fleet)
    text = fleet.invoke("volumes", env={"COLUMNS": "80"})

    assert len(volumes) == 2
    assert kept["region"] == "syd"
    assert kept["kept"]["reason"] == "scale-down"
    assert kept["kept"]["since"].startswith("20")
    assert isinstance(kept["kept"]["run"], int)
    assert isinstance(kept["bytes_used"], int)
    assert kept["bytes_used"] > 0
    assert text.returncode == 0, text.stderr
    assert "kept: scale-down" in text.stdout
    assert all(len(line) <= 80 for line in text.stdout.splitlines()), text.stdout
    assert "1 unattached volume(s), 1 GB" in text.stdout


def test_prune_flags_without_prune_are_refused_all_at_once(fleet: LocalFleet) -> None:
    before = len(fleet.mutating_requests())
    volumes = {v["id"] for v in fleet.volumes("syd")}

    proc = fleet.invoke("volumes", "--older-than", "1s", "--yes", "--force")

    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: --older-than: only with `invoke volumes prune`",
        "error: --yes: only with `invoke volumes prune`",
        "error: --force: only with `invoke volumes prune`",
    ]
    assert {v["id"] for v in fleet.volumes("syd")} == volumes
    assert len(fleet.mutating_requests()) == before


def test_prune_without_a_terminal_needs_yes_and_destroys_nothing(fleet: LocalFleet) -> None:
    kept = _kept(fleet)

    proc = fleet.invoke("volumes", "prune")

    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: --yes: no terminal to confirm on: pass --yes to destroy 1 volume(s)"
    )
    assert kept["id"] in {v["id"] for v in fleet.volumes("syd")}


def test_prune_older_than_spares_a_recent_volume(fleet: LocalFleet) -> None:
    proc = fleet.invoke("volumes", "--older-than", "7d", "prune", "--yes")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nothing to prune" in proc.stdout
    assert len(fleet.volumes("syd")) == 2


def test_prune_on_a_terminal_asks_and_no_keeps_the_volume(fleet: LocalFleet) -> None:
    from render.terminal import terminal

    kept = _kept(fleet)
    env = {k: v for k in ("PATH", "HOME") if (v := os.environ.get(k))}
    with terminal(80, 24) as term:
        argv = [str(INVOKE), "--search-root", str(REPO), "volumes", "prune"]
        term.run(argv, cwd=fleet.root, env=env)
        wait_for(
            lambda: "Destroy 1 volume(s)? [y/N]" in term.screen(),
            timeout=120,
            every=0.05,
            what="the question",
        )
        term.tmux("send-keys", "-t", "t", "n", "Enter")
        screen = term.wait_finished()

    assert kept["id"] in screen
    assert "destroyed" not in screen
    assert kept["id"] in {v["id"] for v in fleet.volumes("syd")}


def test_prune_refuses_a_volume_with_records_the_primary_lacks_unless_forced(
    fleet: LocalFleet,
) -> None:
    kept = _kept(fleet)
    # What an old primary's volume holds after a fail-over lost its last writes.
    db = sqlite3.connect(fleet.state_dir / "volumes" / kept["id"] / "data" / "records.db")
    try:
        with db:
            db.execute(
                "INSERT INTO records (seq, data, at) VALUES (999, 'lost-write', '2026-01-01')"
            )
    finally:
        db.close()

    refused = fleet.invoke("volumes", "prune", "--yes", "--json")
    forced = fleet.invoke("volumes.prune", "--yes", "--force", "--json")

    assert refused.returncode == 0, refused.stdout + refused.stderr
    assert json.loads(refused.stdout) == {"destroyed": [], "refused": [kept["id"]]}
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert json.loads(forced.stdout) == {"destroyed": [kept["id"]], "refused": []}
    assert kept["id"] not in {v["id"] for v in fleet.volumes("syd")}
    assert len(fleet.volumes("syd")) == 1


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["volumes", "prune", "--older-than", "soon"], "--older-than"),
        (["volumes.prune", "--older-than", "soon"], "--older-than"),
        (["volumes", "--region", "xyz"], "--region"),
    ],
)
def test_bad_flags_exit_2_in_one_line(fleet: LocalFleet, args: list[str], flag: str) -> None:
    before = len(fleet.mutating_requests())

    proc = fleet.invoke(*args)

    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {flag}: ")
    assert len(fleet.mutating_requests()) == before
