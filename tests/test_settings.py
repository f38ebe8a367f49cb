"""Settings: which API the orchestrator talks to, with which token, for which app."""

from __future__ import annotations

import dataclasses
import logging
import pickle
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.settings import (
    DEFAULT_BASE_URL,
    Settings,
    Token,
    resolve,
    resolve_settings,
    validate_base_url,
)

SECRET = "fm2_sEcReT-t0ken-that-must-never-leak"


# -- Token ----------------------------------------------------------------------------------


def test_token_never_shows_the_secret_when_printed_or_formatted() -> None:
    token = Token(SECRET)
    shown = [repr(token), str(token), f"{token}", f"{token!r}", f"{token:>40}"]
    shown.append("%s" % (token,))  # noqa: UP031 - old-style formatting must hide it too
    for text in shown:
        assert SECRET not in text
    assert token.reveal() == SECRET


def test_token_in_settings_repr_and_asdict_stays_hidden(tmp_path: Path) -> None:
    settings = resolve_settings(tmp_path, {"FLY_API_TOKEN": SECRET})
    assert SECRET not in repr(settings)
    assert SECRET not in str(dataclasses.asdict(settings))


def test_token_in_a_log_line_stays_hidden(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    logging.getLogger("test").info("using token %s (%r)", Token(SECRET), Token(SECRET))
    assert SECRET not in caplog.text


def test_token_compares_by_value_and_survives_pickling() -> None:
    assert Token(SECRET) == Token(SECRET)
    assert Token(SECRET) != Token("other")
    assert pickle.loads(pickle.dumps(Token(SECRET))).reveal() == SECRET
    assert not Token("")


def test_token_is_immutable() -> None:
    token = Token(SECRET)
    with pytest.raises(AttributeError):
        token._secret = "x"


# -- resolve_settings -----------------------------------------------------------------------


def test_without_a_token_the_local_fly_is_used(tmp_path: Path) -> None:
    settings = resolve_settings(tmp_path, {})
    assert settings == Settings(root=tmp_path, app=None, backend="local", base_url=None, token=None)
    assert settings.local_state_dir == tmp_path / ".localfly"


def test_a_blank_token_counts_as_none(tmp_path: Path) -> None:
    assert resolve_settings(tmp_path, {"FLY_API_TOKEN": "  "}).backend == "local"


def test_with_a_token_fly_io_is_used_at_the_default_url(tmp_path: Path) -> None:
    settings = resolve_settings(tmp_path, {"FLY_API_TOKEN": SECRET})
    assert settings.backend == "fly"
    assert settings.base_url == DEFAULT_BASE_URL == "https://api.machines.dev"
    assert settings.token is not None
    assert settings.token.reveal() == SECRET


def test_flaps_base_url_points_somewhere_else(tmp_path: Path) -> None:
    env = {"FLY_API_TOKEN": SECRET, "FLY_FLAPS_BASE_URL": "https://flaps.internal.example/"}
    assert resolve_settings(tmp_path, env).base_url == "https://flaps.internal.example"


def test_the_app_comes_from_fly_toml_and_fly_app_name_overrides_it(tmp_path: Path) -> None:
    (tmp_path / "fly.toml").write_text('app = "from-toml"\nprimary_region = "syd"\n')
    assert resolve_settings(tmp_path, {}).app == "from-toml"
    assert resolve_settings(tmp_path, {"FLY_APP_NAME": "from-env"}).app == "from-env"


def test_a_broken_fly_toml_is_left_for_the_spec_loader_to_report(tmp_path: Path) -> None:
    (tmp_path / "fly.toml").write_text("app = \n")
    assert resolve_settings(tmp_path, {}).app is None


def test_asking_for_fly_without_a_token_names_fly_api_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_settings(tmp_path, {}, backend="fly")
    assert str(info.value).startswith("FLY_API_TOKEN: ")
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 2


def test_asking_for_local_ignores_a_token(tmp_path: Path) -> None:
    settings = resolve_settings(tmp_path, {"FLY_API_TOKEN": SECRET}, backend="local")
    assert (settings.backend, settings.token) == ("local", None)


def test_a_bad_base_url_is_refused_without_showing_the_token(tmp_path: Path) -> None:
    env = {"FLY_API_TOKEN": SECRET, "FLY_FLAPS_BASE_URL": "http://flaps.example.com"}
    with pytest.raises(ConfigError) as info:
        resolve_settings(tmp_path, env)
    assert "FLY_FLAPS_BASE_URL" in str(info.value)
    assert SECRET not in str(info.value)


def test_resolve_picks_the_backend_as_the_architecture_page_says(tmp_path: Path) -> None:
    # docs/architecture.md: `resolve(root, environ)`: a token means Fly.io at
    # FLY_FLAPS_BASE_URL (default api.machines.dev), no token the local Fly.
    (tmp_path / "fly.toml").write_text('app = "from-toml"\n')
    on_fly = resolve(tmp_path, {"FLY_API_TOKEN": SECRET})
    assert (on_fly.backend, on_fly.base_url, on_fly.app) == ("fly", DEFAULT_BASE_URL, "from-toml")
    assert on_fly.token is not None
    assert on_fly.token.reveal() == SECRET
    elsewhere = resolve(tmp_path, {"FLY_API_TOKEN": SECRET, "FLY_FLAPS_BASE_URL": "http://[::1]:1"})
    assert elsewhere.base_url == "http://[::1]:1"
    local = resolve(tmp_path, {})
    assert (local.backend, local.base_url, local.token, local.app) == (
        "local",
        None,
        None,
        "from-toml",
    )


# -- validate_base_url ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.machines.dev", "https://api.machines.dev"),
        ("https://api.machines.dev/", "https://api.machines.dev"),
        ("http://127.0.0.1:4280", "http://127.0.0.1:4280"),
        ("http://127.5.0.1:80/", "http://127.5.0.1:80"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("http://[::1]:4280", "http://[::1]:4280"),
        ("https://10.0.0.5:4280", "https://10.0.0.5:4280"),
    ],
)
def test_good_base_urls(url: str, expected: str) -> None:
    assert validate_base_url(url) == expected


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://api.machines.dev", "loopback"),
        ("http://10.0.0.5:4280", "loopback"),
        ("http://_api.internal:4280", "loopback"),
        ("ftp://api.machines.dev", "http(s)"),
        ("api.machines.dev", "not a valid URL"),
        ("https://", "not a valid URL"),
        ("https://api.machines.dev:99999", "not a valid URL"),
        ("https://api machines.dev", "not a valid URL"),
        ("https://user:pw@api.machines.dev", "credentials"),
    ],
)
def test_bad_base_urls_are_one_line_config_errors(url: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_base_url(url)
    message = str(info.value)
    assert message.startswith("FLY_FLAPS_BASE_URL: ")
    assert why in message
    assert "\n" not in message
