"""Image references and the image → command map."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from orchestrator.localfly.images import machine_argv, parse_image, resolve_command
from orchestrator.localfly.util import ApiError


@pytest.mark.parametrize(
    ("ref", "registry", "repository", "tag"),
    [
        ("registry.fly.io/sample-app:v2", "registry.fly.io", "sample-app", "v2"),
        ("sample-app", "docker.io", "sample-app", "latest"),
        ("localhost:5000/acme/api:1.2", "localhost:5000", "acme/api", "1.2"),
        ("acme/api@sha256:abc", "docker.io", "acme/api", "latest"),
    ],
)
def test_parse_image(ref: str, registry: str, repository: str, tag: str) -> None:
    image = parse_image(ref)
    assert (image.registry, image.repository, image.tag) == (registry, repository, tag)
    assert image.digest.startswith("sha256:")
    assert parse_image(ref).digest == image.digest


def test_sample_app_is_built_in_and_user_images_come_from_images_toml(tmp_path: Path) -> None:
    assert resolve_command("registry.fly.io/sample-app:v9", tmp_path) == [
        sys.executable,
        "-m",
        "orchestrator.sampleapp",
    ]
    (tmp_path / "images.toml").write_text(
        '"registry.fly.io/api" = ["{python}", "-m", "api"]\n"worker" = ["/bin/worker"]\n'
    )
    assert resolve_command("registry.fly.io/api:v1", tmp_path) == [sys.executable, "-m", "api"]
    assert resolve_command("ghcr.io/acme/worker:3", tmp_path) == ["/bin/worker"]
    with pytest.raises(ApiError, match=r"images\.toml") as unknown:
        resolve_command("nobody/else:1", tmp_path)
    assert unknown.value.status_code == 422
    (tmp_path / "images.toml").write_text('"bad" = "not a list"\n')
    with pytest.raises(ApiError, match="non-empty list"):
        resolve_command("bad", tmp_path)


def test_a_machine_runs_the_entrypoint_with_init_cmd_in_place_of_the_image_command(
    tmp_path: Path,
) -> None:
    (tmp_path / "images.toml").write_text(
        '"api" = { entrypoint = ["/bin/api"], cmd = ["serve", "--port", "8080"] }\n'
    )
    python = sys.executable
    sample = "registry.fly.io/sample-app:v1"
    assert machine_argv({"image": sample}, tmp_path) == [python, "-m", "orchestrator.sampleapp"]
    # flyctl sends a [processes] group's command as init.cmd: it replaces the image's command.
    assert machine_argv({"image": sample, "init": {"cmd": ["worker"]}}, tmp_path) == [
        python,
        "-m",
        "orchestrator.sampleapp",
        "worker",
    ]
    assert machine_argv({"image": "api:1"}, tmp_path) == ["/bin/api", "serve", "--port", "8080"]
    assert machine_argv({"image": "api:1", "init": {"cmd": ["migrate"]}}, tmp_path) == [
        "/bin/api",
        "migrate",
    ]
    # A new entrypoint drops the image's command, as in Docker; exec replaces the whole line.
    assert machine_argv({"image": "api:1", "init": {"entrypoint": ["/bin/sh"]}}, tmp_path) == [
        "/bin/sh"
    ]
    assert machine_argv(
        {"image": "api:1", "init": {"exec": ["{python}", "-V"], "cmd": ["x"]}}, tmp_path
    ) == [python, "-V"]
    (tmp_path / "images.toml").write_text('"bad" = { cmd = ["x"] }\n')
    with pytest.raises(ApiError, match="entrypoint"):
        machine_argv({"image": "bad"}, tmp_path)
