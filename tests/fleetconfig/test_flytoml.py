"""A corpus of fly.toml shapes, read as flyctl reads them, each planned or refused with a reason.

Every shape below is written for this suite (none is copied from a repository). Each one is put
beside region files reduced to ``role`` and ``count``, loaded, and planned against an empty
fleet; the outcome is either a plan (exit 0) whose machine config says what the file asked for,
or a ``ConfigProblems`` (exit 2) whose lines name ``fly.toml`` and the key, with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import ConfigError, ConfigProblems
from orchestrator.fleetconfig import load_spec
from orchestrator.fleetconfig.model import DeploySpec
from orchestrator.plan.config import desired_config
from orchestrator.plan.fleet import Fleet
from orchestrator.plan.graph import build_plan
from orchestrator.plan.serialize import to_json_text

REPO = Path(__file__).resolve().parents[2]
IMAGE = 'image = "registry.fly.io/shop:v7"'
HEAD = f'app = "shop"\nprimary_region = "syd"\n\n[build]\n  {IMAGE}\n'
REGIONS = {"syd": 'role = "primary"\ncount = 2\n', "dfw": 'role = "replica"\ncount = 1\n'}


@dataclass(frozen=True)
class Shape:
    """One fly.toml: what it is, and what loading and planning it must give."""

    id: str
    text: str
    # For an accepted file: a check of the spec and the syd machine config.
    accepts: Callable[[DeploySpec, dict[str, Any]], None] | None = None
    # For a refused file: (where, says) of every problem, in order.
    refuses: tuple[tuple[str, str], ...] = ()
    image: str | None = None
    regions: tuple[tuple[str, str], ...] = ()


def _svc(cfg: dict[str, Any], index: int = 0) -> dict[str, Any]:
    service: dict[str, Any] = cfg["services"][index]
    return service


NO_CHECKS = (
    "fly.toml: checks: no top-level or service checks: the health gate counts a machine healthy "
    "once it is started and stays up; add [[services.tcp_checks]] or [checks] to gate on the app"
)


def _minimal(spec: DeploySpec, cfg: dict[str, Any]) -> None:
    assert cfg["services"] == []
    assert cfg["checks"] == {}
    assert cfg["mounts"] == []
    assert cfg["metadata"]["fly_process_group"] == "app"
    assert "init" not in cfg
    # The plan says how machines without checks are gated.
    assert spec.notes == (NO_CHECKS,)


def _http_service_checks(spec: DeploySpec, cfg: dict[str, Any]) -> None:
    assert cfg["checks"] == {}
    assert _svc(cfg)["checks"] == [
        {"type": "http", "path": "/healthz", "interval": "10s", "timeout": "2s"},
        {"type": "http", "method": "HEAD", "path": "/", "grace_period": "5s"},
    ]
    assert [p["port"] for p in _svc(cfg)["ports"]] == [80, 443]


def _tcp_services(spec: DeploySpec, cfg: dict[str, Any]) -> None:
    svc = _svc(cfg)
    assert (svc["protocol"], svc["internal_port"]) == ("tcp", 8080)
    assert svc["ports"] == [
        {"port": 80, "handlers": ["http"], "force_https": True},
        {"port": 443, "handlers": ["tls", "http"]},
    ]
    assert svc["concurrency"] == {"type": "connections", "hard_limit": 25, "soft_limit": 20}
    assert svc["checks"] == [
        {"type": "tcp", "interval": "15s", "timeout": "2s", "grace_period": "1s"},
        {"type": "http", "interval": "10s", "timeout": "2s", "method": "GET", "path": "/up"},
    ]


def _tcp_only(spec: DeploySpec, cfg: dict[str, Any]) -> None:
    svc = _svc(cfg)
    assert svc["ports"] == [{"port": 5432, "handlers": ["pg_tls"]}]
    assert svc["checks"] == [{"type": "tcp", "interval": "5s"}]


def _udp(spec: DeploySpec, cfg: dict[str, Any]) -> None:
    assert spec.notes == (
        "fly.toml: services: UDP services have no checks on Fly, and no other check is set: the "
        "health gate counts a machine healthy once it is started and stays up; add "
        "[[services.tcp_checks]] or [checks] to gate on the app",
    )
    svc = _svc(cfg)
    assert (svc["protocol"], svc["internal_port"]) == ("udp", 5353)
    assert svc["ports"] == [{"port": 53, "handlers": []}]
    assert "checks" not in svc


def _no_services(spec: DeploySpec, cfg: dict[str, Any]) -> None:
    assert cfg["services"] == []


def _one_group(spec: DeploySpec, cfg: dict[str, Any]) -> None:
    assert cfg["init"] == {"cmd": ["bin/server", "--port", "8080", "--name", "a b"]}
    assert cfg["metadata"]["fly_process_group"] == "web"
    assert _svc(cfg)["internal_port"] == 8080
    # The [[vm]] naming the group wins over the general one.
    assert cfg["guest"] == {"cpu_kind": "shared", "cpus": 2, "memory_mb": 1024}


def _old_processes(spec: DeploySpec, cfg: dict[str, Any]) -> None:
    assert cfg["init"] == {"cmd": ["node", "server.js"]}
    assert cfg["metadata"]["fly_process_group"] == "web"


def _mount_alias(spec: DeploySpec, cfg: dict[str, Any]) -> None:
    assert cfg["mounts"] == [{"path": "/data", "name": "store"}]
    assert spec.regions["syd"].volume_size_gb == 3


def _sizes_as_numbers(spec: DeploySpec, cfg: dict[str, Any]) -> None:
    assert cfg["guest"] == {"cpu_kind": "shared", "cpus": 1, "memory_mb": 512}
    assert spec.regions["dfw"].volume_size_gb == 10


def _compute_alias(spec: DeploySpec, cfg: dict[str, Any]) -> None:
    assert cfg["guest"] == {"cpu_kind": "performance", "cpus": 1, "memory_mb": 2048}


def _number_durations(spec: DeploySpec, cfg: dict[str, Any]) -> None:
    assert cfg["checks"]["db"] == {
        "type": "tcp",
        "port": 5432,
        "interval": "10s",
        "timeout": "1500ms",
        "grace_period": "30s",
    }


def _string_ports(spec: DeploySpec, cfg: dict[str, Any]) -> None:
    svc = _svc(cfg)
    assert svc["internal_port"] == 3000
    assert svc["ports"][0]["port"] == 80
    assert svc["concurrency"] == {"type": "requests", "soft_limit": 20, "hard_limit": 25}


def _env_list(spec: DeploySpec, cfg: dict[str, Any]) -> None:
    assert cfg["env"] == {"A": "1", "B": "true", "C": "x", "PRIMARY_REGION": "syd"}


def _checks_array(spec: DeploySpec, cfg: dict[str, Any]) -> None:
    assert set(cfg["checks"]) == {"alive", "ready"}
    assert cfg["checks"]["ready"]["headers"] == [
        {"name": "Host", "values": ["shop.example"]},
        {"name": "X-Probe", "values": ["1"]},
    ]


def _notes(spec: DeploySpec, cfg: dict[str, Any]) -> None:
    # kill_signal and kill_timeout are acted on: they become the stop_config flyctl sends.
    assert cfg["stop_config"] == {"signal": "SIGTERM", "timeout": "30s"}
    noted = {n.split(": not acted on")[0] for n in spec.notes if n != NO_CHECKS}
    assert noted == {
        "fly.toml: swap_size_mb",
        "fly.toml: console_command",
        "fly.toml: deploy",
        "fly.toml: experimental",
        "fly.toml: metrics",
        "fly.toml: statics",
        "fly.toml: build.dockerfile",
        "fly.toml: mounts.snapshot_retention",
    }
    assert all(": not acted on: " in n for n in spec.notes if n != NO_CHECKS)


def _build_with_image_flag(spec: DeploySpec, cfg: dict[str, Any]) -> None:
    assert cfg["image"] == "registry.fly.io/shop:v8"
    assert "fly.toml: build.dockerfile" in spec.ignored_keys


def _primary_from_roles(spec: DeploySpec, cfg: dict[str, Any]) -> None:
    assert spec.primary_region == "syd"
    assert cfg["env"]["PRIMARY_REGION"] == "syd"


def _volume_note(spec: DeploySpec, cfg: dict[str, Any]) -> None:
    assert spec.notes == (
        NO_CHECKS,
        "regions/dfw.toml: volume_size_gb: not acted on: fly.toml has no [[mounts]], so "
        "machines here get no volume",
    )


def _autostop_bool(spec: DeploySpec, cfg: dict[str, Any]) -> None:
    assert _svc(cfg)["autostop"] == "stop"
    assert _svc(cfg)["min_machines_running"] == 0


def _port_range(spec: DeploySpec, cfg: dict[str, Any]) -> None:
    assert _svc(cfg)["ports"] == [
        {"start_port": 10000, "end_port": 10100, "handlers": []},
        {"port": 443, "handlers": ["tls"], "tls_options": {"alpn": ["h2"]}},
    ]


def _http_and_services(spec: DeploySpec, cfg: dict[str, Any]) -> None:
    # flyctl's order: [http_service] first, then [[services]].
    assert [s["internal_port"] for s in cfg["services"]] == [8080, 9000]


def _service_for_other_group_dropped(spec: DeploySpec, cfg: dict[str, Any]) -> None:
    assert cfg["metadata"]["fly_process_group"] == "web"
    assert [s["internal_port"] for s in cfg["services"]] == [8080]


TWO_GROUPS = (
    HEAD
    + """
