"""`fly-orchestrator`, the installed command, in a fleet directory with no tasks.py.

One story on one copy of the sample fleet (fly.toml and regions/ only, as an operator's own
repository would hold): the command refuses a directory without fly.toml, lists its tasks,
finds the local Fly stopped for read-only commands (starting nothing), plans and deploys syd on
the local Fly it starts, and lists the volumes with the documented ``volumes`` word. Then a
fleet's two-line tasks.py makes plain ``invoke`` run the same tasks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from execute.localfleet import INVOKE, REPO, LocalFleet, copy_fleet

from orchestrator.localfly import control

pytestmark = pytest.mark.timeout(300)

PROGRAM = Path(sys.executable).with_name("fly-orchestrator")
# What docs/getting-started.md tells a fleet repository to keep as its tasks.py.
REEXPORT = "from orchestrator.cli.tasks import ns  # noqa: F401\n"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    """Copy the sample fleet; the tests start its local Fly, this stops it (by PID)."""
    root = copy_fleet(tmp_path_factory.mktemp("program") / "fleet")
    local = LocalFleet(root=root, endpoint=None)  # type: ignore[arg-type]
    try:
        yield local
    finally:
        local.stop()


def _run(
    fleet: LocalFleet, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROGRAM), *args],
        cwd=cwd or fleet.root,
        env=fleet._env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_the_console_script_is_installed_with_the_package() -> None:
    assert PROGRAM.is_file(), f"{PROGRAM} missing: pip install the package"


def test_a_directory_without_fly_toml_is_refused_with_exit_2(
    fleet: LocalFleet, tmp_path: Path
) -> None:
    proc = _run(fleet, "deploy", "--region", "syd", cwd=tmp_path)

    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: fly.toml: no fly.toml in "), line
    assert "run from your fleet's directory" in line
    assert list(tmp_path.iterdir()) == []


def test_list_names_every_task_and_the_version(fleet: LocalFleet) -> None:
    listed = _run(fleet, "--list")
    version = _run(fleet, "--version")

    assert not (fleet.root / "tasks.py").exists()
    assert listed.returncode == 0, listed.stderr
    for name in ("deploy", "plan", "rollback", "scale", "status", "local.up", "volumes.prune"):
        assert f"\n  {name} " in listed.stdout, listed.stdout
    assert "\n  volumes.list (volumes) " in listed.stdout, listed.stdout
    assert version.stdout.startswith("fly-orchestrator "), version.stdout


@pytest.mark.parametrize("args", [["releases"], ["logs"], ["unlock"], ["promote"]])
def test_read_only_commands_find_the_local_fly_stopped_and_start_nothing(
    fleet: LocalFleet, args: list[str]
) -> None:
    proc = _run(fleet, *args)

    assert proc.returncode == 1, proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: the local Fly is not running"), line
    assert "invoke local.up" in line
    assert not control.status(fleet.state_dir).running


def test_showing_the_scale_says_it_started_the_local_fly(fleet: LocalFleet) -> None:
    shown = _run(fleet, "scale", "--region", "syd", "--json")
    stopped = _run(fleet, "local.down")

    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "started the local Fly in the background" in shown.stderr
    assert "invoke local.down" in shown.stderr
    assert json.loads(shown.stdout)["regions"]  # stdout stays JSON alone
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not control.status(fleet.state_dir).running


def test_plan_and_deploy_syd_from_the_fleet_directory(fleet: LocalFleet) -> None:
    planned = _run(fleet, "plan", "--region", "syd")
    deployed = _run(fleet, "deploy", "--region", "syd")
    fleet.endpoint = control.ensure_running(fleet.state_dir, profile="fast")

    assert planned.returncode == 0, planned.stdout + planned.stderr
    # Reading the fleet started the local Fly: the plan says so, and how to stop it.
    assert "started the local Fly in the background" in planned.stderr
    assert "invoke local.down" in planned.stderr
    assert "started the local Fly" not in deployed.stdout + deployed.stderr
    assert "create sample-fleet-syd-1" in planned.stdout
    assert "create sample-fleet-syd-2" in planned.stdout
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    machines = fleet.machines("syd")
    assert [m["name"] for m in machines] == ["sample-fleet-syd-1", "sample-fleet-syd-2"]
    assert all(m["state"] == "started" for m in machines)
    assert (fleet.root / ".orchestrator" / "journal.db").is_file()


def test_volumes_lists_them_with_the_documented_words(fleet: LocalFleet) -> None:
    listed = _run(fleet, "volumes", "--region", "syd", "--json")
    pruned = _run(fleet, "volumes", "prune", "--yes", "--json")

    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert len(json.loads(listed.stdout)["volumes"]) == 2
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert json.loads(pruned.stdout) == {"destroyed": [], "refused": []}
    assert len(fleet.volumes("syd")) == 2


def test_a_two_line_tasks_py_gives_invoke_the_same_tasks(fleet: LocalFleet) -> None:
    (fleet.root / "tasks.py").write_text('"""This fleet\'s tasks."""\n\n' + REEXPORT)
    env = {**fleet._env(), "PATH": f"{INVOKE.parent}{os.pathsep}{os.environ.get('PATH', '')}"}

    proc = subprocess.run(
        [str(INVOKE), "status", "--json"],
        cwd=fleet.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr
    status = json.loads(proc.stdout)
    assert status["healthy"] is True
    assert len(status["regions"]["syd"]["machines"]) == 2
    assert REEXPORT.strip() in (REPO / "docs" / "getting-started.md").read_text()
