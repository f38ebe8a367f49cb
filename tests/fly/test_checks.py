"""Checks are named as Fly lists their results: top-level by name, service checks by position."""

from __future__ import annotations

from orchestrator.fly.checks import all_checks, service_checks
from orchestrator.fly.models import MachineConfig


def test_service_checks_are_named_by_index_type_and_internal_port() -> None:
    config = {
        "checks": {"disk": {"type": "tcp", "port": 9000}},
        "services": [
            {
                "internal_port": 8080,
                "checks": [{"type": "http", "path": "/up"}, {"type": "tcp"}],
            },
            {"internal_port": 5353, "protocol": "udp"},
            {"internal_port": 5432, "checks": [{"type": "tcp", "interval": "5s"}]},
        ],
    }
    assert list(service_checks(config)) == [
        "servicecheck-00-http-8080",
        "servicecheck-01-tcp-8080",
        "servicecheck-00-tcp-5432",
    ]
    assert list(all_checks(config)) == ["disk", *service_checks(config)]
    # The gate reads them from the API model the same way.
    assert MachineConfig.from_api(config).all_checks == all_checks(config)


def test_a_config_without_checks_has_none() -> None:
    assert all_checks({}) == {}
    assert all_checks({"services": [{"internal_port": 8080}], "checks": None}) == {}
    assert all_checks({"services": "garbage", "checks": ["garbage"]}) == {}