[processes]
  web = "bin/server"
  worker = ["bin/worker", "--queue", "mail"]

[[mounts]]
  source = "data"
  destination = "/data"
  processes = ["web"]

[http_service]
  internal_port = 8080
  processes = ["web"]
  [[http_service.checks]]
    path = "/healthz"

[checks.queue]
  type = "tcp"
  port = 9000
  processes = ["worker"]

[[vm]]
  size = "shared-cpu-1x"

[[vm]]
  processes = ["worker"]
  memory = "512mb"
"""
)


def _two_groups(spec: DeploySpec, cfg: dict[str, Any]) -> None:
    # The default group is the first by name when there is no "app" (flyctl's rule).
    assert spec.group_names == ("web", "worker")
    assert cfg["metadata"]["fly_process_group"] == "web"
    assert cfg["init"] == {"cmd": ["bin/server"]}
    assert cfg["mounts"] == [{"path": "/data", "name": "data"}]
    assert [c["path"] for c in _svc(cfg)["checks"]] == ["/healthz"]
    worker = spec.for_group("worker")
    wcfg = desired_config(worker, "syd", 1)
    assert wcfg["metadata"]["fly_process_group"] == "worker"
    assert wcfg["init"] == {"cmd": ["bin/worker", "--queue", "mail"]}
    assert wcfg["mounts"] == []
    assert wcfg["services"] == []
    assert list(wcfg["checks"]) == ["queue"]
    assert wcfg["guest"]["memory_mb"] == 512
    # The flat count applies to every group; [groups.worker] overrides it in syd only.
    assert {c: r.count for c, r in worker.regions.items()} == {"dfw": 1, "syd": 3}
    assert {c: r.count for c, r in spec.regions.items()} == {"dfw": 1, "syd": 2}
    assert worker.regions["syd"].max_unavailable == 1


SHAPES = [
    Shape("minimal", HEAD, accepts=_minimal),
    Shape(
        "http-service-with-checks",
        HEAD
        + """
