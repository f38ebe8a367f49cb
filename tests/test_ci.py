"""docs/ci.md's GitHub Actions workflow, run step by step against a local Fly with CI=true."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from execute.localfleet import APP, REPO, copy_fleet, kill_leftovers

from orchestrator.localfly import control

pytestmark = pytest.mark.timeout(400)

PROGRAM = Path(sys.executable).with_name("fly-orchestrator")

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")


def workflow() -> dict[str, Any]:
    """Return the workflow YAML block of docs/ci.md."""
    text = (REPO / "docs" / "ci.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert block is not None, "docs/ci.md has no yaml block"
    data: dict[str, Any] = yaml.safe_load(block.group(1))
    return data


@pytest.fixture
def fly(tmp_path: Path) -> Iterator[control.Endpoint]:
    state_dir = tmp_path / "fly"
    state_dir.mkdir(mode=0o700)
    endpoint = control.ensure_running(state_dir, profile="fast")
    try:
        resp = httpx.post(
            f"{endpoint.api_url}/v1/apps",
            json={"name": APP, "org_slug": "personal"},
            headers=endpoint.headers,
        )
        assert resp.status_code == 201, resp.text
        yield endpoint
    finally:
        control.stop(state_dir)
        kill_leftovers(state_dir)


def test_the_documented_workflow_deploys_with_plain_timestamped_logs(
    tmp_path: Path, fly: control.Endpoint
) -> None:
    job = workflow()["jobs"]["deploy"]
    assert workflow()["concurrency"]["cancel-in-progress"] is False
    assert "secrets.FLY_API_TOKEN" in job["env"]["FLY_API_TOKEN"]
    root = copy_fleet(tmp_path / "checkout")  # a fresh checkout: no .orchestrator/
    run_url = "https://github.com/acme/fleet/actions/runs/4242"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLY_")}
    env.update(
        {
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_REPOSITORY": "acme/fleet",
            "GITHUB_RUN_ID": "4242",
            "GITHUB_ACTOR": "ci-bot",
            "GITHUB_SHA": "3f9a2c1",
            # The job's env, with GitHub's expressions resolved for the local Fly.
            "FLY_API_TOKEN": fly.token,
            "FLY_FLAPS_BASE_URL": fly.api_url,
            "FLY_APP_URL": fly.proxy_url,
            "DEPLOY_IMAGE": "registry.fly.io/sample-app:v2",
            "COLUMNS": "200",
        }
    )
    ran: dict[str, subprocess.CompletedProcess[str]] = {}
    for step in job["steps"]:
        command = step.get("run", "")
        if ".venv/bin/fly-orchestrator" not in command:
            continue  # checkout, setup-python, install, upload: GitHub's part
        command = command.replace(".venv/bin/fly-orchestrator", f'"{PROGRAM}"')
        ran[step["name"]] = proc = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", command],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, (step["name"], proc.stdout[-2000:], proc.stderr[-2000:])
    assert set(ran) == {"Plan", "Deploy", "Releases"}
    # The artefact is the JSON result alone.
    result = json.loads((root / "deploy-result.json").read_text())
    assert result["outcome"] == "succeeded"
    assert result["release"].startswith("v2-")
    # The log: plain lines, each with its UTC time, no colour or cursor codes.
    log = ran["Deploy"].stderr.splitlines()
    assert log, "the deploy logged nothing"
    assert all(STAMP.match(line) for line in log), log[:5]
    assert "\x1b[" not in ran["Deploy"].stderr
    assert any("syd:gate.health" in line for line in log)
    # The release record names the CI run; the token is nowhere.
    assert run_url in ran["Releases"].stdout
    assert "ci-bot" in ran["Releases"].stdout
    for proc in ran.values():
        assert fly.token not in proc.stdout + proc.stderr
    assert fly.token not in (root / "deploy-result.json").read_text()
