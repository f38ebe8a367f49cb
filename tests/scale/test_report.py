"""Desired beside observed: counts, sizes, volumes and drift, from plain values (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
from execute.localfleet import copy_fleet

from orchestrator.fleetconfig.load import load_spec
from orchestrator.fleetconfig.model import DeploySpec
from orchestrator.plan.fleet import Fleet, ObservedGuest, ObservedMachine, ObservedVolume
from orchestrator.scale.report import SIZE_KEYS, build_report

SMALL = ObservedGuest("shared", 1, 256)


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> DeploySpec:
    return load_spec(copy_fleet(tmp_path_factory.mktemp("report") / "fleet"))


def machine(
    mid: str,
    region: str,
    slot: int | None,
    guest: ObservedGuest = SMALL,
    volume: str | None = None,
    state: str = "started",
) -> ObservedMachine:
    return ObservedMachine(
        id=mid,
        name=f"sample-fleet-{region}-{slot}",
        region=region,
        slot=slot,
        state=state,
        version="v",
        release="v1-x",
        config_digest="d",
        image="registry.fly.io/sample-app:v1",
        guest=guest,
        volume_id=volume,
        checks_passing=True,
        cordoned=False,
    )


def volume(vid: str, region: str, size: int = 1, attached: str | None = None) -> ObservedVolume:
    return ObservedVolume(vid, "data", region, size, attached, "created")


def test_a_fleet_at_its_spec_has_no_drift(spec: DeploySpec) -> None:
    fleet = Fleet(
        app="sample-fleet",
        machines=(
            machine("s1", "syd", 1, volume="v1"),
            machine("s2", "syd", 2, volume="v2"),
            machine("d1", "dfw", 1, volume="v3"),
            machine("d2", "dfw", 2, volume="v4"),
            machine("a1", "ams", 1, volume="v5"),
        ),
        volumes=(
            volume("v1", "syd", attached="s1"),
            volume("v2", "syd", attached="s2"),
            volume("v3", "dfw", attached="d1"),
            volume("v4", "dfw", attached="d2"),
            volume("v5", "ams", attached="a1"),
        ),
    )
    report = build_report(spec, fleet)
    assert [r.code for r in report.regions] == ["ams", "dfw", "syd"]
    assert report.drifted == ()
    syd = report.region("syd").to_json()
    assert syd["desired"] == {
        "count": 2,
        "cpu_kind": "shared",
        "cpus": 1,
        "memory_mb": 256,
        "volume_size_gb": 1,
        "preset": "shared-cpu-1x",
        "source": "regions/syd.toml",
    }
    observed = syd["observed"]
    assert {k: observed[k] for k in (*SIZE_KEYS, "volumes")} == {
        "count": 2,
        "cpu_kind": "shared",
        "cpus": 1,
        "memory_mb": 256,
        "volume_size_gb": 1,
        "volumes": 2,
    }
    assert syd["drift"] == []


def test_every_kind_of_drift_is_marked_and_mixed_sizes_are_null(spec: DeploySpec) -> None:
    big = ObservedGuest("shared", 2, 512)
    fleet = Fleet(
        app="sample-fleet",
        machines=(
            # syd: three machines (spec: 2), one of them resized by hand.
            machine("s1", "syd", 1, volume="v1"),
            machine("s2", "syd", 2, guest=big, volume="v2"),
            machine("s3", "syd", 3, volume="v3"),
            # lhr has no region file at all.
            machine("l1", "lhr", None),
        ),
        volumes=(
            volume("v1", "syd", attached="s1"),
            volume("v2", "syd", size=3, attached="s2"),
            volume("v3", "syd", attached="s3"),
            volume("v9", "syd"),  # left behind by a scale-down
        ),
    )
    report = build_report(spec, fleet)
    syd = report.region("syd")
    assert syd.drift == ("count", "cpus", "memory_mb")  # a bigger volume is not drift
    assert syd.observed.cpus is None
    assert syd.observed.memory_mb is None
    assert syd.observed.cpu_kind == "shared"
    assert syd.observed.volume_size_gb is None  # 1 and 3 GB
    assert syd.observed.volume_sizes == (1, 3)
    assert syd.observed.volumes == 4
    assert syd.observed.unattached == 1
    assert [(g.cpus, g.memory_mb, g.machines) for g in syd.observed.sizes] == [
        (1, 256, 2),
        (2, 512, 1),
    ]
    lhr = report.region("lhr")
    assert lhr.desired is None
    assert lhr.drift == ("count",)
    assert lhr.observed.unmanaged == 1
    # Regions of the spec with nothing running drift on count only.
    assert report.region("dfw").drift == ("count",)
    assert report.region("dfw").observed.cpu_kind is None


def test_a_volume_smaller_than_asked_is_drift(spec: DeploySpec, tmp_path: Path) -> None:
    root = copy_fleet(tmp_path / "fleet")
    syd = root / "regions" / "syd.toml"
    syd.write_text(syd.read_text().replace("volume_size_gb = 1", "volume_size_gb = 2"))
    fleet = Fleet(
        app="sample-fleet",
        machines=(machine("s1", "syd", 1, volume="v1"), machine("s2", "syd", 2, volume="v2")),
        volumes=(volume("v1", "syd", 2, "s1"), volume("v2", "syd", 1, "s2")),
    )
    report = build_report(load_spec(root), fleet, regions=["syd"])
    assert [r.code for r in report.regions] == ["syd"]
    assert report.region("syd").drift == ("volume_size_gb",)
