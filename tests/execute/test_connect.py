"""Where the orchestrator works and which API it talks to: the directory and the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.connect import find_root, load_settings
from orchestrator.errors import ConfigError
from orchestrator.execute.context import ExecuteOptions


def test_the_root_is_the_nearest_directory_with_fly_toml(tmp_path: Path) -> None:
    (tmp_path / "fly.toml").write_text('app = "a"\n')
    below = tmp_path / "regions" / "deeper"
    below.mkdir(parents=True)
    assert find_root(below) == tmp_path.resolve()


def test_no_fly_toml_is_bad_input_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"fly\.toml") as info:
        find_root(tmp_path)
    assert info.value.exit_code == 2


def test_the_environment_wins_over_invoke_yaml(tmp_path: Path) -> None:
    (tmp_path / "fly.toml").write_text('app = "from-toml"\n')
    yaml = {"app_name": "from-yaml", "api_token": "yaml-token"}

    from_yaml = load_settings(tmp_path, {}, yaml)
    from_env = load_settings(tmp_path, {"FLY_APP_NAME": "from-env", "FLY_API_TOKEN": "t"}, yaml)
    local = load_settings(tmp_path, {}, None)

    assert (from_yaml.app, from_yaml.backend) == ("from-yaml", "fly")
    assert from_yaml.token is not None
    assert "yaml-token" not in repr(from_yaml)
    assert (from_env.app, from_env.backend) == ("from-env", "fly")
    assert from_env.token is not None
    assert from_env.token.reveal() == "t"
    assert (local.app, local.backend, local.local_state_dir) == (
        "from-toml",
        "local",
        tmp_path / ".localfly",
    )


def test_a_plain_http_api_url_off_loopback_is_refused(tmp_path: Path) -> None:
    (tmp_path / "fly.toml").write_text('app = "a"\n')
    env = {"FLY_API_TOKEN": "t", "FLY_FLAPS_BASE_URL": "http://api.example.com"}
    with pytest.raises(ConfigError, match="FLY_FLAPS_BASE_URL"):
        load_settings(tmp_path, env)


def test_executor_timeouts_come_from_invoke_yaml() -> None:
    options = ExecuteOptions.from_config({"health_timeout": 30, "lease_wait": 0})
    assert (options.health_timeout_s, options.lease_wait_s) == (30.0, 0.0)
    with pytest.raises(ConfigError, match=r"orchestrator\.gate_timout"):
        ExecuteOptions.from_config({"gate_timout": 5})
    with pytest.raises(ConfigError, match=r"orchestrator\.gate_timeout"):
        ExecuteOptions.from_config({"gate_timeout": 0})
