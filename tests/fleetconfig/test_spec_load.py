"""The sample fleet loads into the DeploySpec the planner expects, from any directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.fleetconfig import (
    DeploySpec,
    DrillObjectives,
    MountSpec,
    RegionSpec,
    ServiceCheckSpec,
    ServiceSpec,
    VMSize,
    WaveSpec,
    load_spec,
)

SHARED_1X = VMSize(cpu_kind="shared", cpus=1, memory_mb=256, preset="shared-cpu-1x")


def _region(code: str, count: int, role: str) -> RegionSpec:
    return RegionSpec(
        code=code,
        count=count,
        vm=SHARED_1X,
        volume_size_gb=1,
        role=role,  # type: ignore[arg-type]
        max_unavailable=1,
        source=f"regions/{code}.toml",
    )


EXPECTED = DeploySpec(
    app="sample-fleet",
    primary_region="syd",
    image="registry.fly.io/sample-app:v1",
    env={"DATA_DIR": "/app/.data", "LOG_LEVEL": "info"},
    mount=MountSpec(source="data", destination="/app/.data", initial_size_gb=1),
    service=ServiceSpec(
        internal_port=8080,
        force_https=True,
        auto_stop_machines="off",
        auto_start_machines=True,
        min_machines_running=1,
        checks=(
            ServiceCheckSpec(
                type="http",
                method="GET",
                path="/status",
                interval_s=2.0,
                timeout_s=1.0,
                grace_period_s=2.0,
            ),
        ),
    ),
    regions={
        "ams": _region("ams", 1, "replica"),
        "dfw": _region("dfw", 2, "replica"),
        "syd": _region("syd", 2, "primary"),
    },
    waves=(
        WaveSpec(
            index=1,
            regions=("syd",),
            bake_s=3.0,
            max_error_rate=0.05,
            max_p95_ms=500.0,
            on_failure="rollback_region",
            max_concurrency=8,
        ),
        WaveSpec(
            index=2,
            regions=("dfw", "ams"),
            bake_s=3.0,
            max_error_rate=0.05,
            max_p95_ms=500.0,
            on_failure="rollback_wave",
            max_concurrency=8,
        ),
    ),
    drill=DrillObjectives(
        rto_s=60.0, rpo_records=20, rpo_s=5.0, max_error_rate=0.5, max_duration_s=300.0
    ),
)


def _without_location(spec: DeploySpec) -> DeploySpec:
    from dataclasses import replace

    return replace(spec, root="", digest="")


def test_repo_sample_fleet_loads_into_expected_spec(repo: Path) -> None:
    spec = load_spec(repo)
    assert _without_location(spec) == EXPECTED
    assert list(spec.regions) == ["ams", "dfw", "syd"]
    assert spec.wave_of("ams").index == 2
    assert spec.root == str(repo)
    assert len(spec.digest) == 64
    assert spec.ignored_keys == ()


def test_copy_in_temp_dir_loads_the_same_spec_and_digest(fleet: Path, repo: Path) -> None:
    here = load_spec(repo)
    there = load_spec(fleet)
    assert _without_location(there) == _without_location(here)
    assert there.digest == here.digest
    assert there.root == str(fleet)


def test_loads_from_another_working_directory(
    fleet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    relative = Path(os.path.relpath(fleet, elsewhere))
    spec = load_spec(relative)
    assert spec.regions["syd"].source == "regions/syd.toml"
    assert spec.root == str(fleet)


def test_error_paths_are_relative_to_root(fleet: Path, tmp_path: Path) -> None:
    (fleet / "regions" / "dfw.toml").write_text("count = -1\n")
    with pytest.raises(ConfigError) as err:
        load_spec(fleet)
    assert str(err.value).startswith("regions/dfw.toml: count: ")
    assert str(tmp_path) not in str(err.value)


def test_digest_changes_with_the_desired_fleet(fleet: Path) -> None:
    before = load_spec(fleet).digest
    path = fleet / "regions" / "ams.toml"
    path.write_text(path.read_text().replace("count = 1", "count = 2"))
    assert load_spec(fleet).digest != before


def test_app_and_image_overrides(fleet: Path) -> None:
    spec = load_spec(
        fleet, app_override="other-app", image_override="registry.fly.io/sample-app:v2"
    )
    assert spec.app == "other-app"
    assert spec.image == "registry.fly.io/sample-app:v2"


@pytest.mark.parametrize(
    ("kwargs", "where"),
    [
        ({"app_override": "Other_App"}, "FLY_APP_NAME: "),
        ({"image_override": "sample app:v2"}, "--image: "),
    ],
)
def test_bad_overrides_name_their_source(fleet: Path, kwargs: dict[str, str], where: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_spec(fleet, **kwargs)
    assert str(err.value).startswith(where)


def test_without_waves_file_primary_goes_first(fleet: Path) -> None:
    (fleet / "regions" / "waves.toml").unlink()
    spec = load_spec(fleet)
    assert [w.regions for w in spec.waves] == [("syd",), ("ams", "dfw")]
    assert spec.drill == DrillObjectives()


def test_defaults_fill_what_region_and_wave_files_leave_out(fleet: Path) -> None:
    (fleet / "regions" / "dfw.toml").write_text("count = 5\n")
    (fleet / "regions" / "waves.toml").write_text(
        '[[wave]]\nregions = ["syd"]\n[[wave]]\nregions = ["dfw", "ams"]\n'
    )
    spec = load_spec(fleet)
    dfw = spec.regions["dfw"]
    assert dfw.vm == SHARED_1X  # fly.toml's [[vm]]
    assert dfw.volume_size_gb == 1  # fly.toml's initial_size
    assert dfw.role == "replica"
    assert dfw.max_unavailable == 2  # flyctl's default 0.33 of 5, rounded up
    assert spec.waves[1] == WaveSpec(index=2, regions=("dfw", "ams"))


def test_flyctl_forms_are_accepted(fleet: Path) -> None:
    (fleet / "fly.toml").write_text(
        """
