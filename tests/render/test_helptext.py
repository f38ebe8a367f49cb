"""``invoke --help TASK`` names what each option takes (REGION, N, AGE...)."""

from __future__ import annotations

import re
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


def test_every_value_option_of_every_task_shows_a_placeholder() -> None:
    from orchestrator.cli.tasks import ns

    checked = []
    for context in ns.to_contexts():
        for names, _help in context.help_tuples():
            assert not re.search(r"STRING|INT\b", names), (context.name, names)
        for flag, arg in context.flags.items():
            if not flag.startswith("--") or arg.kind is bool:
                continue
            names, _help = context.help_for(flag)
            assert re.search(rf"{flag}\[?=[A-Z]+", names), (context.name, names)
            checked.append((context.name, flag))

    # Every task's value options (region, image, count, lines...), not a handful.
    assert len(checked) >= 30, checked
    assert ("volumes.list", "--older-than") in checked