[http_service]
  internal_port = 8080
  force_https = true
  [[http_service.checks]]
    path = "/healthz"
    interval = "10s"
    timeout = "2s"
  [[http_service.checks]]
    method = "head"
    path = "/"
    grace_period = "5s"
""",
        accepts=_http_service_checks,
    ),
    Shape(
        "services-tcp-with-http-handlers-and-both-check-kinds",
        HEAD
        + """
[[services]]
  protocol = "tcp"
  internal_port = 8080
  [services.concurrency]
    type = "connections"
    hard_limit = 25
    soft_limit = 20
  [[services.ports]]
    port = 80
    handlers = ["http"]
    force_https = true
  [[services.ports]]
    port = 443
    handlers = ["tls", "http"]
  [[services.tcp_checks]]
    interval = "15s"
    timeout = "2s"
    grace_period = "1s"
  [[services.http_checks]]
    interval = 10000
    timeout = 2000
    method = "get"
    path = "/up"
""",
        accepts=_tcp_services,
    ),
    Shape(
        "services-tcp-only",
        HEAD
        + """
[[services]]
  protocol = "tcp"
  internal_port = 5432
  ports = [{ port = 5432, handlers = ["pg_tls"] }]
  tcp_checks = { interval = "5s" }
""",
        accepts=_tcp_only,
    ),
    Shape(
        "services-udp",
        HEAD
        + """
