"""`invoke scale` writes region files: comments and layout kept, nothing written on error."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.fleetconfig import FieldChange, VMSize, load_spec, update_region_file
from orchestrator.render.errors import problem_text

DASH = "\u2013"


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_edit_changes_only_the_value_lines(fleet: Path) -> None:
    path = fleet / "regions" / "syd.toml"
    original = path.read_bytes()
    edit = update_region_file(fleet, "syd", count=3, memory_mb=512)
    expected = original.replace(b"count = 2\n", b"count = 3\n").replace(
        b"memory_mb = 256\n", b"memory_mb = 512\n"
    )
    assert path.read_bytes() == expected
    comments = [line for line in original.splitlines() if line.startswith(b"#")]
    assert comments == [line for line in path.read_bytes().splitlines() if line.startswith(b"#")]
    assert edit.written
    assert edit.path == "regions/syd.toml"
    assert edit.changes == (
        FieldChange("count", 2, 3),
        FieldChange("memory_mb", 256, 512),
    )
    spec = load_spec(fleet)
    assert spec.regions["syd"].count == 3
    assert spec.regions["syd"].vm == VMSize("shared", 1, 512, None)


def test_inline_comments_and_odd_spacing_survive(fleet: Path) -> None:
    path = fleet / "regions" / "ams.toml"
    path.write_text('# top\ncount   =   1   # one is enough\n\n# size\nvm = "shared-cpu-1x"\n')
    update_region_file(fleet, "ams", count=2)
    assert (
        path.read_text()
        == '# top\ncount   =   2   # one is enough\n\n# size\nvm = "shared-cpu-1x"\n'
    )


def test_cpu_in_preset_style_moves_to_the_next_preset(fleet: Path) -> None:
    edit = update_region_file(fleet, "dfw", cpus=2)
    text = (fleet / "regions" / "dfw.toml").read_text()
    assert 'vm = "shared-cpu-2x"\nmemory_mb = 512\n' in text
    assert edit.after.vm == VMSize("shared", 2, 512, "shared-cpu-2x")
    assert edit.changes == (FieldChange("cpus", 1, 2), FieldChange("memory_mb", 256, 512))


def test_cpu_keeps_custom_memory_and_explicit_style(fleet: Path) -> None:
    path = fleet / "regions" / "ams.toml"
    path.write_text('count = 1\ncpu_kind = "shared"\ncpus = 1\nmemory_mb = 1024\n')
    update_region_file(fleet, "ams", cpus=4)
    assert path.read_text() == 'count = 1\ncpu_kind = "shared"\ncpus = 4\nmemory_mb = 1024\n'


def test_vm_resets_memory_to_the_presets_default(fleet: Path) -> None:
    update_region_file(fleet, "syd", memory_mb=2048)
    edit = update_region_file(fleet, "syd", vm="shared-cpu-2x")
    assert edit.after.vm == VMSize("shared", 2, 512, "shared-cpu-2x")
    assert 'vm = "shared-cpu-2x"\nmemory_mb = 512\n' in (fleet / "regions/syd.toml").read_text()


def test_vm_with_memory(fleet: Path) -> None:
    edit = update_region_file(fleet, "syd", vm="performance-2x", memory_mb=8192)
    assert edit.after.vm == VMSize("performance", 2, 8192, None)
    assert edit.changes == (
        FieldChange("cpu_kind", "shared", "performance"),
        FieldChange("cpus", 1, 2),
        FieldChange("memory_mb", 256, 8192),
    )


def test_new_keys_land_next_to_their_kin(fleet: Path) -> None:
    path = fleet / "regions" / "ams.toml"
    path.write_text("# ams\ncount = 1\n\n# the end\n")
    update_region_file(fleet, "ams", memory_mb=512, volume_size_gb=2)
    assert path.read_text() == (
        "# ams\ncount = 1\nmemory_mb = 512\nvolume_size_gb = 2\n\n# the end\n"
    )
    update_region_file(fleet, "ams", vm="performance-1x")
    assert load_spec(fleet).regions["ams"].vm == VMSize("performance", 1, 2048, "performance-1x")


def test_crlf_files_stay_crlf(fleet: Path) -> None:
    path = fleet / "regions" / "ams.toml"
    path.write_bytes(b"# ams\r\ncount = 1\r\n")
    update_region_file(fleet, "ams", count=2, memory_mb=512)
    assert path.read_bytes() == b"# ams\r\ncount = 2\r\nmemory_mb = 512\r\n"


def test_dry_run_returns_changes_and_writes_nothing(fleet: Path) -> None:
    before = _snapshot(fleet)
    edit = update_region_file(fleet, "ams", count=3, dry_run=True)
    assert edit.changes == (FieldChange("count", 1, 3),)
    assert edit.after.count == 3
    assert not edit.written
    assert _snapshot(fleet) == before


def test_no_change_writes_nothing(fleet: Path) -> None:
    before = _snapshot(fleet)
    edit = update_region_file(fleet, "syd", count=2, vm="shared-cpu-1x")
    assert edit.changes == ()
    assert not edit.written
    assert _snapshot(fleet) == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"memory_mb": 4096},
            "--memory: 4096 MB is not allowed for shared-cpu-1x (1 shared CPU): "
            f"allowed 256{DASH}2048 MB in steps of 256",
        ),
        (
            {"memory_mb": 100},
            "--memory: 100 MB is not allowed for shared-cpu-1x (1 shared CPU): "
            f"allowed 256{DASH}2048 MB in steps of 256",
        ),
        ({"cpus": 3}, "--cpu: 3 CPUs is not allowed for shared CPUs: allowed 1, 2, 4, 6, 8"),
        ({"vm": "performance-3x"}, "--vm: unknown VM size 'performance-3x' (did you mean"),
        ({"count": -1}, "--count: expected a whole number from 0 to 1000, got -1"),
        ({"count": 1001}, "--count: expected a whole number from 0 to 1000, got 1001"),
        ({"count": 0}, "--count: the primary region syd needs at least 1 machine"),
        ({"count": 3, "memory_mb": 4096}, "--memory: 4096 MB is not allowed"),
        ({"volume_size_gb": 0}, "--volume-size: expected a whole number from 1 to 500 GB"),
    ],
)
def test_bad_flags_name_the_flag_and_write_nothing(
    fleet: Path, kwargs: dict[str, object], message: str
) -> None:
    before = _snapshot(fleet)
    with pytest.raises(ConfigError) as err:
        update_region_file(fleet, "syd", **kwargs)  # type: ignore[arg-type]
    assert problem_text(err.value).startswith(message)
    assert "\n" not in problem_text(err.value)
    assert _snapshot(fleet) == before


def test_volumes_only_grow(fleet: Path) -> None:
    update_region_file(fleet, "dfw", volume_size_gb=3)
    before = _snapshot(fleet)
    with pytest.raises(ConfigError) as err:
        update_region_file(fleet, "dfw", volume_size_gb=2)
    assert problem_text(err.value) == (
        "--volume-size: Fly volumes only grow: 2 GB is below the current 3 GB"
    )
    assert _snapshot(fleet) == before


def test_cpu_that_leaves_custom_memory_out_of_range_blames_cpu(fleet: Path) -> None:
    update_region_file(fleet, "syd", vm="performance-2x", memory_mb=16384)
    before = _snapshot(fleet)
    with pytest.raises(ConfigError) as err:
        update_region_file(fleet, "syd", cpus=1)
    assert problem_text(err.value).startswith("--cpu: 16384 MB is not allowed for performance-1x")
    assert problem_text(err.value).endswith("; set --memory too")
    assert _snapshot(fleet) == before


@pytest.mark.parametrize(
    ("region", "message"),
    [
        (
            "lhr",
            "--region: 'lhr' is not in the fleet (no regions/lhr.toml); "
            "the fleet has ams, dfw, syd",
        ),
        ("sdy", "--region: unknown Fly region 'sdy' (did you mean syd?)"),
    ],
)
def test_regions_outside_the_fleet(fleet: Path, region: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        update_region_file(fleet, region, count=1)
    assert problem_text(err.value).startswith(message)


def test_a_broken_fleet_is_reported_and_left_alone(fleet: Path) -> None:
    waves = fleet / "regions" / "waves.toml"
    waves.write_text(waves.read_text().replace('"rollback_wave"', '"rollback"'))
    before = _snapshot(fleet)
    with pytest.raises(ConfigError) as err:
        update_region_file(fleet, "syd", count=3)
    assert str(err.value).startswith("regions/waves.toml: wave[2].on_failure: ")
    assert _snapshot(fleet) == before


def test_byte_order_mark_is_kept(fleet: Path) -> None:
    path = fleet / "regions" / "ams.toml"
    path.write_bytes(b"\xef\xbb\xbfcount = 1\n")
    update_region_file(fleet, "ams", count=2)
    assert path.read_bytes() == b"\xef\xbb\xbfcount = 2\n"


def test_file_mode_is_kept_and_no_temp_files_are_left(fleet: Path) -> None:
    path = fleet / "regions" / "ams.toml"
    path.chmod(0o640)
    update_region_file(fleet, "ams", count=2)
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in (fleet / "regions").iterdir()) == [
        "ams.toml",
        "dfw.toml",
        "syd.toml",
        "waves.toml",
    ]
