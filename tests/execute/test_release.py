"""fly.toml's ``[deploy] release_command``, end to end with the real ``invoke`` and the local Fly.

The sample app's ``migrate`` is the release command: it runs on a temporary machine in the
primary region (no volume, no services), once per release, before any machine changes; when it
fails (a tag ending ``-badmigration``) or runs past ``release_command_timeout``, the deploy
exits 1 with its output and nothing else changes; the machine is destroyed in every case; a
resumed deploy does not run a command that already succeeded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .localfleet import APP, LocalFleet, copy_fleet

pytestmark = pytest.mark.timeout(300)

RELEASE = """
[deploy]
  release_command = "migrate"
  release_command_timeout = "{timeout}"
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    root = copy_fleet(tmp_path_factory.mktemp("release") / "fleet")
    with (root / "fly.toml").open("a") as f:
        f.write(RELEASE.format(timeout="60s"))
    fleet = LocalFleet.start(root)
    try:
        yield fleet
    finally:
        fleet.stop()


def _all_machines(fleet: LocalFleet) -> list[dict[str, Any]]:
    resp = fleet.api("GET", f"/v1/apps/{APP}/machines", params={"include_deleted": "true"})
    resp.raise_for_status()
    body: list[dict[str, Any]] = resp.json()
    return body


def _release_machines(fleet: LocalFleet) -> list[dict[str, Any]]:
    return [
        m
        for m in _all_machines(fleet)
        if m["config"]["metadata"].get("fly_process_group") == "fly_app_release_command"
    ]


def _serving(fleet: LocalFleet) -> dict[str, str]:
    return {m["id"]: m["version"] for m in fleet.machines("syd")}


def _steps(stdout: str) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in json.loads(stdout)["steps"]}