[[services]]
  protocol = "udp"
  internal_port = 5353
  [[services.ports]]
    port = 53
""",
        accepts=_udp,
    ),
    Shape("services-empty-list", "services = []\n" + HEAD, accepts=_no_services),
    Shape("processes-empty-list", "processes = []\n" + HEAD, accepts=_minimal),
    Shape(
        "one-process-group-with-its-own-vm",
        HEAD
        + """
[processes]
  web = "bin/server --port 8080 --name 'a b'"

[http_service]
  internal_port = 8080
  processes = ["web"]

[[vm]]
  size = "shared-cpu-1x"

[[vm]]
  processes = ["web"]
  cpus = 2
  memory = "1gb"
""",
        accepts=_one_group,
    ),
    Shape(
        "old-processes-array",
        HEAD
        + """
[[processes]]
  name = "web"
  command = "node server.js"
""",
        accepts=_old_processes,
    ),
    Shape(
        "service-without-processes-beside-a-group",
        HEAD + '\n[processes]\n  web = "bin/web"\n\n[[services]]\n  protocol = "tcp"\n'
        "  internal_port = 8080\n",
        refuses=(("fly.toml: services[1].processes", "no processes set, but [processes]"),),
    ),
    Shape(
        "http-service-without-processes-beside-a-group",
        HEAD + '\n[processes]\n  web = "bin/web"\n\n[http_service]\n  internal_port = 8080\n',
        refuses=(("fly.toml: http_service.processes", "no processes set, but [processes]"),),
    ),
    Shape(
        "service-for-an-unknown-group",
        HEAD + '\n[http_service]\n  internal_port = 8080\n  processes = ["wbe"]\n',
        refuses=(("fly.toml: http_service.processes", "'wbe' is not a process group"),),
    ),
    Shape(
        "service-of-another-group-is-not-this-groups",
        HEAD
        + """
[processes]
  web = "bin/web"

[http_service]
  internal_port = 8080
  processes = ["web"]

[[services]]
  protocol = "tcp"
  internal_port = 9000
  processes = ["app"]
""",
        refuses=(("fly.toml: services[1].processes", "'app' is not a process group"),),
    ),
    Shape(
        "mount-alias-single-table",
        HEAD + '\n[mount]\n  source = "store"\n  destination = "/data/"\n  initial_size = 3\n',
        accepts=_mount_alias,
    ),
    Shape(
        "sizes-as-numbers-and-strings",
        HEAD
        + """
[[mounts]]
  source = "data"
  destination = "/data"
  initial_size = "10GB"

[[vm]]
  size = "shared-cpu-1x"
  memory = 512
""",
        accepts=_sizes_as_numbers,
        regions=(("dfw", 'role = "replica"\ncount = 1\nvolume_size_gb = 10\n'),),
    ),
    Shape(
        "compute-alias",
        HEAD + '\n[[compute]]\n  size = "performance-1x"\n',
        accepts=_compute_alias,
    ),
    Shape(
        "two-mounts-for-one-group",
        HEAD
        + """
[[mounts]]
  source = "a"
  destination = "/a"

[[mounts]]
  source = "b"
  destination = "/b"
""",
        refuses=(("fly.toml: mounts", "has 2 [[mounts]]"),),
    ),
    Shape(
        "check-durations-as-milliseconds",
        HEAD
        + """
[checks.db]
  type = "tcp"
  port = 5432
  interval = 10000
  timeout = 1500
  grace_period = "30s"
""",
        accepts=_number_durations,
    ),
    Shape(
        "ports-as-strings-and-old-concurrency",
        HEAD
        + """
[[services]]
  protocol = "tcp"
  internal_port = "3000"
  concurrency = "20,25"
  [[services.ports]]
    port = "80"
    handlers = ["http"]
""",
        accepts=_string_ports,
    ),
    Shape(
        "env-as-a-list-of-tables",
        HEAD + '\n[[env]]\n  A = 1\n  B = true\n\n[[env]]\n  C = "x"\n',
        accepts=_env_list,
    ),
    Shape(
        "checks-as-an-array-with-headers-as-a-list",
        HEAD
        + """
[[checks]]
  name = "alive"
  type = "tcp"
  port = 8080

