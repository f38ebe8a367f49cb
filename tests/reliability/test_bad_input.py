"""Bad input, end to end: exit code 2, one line naming the file, key or flag, and no API change.

Every case breaks one thing, in one of the three kinds of configuration file (``fly.toml``,
``regions/<code>.toml``, ``regions/waves.toml``) or in a task's flags, and runs a command on a
deployed copy of the sample fleet. Each must exit 2 with a single ``error:`` line that names
the file, key or flag, and the local Fly's requests log must show no mutating call (the
commands that check their input first make no call at all). Most cases run through invoke's
`Program` in this process (the same parser and tasks as the command); a few run the real
``invoke`` binary.
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from execute.localfleet import REPO
from invoke import Program

from .harness import Rig

pytestmark = pytest.mark.timeout(300)

FLY, SYD, DFW, WAVES = "fly.toml", "regions/syd.toml", "regions/dfw.toml", "regions/waves.toml"


@dataclass(frozen=True)
class Case:
    """One bad input: a file edit (or none), a command line, and what the error must name."""

    id: str
    command: str
    names: str
    edit: Callable[[Path], None] | None = None


def _sub(file: str, old: str, new: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / file
        text = path.read_text()
        assert old in text, (file, old)
        path.write_text(text.replace(old, new, 1))

    return edit


def _append(file: str, text: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / file
        path.write_text(path.read_text() + text)

    return edit


def _put(file: str, content: str | bytes) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / file
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)

    return edit


CASES: list[Case] = [
    # fly.toml
    Case("fly-malformed", "deploy", FLY, _sub(FLY, 'app = "sample-fleet"', 'app = "sample-fleet')),
    Case("fly-not-utf8", "deploy", FLY, _put(FLY, b'app = "caf\xe9"\n')),
    Case(
        "fly-unknown-key",
        "deploy",
        "did you mean",
        _sub(FLY, "primary_region =", "primary_regon ="),
    ),
    Case(
        "fly-wrong-type",
        "deploy",
        f"{FLY}: primary_region",
        _sub(FLY, 'primary_region = "syd"', "primary_region = 5"),
    ),
    Case(
        "fly-unknown-region",
        "plan",
        f"{FLY}: primary_region",
        _sub(FLY, 'primary_region = "syd"', 'primary_region = "xyz"'),
    ),
    Case(
        "fly-app-path",
        "deploy",
        f"{FLY}: app",
        _sub(FLY, 'app = "sample-fleet"', 'app = "../../etc/passwd"'),
    ),
    Case(
        "fly-app-shell",
        "scale --region syd --count 3",
        f"{FLY}: app",
        _sub(FLY, 'app = "sample-fleet"', 'app = "x; rm -rf ~"'),
    ),
    Case(
        "fly-impossible-memory",
        "deploy",
        f"{FLY}: vm.memory",
        _sub(FLY, 'memory = "256mb"', 'memory = "4gb"'),
    ),
    Case(
        "fly-image-shell",
        "deploy",
        f"{FLY}: build.image",
        _sub(FLY, "sample-app:v1", "sample-app:$(id)"),
    ),
    Case(
        "fly-check-injection",
        "deploy",
        f"{FLY}: http_service.checks[1].path",
        _sub(FLY, 'path = "/status"', 'path = "/status\\r\\nX-Evil: 1"'),
    ),
    Case(
        "fly-mount-path",
        "deploy",
        f"{FLY}: mounts",
        _sub(FLY, 'destination = "/app/.data"', 'destination = "../../.."'),
    ),
    # regions/<code>.toml
    Case("region-count-string", "deploy", f"{SYD}: count", _sub(SYD, "count = 2", 'count = "2"')),
    Case("region-count-negative", "deploy", f"{SYD}: count", _sub(SYD, "count = 2", "count = -1")),
    Case("region-count-huge", "deploy", f"{SYD}: count", _sub(SYD, "count = 2", "count = 100000")),
    Case(
        "region-unknown-key",
        "deploy",
        "did you mean 'count'",
        _sub(SYD, "count = 2", "count = 2\ncuont = 2"),
    ),
    Case(
        "region-memory-impossible",
        "deploy",
        f"{SYD}: memory_mb",
        _sub(SYD, "memory_mb = 256", "memory_mb = 4096"),
    ),
    Case(
        "region-preset-unknown",
        "drill --region dfw",
        f"{SYD}: vm",
        _sub(SYD, 'vm = "shared-cpu-1x"', 'vm = "performance-3x"'),
    ),
    Case(
        "region-cpus",
        "deploy",
        f"{SYD}: cpus",
        _sub(SYD, 'vm = "shared-cpu-1x"', 'vm = "shared-cpu-1x"\ncpus = 3'),
    ),
    Case(
        "region-volume-zero",
        "scale --region dfw --count 3",
        f"{SYD}: volume_size_gb",
        _sub(SYD, "volume_size_gb = 1", "volume_size_gb = 0"),
    ),
    Case(
        "region-file-unknown", "deploy", "regions/xyz.toml", _put("regions/xyz.toml", "count = 1\n")
    ),
    Case(
        "region-file-city", "deploy", "did you mean syd", _put("regions/sydney.toml", "count = 1\n")
    ),
    Case("region-not-utf8", "plan", DFW, _put(DFW, b"count = 2\n# caf\xe9\n")),
    Case("region-malformed", "deploy", DFW, _put(DFW, "count = [\n")),
    Case(
        "region-in-no-wave",
        "deploy",
        "regions/lhr.toml is in no wave",
        _put("regions/lhr.toml", "count = 1\n"),
    ),
    Case("region-shell-name", "deploy", "regions/", _put("regions/$(id).toml", "count = 1\n")),
    # regions/waves.toml
    Case(
        "waves-duplicate-region",
        "deploy",
        WAVES,
        _sub(WAVES, 'regions = ["dfw", "ams"]', 'regions = ["dfw", "syd"]'),
    ),
    Case(
        "waves-empty-wave", "deploy", WAVES, _sub(WAVES, 'regions = ["dfw", "ams"]', "regions = []")
    ),
    Case(
        "waves-unknown-key",
        "deploy",
        "did you mean",
        _sub(WAVES, 'bake_time = "0s"', 'bake_tme = "0s"'),
    ),
    Case(
        "waves-on-failure",
        "deploy",
        f"{WAVES}: defaults.on_failure",
        _sub(WAVES, 'on_failure = "rollback_region"', 'on_failure = "pray"'),
    ),
    Case(
        "waves-error-rate",
        "deploy",
        f"{WAVES}: defaults.max_error_rate",
        _sub(WAVES, "max_error_rate = 0.05", "max_error_rate = 2"),
    ),
    Case("waves-malformed", "deploy", WAVES, _sub(WAVES, "\n[[wave]]\n", "\n[[wave]\n")),
    Case("waves-not-utf8", "deploy", WAVES, _put(WAVES, b'[[wave]]\nregions = ["syd\xff"]\n')),
    Case(
        "waves-unknown-region",
        "deploy",
        WAVES,
        _sub(WAVES, 'regions = ["dfw", "ams"]', 'regions = ["dfw", "ams", "lhr"]'),
    ),
    # flags, task by task
    Case("deploy-region-unknown", "deploy --region xyz", "--region"),
    Case("deploy-region-path", "deploy --region ../etc", "--region"),
    Case("deploy-image-empty", "deploy --image ''", "--image"),
    Case("deploy-image-shell", "deploy --image 'a;$(id)'", "--image"),
    Case("plan-format-bogus", "plan --format bogus", "--format"),
    Case("plan-region-unknown", "plan --region xyz", "--region"),
    Case("scale-count-negative", "scale --region syd --count -1", "--count"),
    Case("scale-count-huge", "scale --region syd --count 100000", "--count"),
    Case("scale-count-word", "scale --region syd --count three", "--count"),
    Case("scale-memory", "scale --region syd --memory 4096", "--memory"),
    Case("scale-cpu", "scale --region syd --cpu 3", "--cpu"),
    Case("scale-vm", "scale --region syd --vm bogus-9x", "--vm"),
    Case("scale-volume-zero", "scale --region syd --volume-size 0", "--volume-size"),
    Case("scale-no-region", "scale --count 2", "--region"),
    Case("scale-usage-and-change", "scale --region syd --usage --count 2", "--usage"),
    Case("status-region-unknown", "status --region xyz", "--region"),
    Case("logs-lines-negative", "logs --lines -1", "--lines"),
    Case("drill-no-region", "drill", "--region"),
    Case("drill-promote-self", "drill --region syd --promote syd", "--promote"),
    Case("drill-region-unknown", "drill --region xyz", "--region"),
    Case("rollback-to-unknown", "rollback --to no-such-release", "--to"),
    Case("rollback-region-unknown", "rollback --region xyz", "--region"),
    Case("local-up-time-factor-zero", "local.up --time-factor 0", "--time-factor"),
    Case("local-up-profile", "local.up --profile bogus", "--profile"),
    # fly.toml's [deploy]
    Case(
        "release-command-unsplittable",
        "deploy",
        f"{FLY}: deploy.release_command",
        _append(FLY, '\n[deploy]\n  release_command = "migrate \'unclosed"\n'),
    ),
    # invoke secrets: every bad argument named by position, never by value
    Case("secrets-bad-pairs", "secrets set -- 1BAD=x NOEQ", "argument 1"),
    Case("secrets-nothing-to-set", "secrets set", "secrets set"),
    Case("secrets-unset-bad-name", "secrets unset -- bad-name", "secrets unset: argument 1"),
    Case("secrets-unknown-action", "secrets rotate", "secrets: must be list, set or unset"),
    # invoke ssh
    Case("ssh-no-region", "ssh -- true", "--region"),
    Case("ssh-unknown-region", "ssh --region xyz -- true", "--region"),
    Case("ssh-timeout-too-long", "ssh --region syd --timeout 600 -- true", "--timeout"),
]

# Run through the real binary too (a child process, its real exit status).
BINARY = {
    "fly-malformed",
    "region-not-utf8",
    "waves-duplicate-region",
    "scale-count-huge",
    "local-up-time-factor-zero",
    "deploy-image-shell",
    "secrets-bad-pairs",
}


@pytest.fixture(scope="module")
def rig(shared_rig: Rig) -> Rig:
    """The shared deployed fleet; its pristine files are kept beside it."""
    pristine = shared_rig.root.parent / "pristine"
    if not pristine.exists():
        pristine.mkdir()
        shutil.copy2(shared_rig.root / "fly.toml", pristine / "fly.toml")
        shutil.copytree(shared_rig.root / "regions", pristine / "regions")
    return shared_rig


def _restore(rig: Rig) -> None:
    pristine = rig.root.parent / "pristine"
    shutil.copy2(pristine / "fly.toml", rig.root / "fly.toml")
    shutil.rmtree(rig.root / "regions")
    shutil.copytree(pristine / "regions", rig.root / "regions")


def _program(argv: list[str]) -> int:
    try:
        Program().run(["invoke", "--search-root", str(REPO), *argv])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def test_the_table_covers_files_and_flags() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    tasks = {shlex.split(c.command)[0] for c in CASES}
    assert tasks == {
        "deploy",
        "plan",
        "scale",
        "status",
        "logs",
        "drill",
        "rollback",
        "local.up",
        "secrets",
        "ssh",
    }


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(
    rig: Rig,
    case: Case,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _restore(rig)
    if case.edit is not None:
        case.edit(rig.root)
    for name, value in rig.environ().items():
        monkeypatch.setenv(name, value)
    for name in ("FLY_API_TOKEN", "FLY_FLAPS_BASE_URL", "FLY_APP_NAME", "FLY_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(rig.root)
    mark = rig.log_mark()
    try:
        if case.id in BINARY:
            done = rig.invoke(*shlex.split(case.command))
            code, out, err = done.returncode, done.stdout, done.stderr
        else:
            code = _program(shlex.split(case.command))
            out, err = capsys.readouterr()
    finally:
        _restore(rig)

    assert code == 2, (code, out[-500:], err[-500:])
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), lines[0]
    assert case.names in lines[0], lines[0]
    calls = [r for r in rig.requests_since(mark) if str(r.get("path", "")).startswith("/v1")]
    changed = [r for r in calls if r.get("mutating")]
    assert changed == [], changed
    # Commands that check their input before connecting send nothing at all.
    if not case.command.startswith(("rollback", "status", "logs")):
        assert calls == [], calls