app = "sample-fleet"
primary_region = "syd"
kill_signal = "SIGINT"
kill_timeout = "5s"

[build]
  image = "registry.fly.io/sample-app:v1"
  dockerfile = "Dockerfile"

[deploy]
  strategy = "rolling"

[mounts]
  source = "data"
  destination = "/app/.data/"
  initial_size = "3gb"

[http_service]
  internal_port = 8080
  auto_stop_machines = true

  [[http_service.checks]]
    path = "/status"
    interval = "10s"
    timeout = "500ms"
    grace_period = "1m"

[[vm]]
  cpu_kind = "shared"
  cpus = 2
  memory = "1gb"
""",
    )
    spec = load_spec(fleet)
    assert spec.mount == MountSpec(source="data", destination="/app/.data", initial_size_gb=3)
    assert spec.service is not None
    assert spec.service.auto_stop_machines == "stop"
    # Service checks stay in their service, as flyctl puts them in services[].checks.
    assert spec.checks == ()
    assert spec.service.checks == (
        ServiceCheckSpec(
            type="http", path="/status", interval_s=10.0, timeout_s=0.5, grace_period_s=60.0
        ),
    )
    assert spec.ignored_keys == (
        "fly.toml: build.dockerfile",
        "fly.toml: deploy",
    )
    # flyctl sends these as the machine's stop_config, and so does this tool.
    assert (spec.kill_signal, spec.kill_timeout_s) == ("SIGINT", 5.0)
    # The region files name a preset and memory, which win over the app-wide [[vm]].
    assert spec.regions["syd"].vm == SHARED_1X
    (fleet / "regions" / "ams.toml").write_text("count = 1\n")
    assert load_spec(fleet).regions["ams"].vm == VMSize("shared", 2, 1024, None)


def test_region_overrides_only_cpus_from_app_wide_size(fleet: Path) -> None:
    (fleet / "regions" / "ams.toml").write_text("count = 1\ncpus = 4\n")
    assert load_spec(fleet).regions["ams"].vm == VMSize("shared", 4, 1024, "shared-cpu-4x")
    (fleet / "regions" / "ams.toml").write_text(
        'count = 1\ncpu_kind = "performance"\ncpus = 2\nmemory_mb = 6144\n'
    )
    assert load_spec(fleet).regions["ams"].vm == VMSize("performance", 2, 6144, None)


def test_byte_order_mark_and_crlf_are_accepted(fleet: Path) -> None:
    path = fleet / "regions" / "dfw.toml"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    assert load_spec(fleet).regions["dfw"].count == 2


def test_stateless_app_has_no_volumes(fleet: Path) -> None:
    fly = fleet / "fly.toml"
    text = fly.read_text()
    start = text.index("[[mounts]]")
    end = text.index("[http_service]")
    fly.write_text(text[:start] + text[end:])
    for code in ("syd", "dfw", "ams"):
        path = fleet / "regions" / f"{code}.toml"
        path.write_text(path.read_text().replace("volume_size_gb = 1\n", ""))
    spec = load_spec(fleet)
    assert spec.mount is None
    assert {r.volume_size_gb for r in spec.regions.values()} == {0}
