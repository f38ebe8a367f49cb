"""A deployed copy of the sample fleet on its own local Fly, shared by a test module.

Each module that needs one gets its own directory and local Fly (``syd`` deployed at the sample
fleet's size: 2 machines, shared-cpu-1x, 1 GB volumes), and stops every process it started, by
PID, at the end, even when a test failed. The copy bakes for 0 s instead of 3 s: the metrics gate
is the deploy's business, and scaling tests run many rollouts. For the same reason the executor
polls a machine's checks every 0.2 s instead of every second (``orchestrator.poll``, through an
invoke runtime config file named by ``INVOKE_RUNTIME_CONFIG``, so the commands stay as written).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from execute.localfleet import REPO, LocalFleet, copy_fleet
from invoke import Program

# CI changes how output looks (docs/ci.md); tests that want it set it themselves.
_SCRUBBED = (
    "FLY_API_TOKEN",
    "FLY_FLAPS_BASE_URL",
    "FLY_APP_NAME",
    "FLY_ACCESS_TOKEN",
    "FLY_APP_URL",
    "ORCHESTRATOR_LOCK_TTL",
    "CI",
)


def run_invoke(command: str) -> int:
    """Run an ``invoke ...`` line through invoke's `Program`, in-process; return its exit code.

    The same parser and tasks as the ``invoke`` command, without a Python start-up per command;
    read what it printed with ``capsys``. The working directory must be the fleet's.
    """
    argv = shlex.split(command)
    assert argv[0] == "invoke", command
    try:
        Program().run(["invoke", "--search-root", str(REPO), *argv[1:]])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def deployed_fleet(root: Path, mp: pytest.MonkeyPatch) -> Iterator[LocalFleet]:
    """Copy the sample fleet to ``root``, start its local Fly, deploy syd; stop it all after.

    While it runs, this process works in the fleet's directory with no ``FLY_*`` settings, as
    an operator's shell would (for :func:`run_invoke`).
    """
    copy_fleet(root)
    waves = root / "regions" / "waves.toml"
    text = waves.read_text()
    assert 'bake_time = "3s"' in text
    waves.write_text(text.replace('bake_time = "3s"', 'bake_time = "0s"'))
    config = root.parent / "invoke-runtime.yaml"
    config.write_text("orchestrator:\n  poll: 0.2\n")
    mp.setenv("INVOKE_RUNTIME_CONFIG", str(config))
    for name in _SCRUBBED:
        mp.delenv(name, raising=False)
    mp.setenv("COLUMNS", "200")
    mp.chdir(root)
    fleet = LocalFleet.start(root)
    try:
        done = fleet.invoke("deploy", "--region", "syd", "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    """The module's deployed fleet."""
    with pytest.MonkeyPatch.context() as mp:
        yield from deployed_fleet(tmp_path_factory.mktemp("scale") / "fleet", mp)
