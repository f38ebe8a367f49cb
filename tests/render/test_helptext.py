"""``invoke --help TASK`` names what each option takes (REGION, N, AGE...)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from execute.localfleet import INVOKE, REPO, copy_fleet


@pytest.mark.parametrize(
    ("task", "shown"),
    [
        ("deploy", ["-r REGION, --region=REGION", "-i IMAGE, --image=IMAGE"]),
        ("scale", ["-c N, --count=N", "-m MB, --memory=MB", "-v PRESET, --vm=PRESET"]),
        ("logs", ["-l N, --lines=N", "-s AGE, --since=AGE", "-m ID, --machine=ID"]),
        ("rollback", ["-t RELEASE, --to=RELEASE", "-r REGION, --region=REGION"]),
        ("drill", ["--report=PATH", "--promote=REGION"]),
    ],
)
def test_help_shows_a_placeholder_for_every_value(
    tmp_path: Path, task: str, shown: list[str]
) -> None:
    root = copy_fleet(tmp_path / "fleet")
    proc = subprocess.run(
        [str(INVOKE), "--search-root", str(REPO), "--help", task],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    for text in shown:
        assert text in proc.stdout, proc.stdout
    assert "STRING" not in proc.stdout
    assert "-r, --region" not in proc.stdout