def test_the_release_command_runs_first_on_a_temporary_machine(fleet: LocalFleet) -> None:
    planned = fleet.invoke("plan", "--region", "syd", "--format", "json")
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    first = plan["steps"][0]
    assert (first["id"], first["kind"]) == ("syd:release.command", "release.command")
    # Every other step waits for it: it is the plan's only root.
    assert [s["id"] for s in plan["steps"] if not s["depends_on"]] == ["syd:release.command"]

    done = fleet.invoke("deploy", "--region", "syd", "--json")
    assert done.returncode == 0, done.stderr
    steps = _steps(done.stdout)
    assert steps["syd:release.command"]["outcome"] == "succeeded"
    (temp,) = _release_machines(fleet)
    assert temp["state"] == "destroyed"
    assert temp["region"] == "syd"
    config = temp["config"]
    # As flyctl: the command goes in init.cmd, run after the image's entrypoint (the sample
    # app's `python -m orchestrator.sampleapp`), as a process group's command is.
    assert config["init"]["cmd"] == ["migrate"]
    assert not config.get("mounts")
    assert not config.get("services")
    assert config["env"]["DATA_DIR"] == "/app/.data"
    assert config["image"] == fleet.machines("syd")[0]["config"]["image"]
    log = (fleet.state_dir / "machines" / temp["id"] / "log").read_text()
    assert "migrate: done" in log

    # The same release again: nothing to do, and the command does not run again.
    again = fleet.invoke("deploy", "--region", "syd", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["outcome"] == "noop"
    assert len(_release_machines(fleet)) == 1


def test_a_failing_release_command_changes_nothing_and_shows_its_output(
    fleet: LocalFleet,
) -> None:
    before = _serving(fleet)
    volumes = {v["id"] for v in fleet.volumes()}
    temps = len(_release_machines(fleet))
    failed = fleet.invoke(
        "deploy", "--region", "syd", "--image", "registry.fly.io/sample-app:v2-badmigration"
    )
    assert failed.returncode == 1, failed.stdout
    assert "migration aborted" in failed.stderr
    assert "exited 1" in failed.stderr
    assert _serving(fleet) == before
    assert {v["id"] for v in fleet.volumes()} == volumes
    made = _release_machines(fleet)
    assert len(made) == temps + 1
    assert {m["state"] for m in made} == {"destroyed"}


def test_a_release_command_past_its_timeout_is_stopped(fleet: LocalFleet) -> None:
    fly_toml = fleet.root / "fly.toml"
    original = fly_toml.read_text()
    slow = original.replace('release_command_timeout = "60s"', 'release_command_timeout = "2s"')
    slow = slow.replace(
        'LOG_LEVEL = "info"', 'LOG_LEVEL = "info"\n  SAMPLE_APP_MIGRATE_SECONDS = "60"'
    )
    fly_toml.write_text(slow)
    before = _serving(fleet)
    try:
        failed = fleet.invoke("deploy", "--region", "syd")
    finally:
        fly_toml.write_text(original)
    assert failed.returncode == 1, failed.stdout
    assert "did not finish within 2s" in failed.stderr
    assert "working for 60s" in failed.stderr
    assert _serving(fleet) == before
    assert {m["state"] for m in _release_machines(fleet)} == {"destroyed"}


def test_a_resumed_deploy_does_not_run_a_successful_release_command_again(
    fleet: LocalFleet,
) -> None:
    image = "registry.fly.io/sample-app:v3"
    temps = len(_release_machines(fleet))
    killed = fleet.invoke(
        "deploy",
        "--region",
        "syd",
        "--image",
        image,
        env={"ORCH_TEST_KILL_AT": "step_finished:syd:release.command"},
    )
    assert killed.returncode != 0
    assert len(_release_machines(fleet)) == temps + 1
    resumed = fleet.invoke("deploy", "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    step = _steps(resumed.stdout)["syd:release.command"]
    assert step["outcome"] == "succeeded"
    assert "not run again" in step["detail"]
    assert len(_release_machines(fleet)) == temps + 1
    assert {m["config"]["image"] for m in fleet.machines("syd")} == {image}


def test_rehearse_runs_the_release_command_on_the_fork_and_stops_at_a_bad_one(
    fleet: LocalFleet,
) -> None:
    before = [(m["id"], m["version"]) for m in fleet.machines()]
    good = fleet.invoke(
        "rehearse", "--region", "syd", "--image", "registry.fly.io/sample-app:v4", "--json"
    )
    assert good.returncode == 0, good.stdout + good.stderr
    verdict = json.loads(good.stdout)
    assert verdict["release_command"] == {"command": "migrate", "exit_code": 0}
    [ran] = [m for m in _all_machines(fleet) if m.get("name") == f"{APP}-rehearsal-release"]
    assert ran["config"]["mounts"][0]["volume"] == verdict["fork"]  # on the copy of the data
    assert ran["config"]["init"]["cmd"] == ["migrate"]

    bad = fleet.invoke(
        "rehearse",
        "--region",
        "syd",
        "--image",
        "registry.fly.io/sample-app:v5-badmigration",
        "--json",
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    failed = json.loads(bad.stdout)
    assert failed["verdict"] == "failed"
    assert failed["release_command"]["exit_code"] not in (0, None)
    assert failed["metrics"] is None  # nothing ran after the failed command
    assert [(m["id"], m["version"]) for m in fleet.machines()] == before
    live = [m for m in _all_machines(fleet) if m["state"] not in ("destroyed", "destroying")]
    assert not [m for m in live if "rehearsal" in (m.get("name") or "")]
    assert not [v for v in fleet.volumes() if v["name"] == "rehearsal"]


def test_a_bad_release_command_setting_is_refused_before_any_call(tmp_path: Path) -> None:
    root = copy_fleet(tmp_path / "fleet")
    with (root / "fly.toml").open("a") as f:
        f.write('\n[deploy]\n  release_command = "migrate \'unclosed"\n')
    fleet = LocalFleet(root=root, endpoint=None)  # type: ignore[arg-type]
    done = fleet.invoke("plan")
    assert done.returncode == 2
    assert done.stderr.startswith("error: fly.toml: deploy.release_command")
