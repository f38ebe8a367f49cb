"""Restore points in deploy plans: which waves snapshot, which volumes, and in what order."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.fleetconfig.load import load_spec
from orchestrator.plan import build_plan
from orchestrator.plan.steps import StepKind

from .plan_helpers import IMAGE_V2, fleet_at, sample_spec, to_fleet

REPO = Path(__file__).resolve().parents[2]


def _snapshots(plan: object) -> list[str]:
    return [s.id for s in plan.steps() if s.kind is StepKind.VOLUME_SNAPSHOT]  # type: ignore[attr-defined]


def test_the_primary_wave_snapshots_every_volume_before_its_first_update() -> None:
    spec = sample_spec()
    plan = build_plan(spec, to_fleet(*fleet_at(spec)), image=IMAGE_V2)
    assert _snapshots(plan) == ["syd:volume.snapshot:1", "syd:volume.snapshot:2"]
    spearhead = plan.spearhead("syd")
    assert spearhead is not None
    assert set(plan.depends_on(spearhead.id)) == {"syd:volume.snapshot:1", "syd:volume.snapshot:2"}
    snap = plan.step("syd:volume.snapshot:2")
    assert snap.machine == "m-syd-2"
    assert snap.params["volume"] == "vol_syd_2"
    assert not snap.mutating


def test_a_replica_wave_snapshots_only_when_asked_and_after_the_earlier_wave() -> None:
    spec = sample_spec()
    waves = (spec.waves[0], replace(spec.waves[1], snapshot_before=True))
    plan = build_plan(replace(spec, waves=waves), to_fleet(*fleet_at(spec)), image=IMAGE_V2)
    assert {s for s in _snapshots(plan) if not s.startswith("syd")} == {
        "ams:volume.snapshot:1",
        "dfw:volume.snapshot:1",
        "dfw:volume.snapshot:2",
    }
    # Taken once syd passed its gates, right before dfw changes.
    assert "syd:gate.metrics" in plan.depends_on("dfw:volume.snapshot:1")
    assert "dfw:volume.snapshot:1" in plan.depends_on(plan.spearhead("dfw").id)  # type: ignore[union-attr]


def test_snapshot_before_false_turns_the_primary_wave_off() -> None:
    spec = sample_spec()
    waves = (replace(spec.waves[0], snapshot_before=False), spec.waves[1])
    plan = build_plan(replace(spec, waves=waves), to_fleet(*fleet_at(spec)), image=IMAGE_V2)
    assert _snapshots(plan) == []


def test_nothing_to_change_means_nothing_to_snapshot_and_a_first_deploy_has_no_volume_yet() -> None:
    spec = sample_spec()
    assert _snapshots(build_plan(spec, to_fleet(*fleet_at(spec)))) == []
    assert _snapshots(build_plan(spec, to_fleet([], []))) == []


def test_waves_toml_reads_snapshot_before_and_reports_a_bad_value(tmp_path: Path) -> None:
    import shutil

    shutil.copy2(REPO / "fly.toml", tmp_path / "fly.toml")
    shutil.copytree(REPO / "regions", tmp_path / "regions")
    waves = tmp_path / "regions" / "waves.toml"
    text = waves.read_text()
    marker = 'on_failure = "rollback_wave"'
    waves.write_text(text.replace(marker, marker + "\n  snapshot_before = true"))
    spec = load_spec(tmp_path)
    assert [w.snapshot_before for w in spec.waves] == [None, True]
    assert spec.drill.max_age_s == 30 * 86400
    waves.write_text(text.replace("[drill]\n", '[drill]\n  max_age = "168h"\n'))
    assert load_spec(tmp_path).drill.max_age_s == 7 * 86400
    waves.write_text(text.replace(marker, marker + '\n  snapshot_before = "yes"'))
    with pytest.raises(ConfigError) as caught:
        load_spec(tmp_path)
    assert "snapshot_before" in str(caught.value) or "snapshot_before" in str(
        getattr(caught.value, "problems", "")
    )
