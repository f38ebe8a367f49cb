"""The endpoints a client sees: /, /status, /records, on a primary and on a replica."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from .harness import Launcher

STATUS_FIELDS = {
    "role",
    "region",
    "release",
    "machine_id",
    "app",
    "last_seq",
    "last_write_at",
    "replication_lag_s",
    "healthy",
}


def test_primary_status_says_who_it_is(launcher: Launcher) -> None:
    app = launcher.start(region="syd", primary_region="syd", release="v2")

    resp = app.get("/status")

    assert resp.status_code == 200
    body = resp.json()
    assert body.keys() >= STATUS_FIELDS
    assert body["role"] == "primary"
    assert body["region"] == "syd"
    assert body["release"] == "v2"
    assert body["machine_id"] == app.env["FLY_MACHINE_ID"]
    assert body["app"] == "sample-app"
    assert body["last_seq"] == 0
    assert body["last_write_at"] is None
    assert body["replication_lag_s"] is None
    assert body["healthy"] is True


def test_replica_status_says_replica(launcher: Launcher) -> None:
    app = launcher.start(region="dfw", primary_region="syd")

    body = app.status()

    assert (body["role"], body["region"], body["primary_region"]) == ("replica", "dfw", "syd")
    # No upstream to pull from, so no successful pull yet: the lag is unknown, not zero.
    assert body["replication_lag_s"] is None
    assert body["healthy"] is True


def test_hello_names_region_and_release(launcher: Launcher) -> None:
    app = launcher.start(region="ams", primary_region="syd", release="v9")

    resp = app.get("/")

    assert resp.status_code == 200
    assert {"region": "ams", "release": "v9"}.items() <= resp.json().items()


def test_primary_takes_writes_in_sequence(launcher: Launcher) -> None:
    app = launcher.start()

    answers = [app.write({"n": n}) for n in range(3)]

    assert [a["seq"] for a in answers] == [1, 2, 3]
    assert {a["region"] for a in answers} == {"syd"}
    assert datetime.fromisoformat(answers[0]["at"]).tzinfo is not None
    page = app.get("/records", params={"after": 1, "limit": 1}).json()
    assert page["records"] == [{"seq": 2, "data": {"n": 1}, "at": answers[1]["at"]}]
    assert (page["last_seq"], page["role"], page["region"]) == (3, "primary", "syd")
    status = app.status()
    assert (status["last_seq"], status["last_write_at"]) == (3, answers[2]["at"])


def test_replica_refuses_writes_and_names_the_primary(launcher: Launcher) -> None:
    app = launcher.start(region="dfw", primary_region="syd")

    resp = app.post("/records", json={"data": "x"})

    assert resp.status_code == 409
    assert {"error": "not primary", "primary_region": "syd"}.items() <= resp.json().items()
    assert resp.headers["fly-replay"] == "region=syd"
    assert app.records() == []


def test_bad_requests_get_4xx(launcher: Launcher) -> None:
    app = launcher.start()

    assert app.post("/records", content=b"{not json").status_code == 400
    assert app.post("/records", json={"payload": 1}).status_code == 400
    assert app.post("/records", content=b'{"data": NaN}').status_code == 400
    assert app.get("/records", params={"after": "x"}).status_code == 400
    assert app.get("/records", params={"limit": 0}).status_code == 400
    assert app.get("/nowhere").status_code == 404
    resp = app.post("/status")
    assert resp.status_code == 405
    assert resp.headers["allow"] == "GET, HEAD"
    assert app.status()["last_seq"] == 0


def test_seq_survives_a_restart(launcher: Launcher) -> None:
    first = launcher.start()
    for n in range(3):
        first.write(n)
    assert first.stop() == 0

    second = launcher.start(data_dir=first.data_dir)

    assert second.status()["last_seq"] == 3
    assert second.write("after restart")["seq"] == 4
    assert [r["data"] for r in second.records()] == [0, 1, 2, "after restart"]


def test_absolute_data_dir_lives_under_the_local_fly_root(
    launcher: Launcher, tmp_path: Path
) -> None:
    root = tmp_path / "machine-root"
    app = launcher.start(data_dir=Path("/app/.data"), env={"LOCALFLY_ROOT": str(root)})

    app.write("on the volume")

    assert (root / "app" / ".data" / "records.db").is_file()
