"""Fixtures for the spec tests: a private copy of the repo's sample fleet."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo() -> Path:
    """Return the repository root, which holds the sample fleet."""
    return REPO


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    """Copy the sample fleet (fly.toml and regions/) into a temp dir and return that dir."""
    root = tmp_path / "fleet"
    root.mkdir()
    shutil.copy2(REPO / "fly.toml", root / "fly.toml")
    shutil.copytree(REPO / "regions", root / "regions")
    return root
