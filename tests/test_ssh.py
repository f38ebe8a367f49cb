"""``invoke ssh``, end to end with the real ``invoke`` and the local Fly.

With a command after ``--`` it runs on the chosen machine (through the exec endpoint) in the
machine's environment, working directory and volume, prints the output and exits with the
command's code. Without one it shows the machine's processes, volume use and memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from execute.localfleet import LocalFleet, copy_fleet

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    root = copy_fleet(tmp_path_factory.mktemp("ssh") / "fleet")
    fleet = LocalFleet.start(root)
    try:
        done = fleet.invoke("deploy", "--region", "syd")
        assert done.returncode == 0, done.stderr
        yield fleet
    finally:
        fleet.stop()


def test_a_command_runs_in_the_machine_with_its_env_and_volume(fleet: LocalFleet) -> None:
    second = sorted(fleet.machines("syd"), key=lambda m: m["config"]["metadata"]["orch_slot"])[1]
    script = 'printf "%s %s\\n" "$FLY_MACHINE_ID" "$DATA_DIR"; ls /app/.data; exit 3'
    done = fleet.invoke(
        "ssh", "--region", "syd", "--machine", second["id"], "--", "sh", "-c", script
    )
    assert done.returncode == 3, done.stderr
    first, *files = done.stdout.splitlines()
    assert first == f"{second['id']} /app/.data"
    assert "records.db" in files

    as_json = fleet.invoke("ssh", "--region", "syd", "--json", "--", "pwd")
    assert as_json.returncode == 0, as_json.stderr
    body = json.loads(as_json.stdout)
    assert body["exit_code"] == 0
    # The machine's own root (its working directory), by default the region's first machine.
    assert body["stdout"].strip().endswith(f"machines/{body['machine']}/root")


def test_without_a_command_it_shows_processes_volume_and_memory(fleet: LocalFleet) -> None:
    done = fleet.invoke("ssh", "--region", "syd", "--json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["region"] == "syd"
    (main,) = [p for p in found["processes"] if "orchestrator.sampleapp" in p["command"]]
    assert main["rss_bytes"] > 1_000_000
    assert main["listening"]
    assert found["volume_path"] == "/app/.data"
    assert found["volume"]
    assert found["volume"].endswith("%")
    assert found["memory_mb"] == 256
    assert found["rss_bytes"] >= main["rss_bytes"]

    shown = fleet.invoke("ssh", "--region", "syd")
    assert shown.returncode == 0, shown.stderr
    assert "volume /app/.data:" in shown.stdout
    assert "memory: processes hold" in shown.stdout


def test_bad_ssh_input_exits_2_naming_the_flag(fleet: LocalFleet) -> None:
    cases = {
        ("ssh", "--", "true"): "error: --region:",
        ("ssh", "--region", "xyz", "--", "true"): "error: --region:",
        ("ssh", "--region", "syd", "--machine", "nope", "--", "true"): "error: --machine:",
        ("ssh", "--region", "syd", "--timeout", "600", "--", "true"): "error: --timeout:",
        ("ssh", "--region", "ams", "--", "true"): "error: --region:",
    }
    for args, start in cases.items():
        done = fleet.invoke(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.startswith(start), (args, done.stderr)