[[checks]]
  name = "ready"
  type = "http"
  port = 8080
  path = "/ready"
  headers = [{ name = "X-Probe", value = "1" }, { name = "Host", value = "shop.example" }]
""",
        accepts=_checks_array,
    ),
    Shape(
        "keys-not-acted-on-are-notes",
        """kill_signal = "SIGTERM"
kill_timeout = 30
swap_size_mb = 512
console_command = "bin/console"
"""
        + HEAD
        + """  dockerfile = "Dockerfile"

[deploy]
  strategy = "bluegreen"

[experimental]
  auto_rollback = true

[metrics]
  port = 9091
  path = "/metrics"

[[statics]]
  guest_path = "/app/public"
  url_prefix = "/static"

[[mounts]]
  source = "data"
  destination = "/data"
  snapshot_retention = 7
""",
        accepts=_notes,
    ),
    Shape(
        "build-without-image",
        'app = "shop"\nprimary_region = "syd"\n\n[build]\n  dockerfile = "Dockerfile"\n',
        refuses=(("fly.toml: build.image", "fly deploy --build-only --push"),),
    ),
    Shape(
        "build-without-image-given-one",
        'app = "shop"\nprimary_region = "syd"\n\n[build]\n  dockerfile = "Dockerfile"\n',
        accepts=_build_with_image_flag,
        image="registry.fly.io/shop:v8",
    ),
    Shape(
        "primary-region-from-the-region-files",
        f'app = "shop"\n\n[build]\n  {IMAGE}\n',
        accepts=_primary_from_roles,
    ),
    Shape(
        "primary-region-nowhere",
        f'app = "shop"\n\n[build]\n  {IMAGE}\n',
        refuses=(("fly.toml: primary_region", 'role = "primary" in one regions/<code>.toml'),),
        regions=(("syd", "count = 2\n"),),
    ),
    Shape(
        "volume-size-without-mounts-is-a-note",
        HEAD,
        accepts=_volume_note,
        regions=(("dfw", 'role = "replica"\ncount = 1\nvolume_size_gb = 5\n'),),
    ),
    Shape(
        "autostop-as-boolean",
        HEAD + "\n[http_service]\n  internal_port = 8080\n  auto_stop_machines = true\n",
        accepts=_autostop_bool,
    ),
    Shape(
        "port-range-and-tls-options",
        HEAD
        + """
[[services]]
  protocol = "tcp"
  internal_port = 10000
  [[services.ports]]
    start_port = 10000
    end_port = 10100
  [[services.ports]]
    port = 443
    handlers = ["tls"]
    tls_options = { alpn = ["h2"] }
""",
        accepts=_port_range,
    ),
    Shape(
        "http-service-and-services-together",
        HEAD
        + """
[http_service]
  internal_port = 8080

[[services]]
  protocol = "tcp"
  internal_port = 9000
  [[services.ports]]
    port = 9000
""",
        accepts=_http_and_services,
    ),
    Shape(
        "one-group-services-filtered-by-group",
        HEAD
        + """
[processes]
  web = "bin/web"

[http_service]
  internal_port = 8080
  processes = ["web"]
""",
        accepts=_service_for_other_group_dropped,
    ),
    Shape(
        "every-problem-at-once",
        """app = "Shop!"
primary_region = "xyz"
kill_sginal = "SIGTERM"

[build]
  image = "registry.fly.io/shop:v7"

[[services]]
  protocol = "sctp"
  internal_port = 80000
  [[services.ports]]
    port = 443
    handlers = ["tls", "htp"]

[checks.alive]
  type = "tcp"
  port = 8080
  interval = "1s"
""",
        refuses=(
            ("fly.toml: kill_sginal", "did you mean 'kill_signal'?"),
            ("fly.toml: app", "is not a valid Fly app name"),
            ("fly.toml: primary_region", "xyz"),
            ("fly.toml: checks.alive.interval", "minimum check interval is 2s"),
            ("fly.toml: services[1].protocol", "allowed tcp, udp"),
            ("fly.toml: services[1].internal_port", "from 1 to 65535"),
            ("fly.toml: services[1].ports[1].handlers", "'htp' is not a Fly proxy handler"),
        ),
    ),
    Shape(
        "machine-config-is-refused",
        HEAD.replace("[build]", 'machine_config = "cfg.json"\n\n[build]'),
        refuses=(("fly.toml: machine_config", "deploy it with flyctl"),),
    ),
    Shape(
        "gpu-is-refused",
        HEAD + '\n[[vm]]\n  size = "shared-cpu-1x"\n  gpu_kind = "a100-pcie-40gb"\n',
        refuses=(("fly.toml: vm.gpu_kind", "GPU machines"),),
    ),
    Shape(
        "concurrency-soft-above-hard",
        HEAD
        + """
