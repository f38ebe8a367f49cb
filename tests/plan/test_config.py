"""Desired machine configs, release ids and config digests."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from orchestrator.fleetconfig.model import VMSize
from orchestrator.plan import config_digest, desired_config, release_id
from orchestrator.plan.config import go_duration, image_tag

from .plan_helpers import IMAGE_V2, region, sample_spec


def test_release_id_is_the_tag_and_a_short_digest() -> None:
    spec = sample_spec()
    assert re.fullmatch(r"v1-[0-9a-f]{8}", release_id(spec))
    assert release_id(spec) == release_id(sample_spec())
    assert release_id(replace(spec, image=IMAGE_V2)).startswith("v2-")


def test_release_id_follows_app_wide_settings_not_region_sizes() -> None:
    spec = sample_spec()
    assert release_id(replace(spec, env={**spec.env, "LOG_LEVEL": "debug"})) != release_id(spec)
    assert release_id(sample_spec(syd=5, dfw=0)) == release_id(spec)


@pytest.mark.parametrize(
    ("image", "tag"),
    [
        ("registry.fly.io/sample-app:v2", "v2"),
        ("registry.fly.io/sample-app", "latest"),
        ("localhost:5000/app", "latest"),
        ("localhost:5000/app:2026.01", "2026.01"),
        ("repo/app@sha256:0123456789abcdef0123", "sha256-0123456789ab"),
    ],
)
def test_image_tag(image: str, tag: str) -> None:
    assert image_tag(image) == tag


@pytest.mark.parametrize(
    ("seconds", "text"), [(15.0, "15s"), (2, "2s"), (0.5, "500ms"), (1.5, "1500ms"), (0, "0s")]
)
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_desired_config_is_a_full_fly_machine_config() -> None:
    spec = sample_spec()
    cfg = desired_config(spec, "dfw", 2)
    assert cfg["image"] == "registry.fly.io/sample-app:v1"
    assert cfg["guest"] == {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256}
    assert cfg["env"] == {"DATA_DIR": "/app/.data", "LOG_LEVEL": "info", "PRIMARY_REGION": "syd"}
    assert cfg["mounts"] == [{"path": "/app/.data", "name": "data"}]
    # The sample's check is a service check: inside its service, as flyctl builds it (no
    # name, no port: Fly probes internal_port), not a top-level check.
    assert cfg["checks"] == {}
    (service,) = cfg["services"]
    assert service["checks"] == [
        {
            "type": "http",
            "interval": "2s",
            "timeout": "1s",
            "grace_period": "2s",
            "method": "GET",
            "path": "/status",
        }
    ]
    assert service["protocol"] == "tcp"
    assert service["internal_port"] == 8080
    assert service["ports"] == [
        {"port": 80, "handlers": ["http"], "force_https": True},
        {"port": 443, "handlers": ["tls", "http"]},
    ]
    assert (service["autostop"], service["autostart"], service["min_machines_running"]) == (
        "off",
        True,
        1,
    )
    assert cfg["restart"] == {"policy": "on-failure", "max_retries": 10}
    assert cfg["metadata"] == {
        "fly_platform_version": "v2",
        "fly_process_group": "app",
        "fly_release_id": release_id(spec),
        "orch_slot": "2",
        "orch_config_digest": config_digest(cfg),
    }


def test_region_vm_size_goes_into_guest() -> None:
    spec = sample_spec()
    big = VMSize("performance", 2, 4096, "performance-2x")
    spec = replace(spec, regions={**spec.regions, "ams": region("ams", 1, vm=big)})
    assert desired_config(spec, "ams", 1)["guest"] == {
        "cpu_kind": "performance",
        "cpus": 2,
        "memory_mb": 4096,
    }


def test_stateless_spec_has_no_mounts_or_services() -> None:
    spec = replace(sample_spec(), mount=None, service=None, checks=())
    cfg = desired_config(spec, "syd", 1)
    assert cfg["mounts"] == []
    assert cfg["services"] == []
    assert cfg["checks"] == {}


def test_fly_toml_boolean_autostop_is_mapped() -> None:
    spec = sample_spec()
    assert spec.service is not None
    spec = replace(spec, service=replace(spec.service, auto_stop_machines="true"))
    assert desired_config(spec, "syd", 1)["services"][0]["autostop"] == "stop"


def test_config_digest_ignores_metadata_and_volume_ids() -> None:
    spec = sample_spec()
    cfg = desired_config(spec, "syd", 1)
    other_slot = desired_config(spec, "syd", 2)
    assert config_digest(cfg) == config_digest(other_slot)
    with_volume = desired_config(spec, "syd", 1)
    with_volume["mounts"][0]["volume"] = "vol_123"
    assert config_digest(with_volume) == config_digest(cfg)


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c.update(image="registry.fly.io/sample-app:v2"),
        lambda c: c["env"].update(LOG_LEVEL="debug"),
        lambda c: c["guest"].update(memory_mb=512),
        lambda c: c["services"][0]["checks"][0].update(path="/healthz"),
        lambda c: c["services"][0].update(internal_port=9090),
    ],
)
def test_config_digest_changes_with_what_matters(change: object) -> None:
    cfg = desired_config(sample_spec(), "syd", 1)
    before = config_digest(cfg)
    change(cfg)  # type: ignore[operator]
    assert config_digest(cfg) != before
