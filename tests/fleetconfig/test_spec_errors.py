"""Bad input: every mistake is one ConfigError line naming the file and key and what is allowed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError, ConfigProblems
from orchestrator.fleetconfig import load_spec


@dataclass(frozen=True)
class Case:
    """One broken fleet: ``old`` replaced by ``new`` in ``file`` (or the file written whole)."""

    id: str
    file: str
    old: str | None
    new: str | bytes | None
    where: str
    says: str


def _replace(file: str, old: str, new: str, where: str, says: str, id: str) -> Case:
    return Case(id, file, old, new, where, says)


def _write(file: str, content: str | bytes, where: str, says: str, id: str) -> Case:
    return Case(id, file, None, content, where, says)


DASH = "\u2013"  # messages write ranges with an en dash: 256-2048 MB
FLY, SYD, DFW, WAVES = "fly.toml", "regions/syd.toml", "regions/dfw.toml", "regions/waves.toml"

CASES = [
    # Files that are not TOML, or not text.
    _replace(
        FLY,
        'app = "sample-fleet"',
        'app = "sample-fleet',
        FLY,
        "invalid TOML at line 7",
        "fly-toml-unterminated",
    ),
    _replace(
        SYD,
        "count = 2",
        "count =",
        SYD,
        "invalid TOML at line 6, column 8: invalid value",
        "region-toml-no-value",
    ),
    _replace(
        SYD,
        "count = 2",
        "count = 2\ncount = 3",
        SYD,
        "invalid TOML at line 7, column 10: cannot overwrite a value",
        "region-duplicate-key",
    ),
    _write(DFW, b"count = 2\n# caf\xe9\n", DFW, "not UTF-8 text: byte 0xe9 at line 2", "non-utf8"),
    _write(FLY, b"\xff\xfe a", FLY, "not UTF-8 text", "fly-toml-utf16"),
    _replace(
        SYD,
        "count = 2",
        'count = 2\n"a\\nb" = 1',
        f'{SYD}: "a\\nb"',
        "unknown key",
        "key-with-newline",
    ),
    _replace(
        FLY,
        'LOG_LEVEL = "info"',
        'LOG_LEVEL = "info"\n"MY\\nVAR" = "x"',
        f'{FLY}: env."MY\\nVAR"',
        "not a valid environment variable name",
        "env-name-with-newline",
    ),
    _replace(
        FLY,
        'path = "/status"',
        'path = "/status\\r\\nX-Evil: 1"',
        f"{FLY}: http_service.checks[1].path",
        "contains a control character ('\\r')",
        "check-path-header-injection",
    ),
    # Wrong types and ranges in region files.
    _replace(
        SYD, "count = 2", 'count = "2"', f"{SYD}: count", "got a string ('2')", "count-string"
    ),
    _replace(
        SYD, "count = 2", "count = -1", f"{SYD}: count", "from 0 to 1000, got -1", "count-negative"
    ),
    _replace(
        SYD, "count = 2", "count = 1001", f"{SYD}: count", "from 0 to 1000, got 1001", "count-huge"
    ),
    _replace(
        SYD, "count = 2", "count = true", f"{SYD}: count", "got a boolean (true)", "count-bool"
    ),
    _replace(DFW, "count = 2", "# none", f"{DFW}: count", "missing", "count-missing"),
    _replace(
        SYD,
        "count = 2",
        "count = 0",
        f"{SYD}: count",
        "primary region needs at least 1",
        "primary-empty",
    ),
    _replace(
        SYD,
        "count = 2",
        "count = 2\ncuont = 2",
        f"{SYD}: cuont",
        "did you mean 'count'",
        "unknown-key",
    ),
    _replace(
        SYD,
        "max_unavailable = 1",
        "max_unavailable = 0",
        f"{SYD}: max_unavailable",
        "fraction of count between 0 and 1",
        "max-unavailable-zero",
    ),
    _replace(
        SYD,
        "max_unavailable = 1",
        "max_unavailable = 1.5",
        f"{SYD}: max_unavailable",
        "got 1.5",
        "max-unavailable-1.5",
    ),
    _replace(
        SYD,
        "volume_size_gb = 1",
        "volume_size_gb = 0",
        f"{SYD}: volume_size_gb",
        "from 1 to 500 GB",
        "volume-zero",
    ),
    _replace(
        DFW,
        'role = "replica"',
        'role = "primary"',
        f"{DFW}: role",
        "disagrees with fly.toml primary_region = 'syd'",
        "role-disagrees",
    ),
    _replace(
        DFW,
        'role = "replica"',
        'role = "leader"',
        f"{DFW}: role",
        "allowed primary, replica",
        "role-unknown",
    ),
    # Impossible VM sizes.
    _replace(
        SYD,
        'vm = "shared-cpu-1x"',
        'vm = "performance-3x"',
        f"{SYD}: vm",
        "did you mean performance-2x or performance-4x?",
        "preset-unknown",
    ),
    _replace(
        SYD,
        "memory_mb = 256",
        "memory_mb = 4096",
        f"{SYD}: memory_mb",
        f"4096 MB is not allowed for shared-cpu-1x (1 shared CPU): allowed 256{DASH}2048 MB "
        "in steps of 256",
        "memory-too-big",
    ),
    _replace(
        SYD,
        "memory_mb = 256",
        "memory_mb = 100",
        f"{SYD}: memory_mb",
        f"allowed 256{DASH}2048 MB",
        "memory-too-small",
    ),
    _replace(
        SYD,
        "memory_mb = 256",
        "memory_mb = 300",
        f"{SYD}: memory_mb",
        "in steps of 256 (nearest: 256 MB)",
        "memory-granularity",
    ),
    _replace(
        SYD,
        'vm = "shared-cpu-1x"\nmemory_mb = 256',
        'vm = "performance-1x"\nmemory_mb = 2560',
        f"{SYD}: memory_mb",
        f"allowed 2048{DASH}8192 MB in steps of 1024",
        "performance-granularity",
    ),
    _replace(
        SYD,
        'vm = "shared-cpu-1x"',
        'vm = "shared-cpu-1x"\ncpus = 3',
        f"{SYD}: cpus",
        "allowed 1, 2, 4, 6, 8",
        "cpus-3",
    ),
    _replace(
        SYD,
        'vm = "shared-cpu-1x"',
        'cpu_kind = "dedicated"',
        f"{SYD}: cpu_kind",
        "allowed shared, performance",
        "cpu-kind-unknown",
    ),
    _replace(
        SYD,
        'vm = "shared-cpu-1x"',
        'vm = "a100-40gb"',
        f"{SYD}: vm",
        "GPU size 'a100-40gb' is not supported",
        "gpu-preset",
    ),
    _replace(
        FLY,
        'memory = "256mb"',
        'memory = "4gb"',
        f"{FLY}: vm.memory",
        "4096 MB is not allowed for shared-cpu-1x",
        "fly-vm-memory",
    ),
    # Region codes, region files and waves.
    _write(
        "regions/xyz.toml",
        "count = 1\n",
        "regions/xyz.toml",
        "unknown Fly region 'xyz'",
        "region-file-unknown",
    ),
    _write(
        "regions/sydney.toml",
        "count = 1\n",
        "regions/sydney.toml",
        "did you mean syd, Sydney, Australia?",
        "region-file-city",
    ),
    _write(
        "regions/lhr.toml",
        "count = 1\n",
        f"{WAVES}: wave",
        "regions/lhr.toml is in no wave",
        "region-not-in-wave",
    ),
    _replace(
        WAVES,
        'regions = ["dfw", "ams"]',
        'regions = ["dfw", "ams", "lhr"]',
        f"{WAVES}: wave[2].regions",
        "'lhr' has no region file",
        "wave-region-no-file",
    ),
    _replace(
        WAVES,
        'regions = ["dfw", "ams"]',
        'regions = ["dfw", "ams", "syd"]',
        f"{WAVES}: wave[2].regions",
        "'syd' is already in wave 1",
        "wave-duplicate",
    ),
    _replace(
        WAVES,
        'regions = ["dfw", "ams"]',
        'regions = ["dfw", "dfw", "ams"]',
        f"{WAVES}: wave[2].regions",
        "twice in this wave",
        "wave-duplicate-same",
    ),
    _replace(
        WAVES,
        'regions = ["dfw", "ams"]',
        "regions = []",
        f"{WAVES}: wave[2].regions",
        "empty: a wave needs at least one region",
        "wave-empty",
    ),
    _replace(
        WAVES,
        'regions = ["dfw", "ams"]',
        'regions = ["dfw", "amz"]',
        f"{WAVES}: wave[2].regions",
        "did you mean ams?",
        "wave-region-typo",
    ),
    _replace(
        WAVES,
        'regions = ["dfw", "ams"]',
        'regions = "dfw"',
        f"{WAVES}: wave[2].regions",
        "expected an array of region codes",
        "wave-regions-string",
    ),
    _replace(
        WAVES,
        'on_failure = "rollback_wave"',
        'on_failure = "rollback"',
        f"{WAVES}: wave[2].on_failure",
        "allowed rollback_region, rollback_wave, rollback_all, halt",
        "on-failure-unknown",
    ),
    _replace(
        WAVES,
        'bake_time = "3s"',
        'bake_time = "-3s"',
        f"{WAVES}: defaults.bake_time",
        'a duration such as "15s"',
        "bake-negative",
    ),
    _replace(
        WAVES,
        'bake_time = "3s"',
        "bake_time = 3",
        f"{WAVES}: defaults.bake_time",
        "got an integer (3)",
        "bake-number",
    ),
    _replace(
        WAVES,
        "max_error_rate = 0.05",
        "max_error_rate = 1.5",
        f"{WAVES}: defaults.max_error_rate",
        "from 0 to 1, got 1.5",
        "error-rate-above-1",
    ),
    _replace(
        WAVES,
        "max_error_rate = 0.05",
        "max_error_rate = nan",
        f"{WAVES}: defaults.max_error_rate",
        "from 0 to 1, got nan",
        "error-rate-nan",
    ),
    _replace(
        WAVES,
        "max_p95_ms = 500",
        "max_p95_ms = 0",
        f"{WAVES}: defaults.max_p95_ms",
        "a number above 0",
        "p95-zero",
    ),
    _replace(
        WAVES,
        "max_concurrency = 8",
        "max_concurrency = 0",
        f"{WAVES}: defaults.max_concurrency",
        "from 1 to 64",
        "concurrency-zero",
    ),
    _replace(
        WAVES,
        "max_concurrency = 8",
        'max_concurrency = 8\n  pause = "yes"',
        f"{WAVES}: defaults.pause",
        "true or false",
        "pause-not-boolean",
    ),
    _write(
        WAVES,
        '[wave]\nregions = ["syd", "dfw", "ams"]\n',
        f"{WAVES}: wave",
        "write [[wave]], not [wave]",
        "wave-single-table",
    ),
    _replace(
        WAVES,
        "rpo_records = 20",
        "rpo = 20",
        f"{WAVES}: drill.rpo",
        "did you mean 'rpo_records'",
        "drill-unknown-key",
    ),
    _replace(
        WAVES,
        'rto = "60s"',
        'rto = "10m"',
        f"{WAVES}: drill.rto",
        "longer than the whole drill may take (max_duration 300s)",
        "drill-rto-too-long",
    ),
    # fly.toml.
    _replace(
        FLY,
        'primary_region = "syd"',
        'primary_region = "lhr"',
        f"{FLY}: primary_region",
        "'lhr' has no region file",
        "primary-not-in-fleet",
    ),
    _replace(
        FLY,
        'primary_region = "syd"',
        'primary_region = "syn"',
        f"{FLY}: primary_region",
        "unknown Fly region 'syn' (did you mean syd?)",
        "primary-typo",
    ),
    _replace(
        FLY,
        'primary_region = "syd"',
        'primary_regoin = "syd"',
        f"{FLY}: primary_regoin",
        "did you mean 'primary_region'",
        "fly-unknown-key",
    ),
    _replace(
        FLY,
        'app = "sample-fleet"',
        'app = "../etc"',
        f"{FLY}: app",
        "not a valid Fly app name",
        "app-path-like",
    ),
    _replace(
        FLY,
        'app = "sample-fleet"',
        'app = "fleet;rm -rf ~"',
        f"{FLY}: app",
        "lowercase letters, digits and dashes",
        "app-shell-like",
    ),
    _replace(
        FLY,
        'app = "sample-fleet"',
        'app = "Sample_Fleet"',
        f"{FLY}: app",
        "not a valid Fly app name",
        "app-uppercase",
    ),
    _replace(
        FLY,
        'source = "data"',
        'source = "../data"',
        f"{FLY}: mounts.source",
        "not a valid Fly volume name: use 1 to 30 letters, digits and underscores",
        "volume-path-like",
    ),
    _replace(
        FLY,
        'source = "data"',
        f'source = "{"d" * 31}"',
        f"{FLY}: mounts.source",
        "not a valid Fly volume name",
        "volume-too-long",
    ),
    _replace(
        FLY,
        'destination = "/app/.data"',
        'destination = "app/.data"',
        f"{FLY}: mounts.destination",
        "expected an absolute path",
        "mount-relative",
    ),
    _replace(
        FLY,
        'destination = "/app/.data"',
        'destination = "/app/../etc"',
        f"{FLY}: mounts.destination",
        "without '.' or '..'",
        "mount-dotdot",
    ),
    _replace(
        FLY,
        'image = "registry.fly.io/sample-app:v1"',
        'image = "registry.fly.io/sample-app:v1 && rm -rf /"',
        f"{FLY}: build.image",
        "is not an image reference",
        "image-shell-like",
    ),
    _replace(
        FLY,
        'image = "registry.fly.io/sample-app:v1"',
        'dockerfile = "Dockerfile"',
        f"{FLY}: build.image",
        "set [build] image or pass --image",
        "image-missing",
    ),
    _replace(
        FLY,
        'interval = "2s"',
        'interval = "2 seconds"',
        f"{FLY}: http_service.checks[1].interval",
        "got a string ('2 seconds')",
        "check-interval-words",
    ),
    _replace(
        FLY,
        "[[vm]]",
        '[checks.alive]\n  type = "tcp"\n  port = 8080\n  interval = "0s"\n\n[[vm]]',
        f"{FLY}: checks.alive.interval",
        "too short: Fly's minimum check interval is 2s",
        "check-interval-zero",
    ),
    _replace(
        FLY,
        "[[vm]]",
        '[checks.alive]\n  type = "grpc"\n  port = 8080\n\n[[vm]]',
        f"{FLY}: checks.alive.type",
        "allowed http, tcp",
        "check-type",
    ),
    _replace(
        FLY,
        'path = "/status"',
        'path = "status"',
        f"{FLY}: http_service.checks[1].path",
        "starting with '/'",
        "check-path",
    ),
    _replace(
        FLY,
        "[[vm]]",
        '[checks.alive]\n  type = "tcp"\n  port = 70000\n\n[[vm]]',
        f"{FLY}: checks.alive.port",
        "from 1 to 65535",
        "check-port",
    ),
    _replace(
        FLY,
        "[[vm]]",
        "[checks.'a b']\n  type = \"tcp\"\n  port = 8080\n\n[[vm]]",
        f'{FLY}: checks."a b"',
        "not a valid check name",
        "check-name",
    ),
    _replace(
        FLY,
        'LOG_LEVEL = "info"',
        'LOG-LEVEL = "info"',
        f"{FLY}: env.LOG-LEVEL",
        "not a valid environment variable name",
        "env-name",
    ),
    _replace(
        FLY,
        'LOG_LEVEL = "info"',
        'PRIMARY_REGION = "dfw"',
        f"{FLY}: env.PRIMARY_REGION",
        "disagrees with primary_region = 'syd'",
        "env-primary-region",
    ),
    _replace(
        FLY,
        'auto_stop_machines = "off"',
        'auto_stop_machines = "sleep"',
        f"{FLY}: http_service.auto_stop_machines",
        "allowed off, stop, suspend",
        "auto-stop",
    ),
    _replace(
        FLY,
        "[[vm]]",
        "[[vm]]\n  gpus = 1",
        f"{FLY}: vm.gpus",
        "not supported by this tool: GPU machines",
        "fly-vm-gpu",
    ),
]


def _apply(root: Path, case: Case) -> None:
    path = root / case.file
    if case.old is None:
        if isinstance(case.new, bytes):
            path.write_bytes(case.new)
        else:
            path.write_text(str(case.new), encoding="utf-8")
        return
    text = path.read_text(encoding="utf-8")
    assert case.old in text, f"{case.id}: {case.old!r} is not in the sample {case.file}"
    assert isinstance(case.new, str)
    path.write_text(text.replace(case.old, case.new, 1), encoding="utf-8")


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_naming_file_and_key(fleet: Path, case: Case) -> None:
    _apply(fleet, case)
    with pytest.raises(ConfigError) as err:
        load_spec(fleet)
    text = str(err.value)
    assert "\n" not in text
    assert "\r" not in text
    assert text.startswith(case.where + ": "), text
    assert case.says in text, text
    assert err.value.exit_code == 2


def test_missing_fly_toml_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_spec(tmp_path)
    assert str(err.value) == f"fly.toml: not found in {tmp_path}"


def test_missing_regions_directory_is_named(fleet: Path) -> None:
    for path in (fleet / "regions").iterdir():
        path.unlink()
    (fleet / "regions").rmdir()
    with pytest.raises(ConfigError) as err:
        load_spec(fleet)
    assert str(err.value).startswith("regions/: no regions/ directory")


def test_editor_leftovers_in_regions_are_ignored(fleet: Path) -> None:
    (fleet / "regions" / ".#syd.toml").write_text("not toml")
    (fleet / "regions" / "notes.md").write_text("# notes")
    assert sorted(load_spec(fleet).regions) == ["ams", "dfw", "syd"]


def test_nothing_is_written_while_loading(fleet: Path) -> None:
    before = {p: p.read_bytes() for p in fleet.rglob("*") if p.is_file()}
    load_spec(fleet)
    assert {p: p.read_bytes() for p in fleet.rglob("*") if p.is_file()} == before


def test_every_problem_of_every_file_is_reported_at_once(fleet: Path) -> None:
    (fleet / "regions" / "dfw.toml").write_text(
        'role = "primary"\ncount = -1\nvm = "shared-cpu-1x"\nmemory_mb = 4096\nmax_unavail = 1\n'
    )
    (fleet / "regions" / "ams.toml").write_text('count = "1"\n')
    fly = (fleet / "fly.toml").read_text()
    (fleet / "fly.toml").write_text(fly.replace('LOG_LEVEL = "info"', "LOG-LEVEL = 1"))
    with pytest.raises(ConfigProblems) as err:
        load_spec(fleet)
    assert [p.where for p in err.value.problems] == [
        f"{FLY}: env.LOG-LEVEL",
        "regions/ams.toml: count",
        f"{DFW}: max_unavail",
        f"{DFW}: count",
        f"{DFW}: role",
        f"{DFW}: memory_mb",
    ]
    assert str(err.value).count("\n") == 5
    assert err.value.exit_code == 2


def test_every_bad_wave_is_reported_at_once(fleet: Path) -> None:
    waves = fleet / "regions" / "waves.toml"
    text = waves.read_text()
    text = text.replace('regions = ["syd"]', 'regions = ["syd", "lhr"]')
    text = text.replace('on_failure = "rollback_wave"', 'on_failure = "panic"')
    waves.write_text(text.replace('bake_time = "3s"', "bake_time = 3"))
    with pytest.raises(ConfigProblems) as err:
        load_spec(fleet)
    assert [p.where for p in err.value.problems] == [
        f"{WAVES}: defaults.bake_time",
        f"{WAVES}: wave[1].regions",
        f"{WAVES}: wave[2].on_failure",
    ]


def test_a_missing_app_names_fly_app_name_which_then_works(fleet: Path) -> None:
    toml = fleet / "fly.toml"
    toml.write_text(toml.read_text().replace('app = "sample-fleet"\n', ""))

    with pytest.raises(ConfigError) as err:
        load_spec(fleet)

    assert str(err.value).startswith("fly.toml: app: missing: ")
    assert "FLY_APP_NAME" in str(err.value)
    assert load_spec(fleet, app_override="from-env").app == "from-env"