[http_service]
  internal_port = 8080
  [http_service.concurrency]
    type = "requests"
    soft_limit = 50
    hard_limit = 25
""",
        refuses=(("fly.toml: http_service.concurrency.soft_limit", "above hard_limit 25"),),
    ),
    Shape(
        "two-process-groups-each-with-its-own-sections-and-counts",
        TWO_GROUPS,
        accepts=_two_groups,
        regions=(("syd", 'role = "primary"\ncount = 2\n\n[groups.worker]\ncount = 3\n'),),
    ),
    Shape(
        "region-file-names-a-group-fly-toml-does-not-define",
        TWO_GROUPS,
        regions=(("syd", 'role = "primary"\ncount = 2\n[groups.wroker]\ncount = 1\n'),),
        refuses=(("regions/syd.toml: groups.wroker", "'wroker' is not a process group"),),
    ),
    Shape(
        "region-file-group-table-with-bad-values",
        TWO_GROUPS,
        regions=(
            (
                "syd",
                'role = "primary"\ncount = 2\n[groups.worker]\ncount = -1\nrole = "x"\n',
            ),
        ),
        refuses=(
            ("regions/syd.toml: groups.worker.role", "unknown key"),
            ("regions/syd.toml: groups.worker.count", "expected a whole number"),
        ),
    ),
]


def _write(root: Path, shape: Shape) -> None:
    (root / "regions").mkdir(parents=True)
    (root / "fly.toml").write_text(shape.text)
    for code, text in {**REGIONS, **dict(shape.regions)}.items():
        (root / "regions" / f"{code}.toml").write_text(text)


def test_the_corpus_is_large_and_covers_both_outcomes() -> None:
    assert len(SHAPES) >= 25
    assert len({s.id for s in SHAPES}) == len(SHAPES)
    assert sum(1 for s in SHAPES if s.accepts) >= 15
    assert sum(1 for s in SHAPES if s.refuses) >= 5


@pytest.mark.parametrize("shape", SHAPES, ids=[s.id for s in SHAPES])
def test_shape_plans_or_is_refused_with_its_reasons(tmp_path: Path, shape: Shape) -> None:
    _write(tmp_path, shape)
    if shape.refuses:
        with pytest.raises(ConfigProblems) as err:
            load_spec(tmp_path, image_override=shape.image)
        assert err.value.exit_code == 2
        got = [(p.where, p.message) for p in err.value.problems]
        assert len(got) == len(shape.refuses), got
        for (where, message), (want_where, says) in zip(got, shape.refuses, strict=True):
            assert where == want_where, got
            assert says in message, got
        return
    spec = load_spec(tmp_path, image_override=shape.image)
    plan = build_plan(spec, Fleet(app=spec.app))
    # Every note of the spec reaches the plan, tree and JSON alike.
    assert json.loads(to_json_text(plan))["notes"] == list(spec.notes)
    assert shape.accepts is not None
    shape.accepts(spec, desired_config(spec, "syd", 1))


def test_plan_prints_every_problem_on_its_own_line_and_exits_2(tmp_path: Path) -> None:
    shape = next(s for s in SHAPES if s.id == "every-problem-at-once")
    _write(tmp_path, shape)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLY_", "ORCH_"))}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "invoke"), "--search-root", str(REPO), "plan"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == len(shape.refuses), proc.stderr
    for line, (where, says) in zip(lines, shape.refuses, strict=True):
        assert line.startswith(f"error: {where}: "), line
        assert says in line, line
    assert "Traceback" not in proc.stderr
    # Nothing was started to find that out.
    assert not (tmp_path / ".localfly").exists()


def test_a_file_that_cannot_be_parsed_is_one_problem(tmp_path: Path) -> None:
    _write(tmp_path, SHAPES[0])
    (tmp_path / "fly.toml").write_text("app = \n")
    with pytest.raises(ConfigError) as err:
        load_spec(tmp_path)
    assert str(err.value).startswith("fly.toml: invalid TOML at line 1")
