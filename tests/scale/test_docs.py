"""Every command of docs/scaling.md runs, in the doc's order, and leaves the fleet as it says.

The commands are the lines of the doc's ```sh blocks; :data:`COMMANDS` lists them with what
each must leave behind (machines per region, each machine's size, its volume's size), and a test
checks that the list and the doc agree, so neither can change alone. They run in-process through
invoke's own `Program` (`conftest.run_invoke`: the same parser and tasks as the `invoke`
command, without a Python start-up per command) against a local Fly with real machine processes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from execute.localfleet import REPO, LocalFleet, wait_for

from orchestrator.fleetconfig.load import load_spec

from .conftest import deployed_fleet, run_invoke

pytestmark = pytest.mark.timeout(300)

DOC = REPO / "docs" / "scaling.md"


@dataclass(frozen=True)
class Region:
    """What a region must look like after a command.

    Attributes:
        count: live machines.
        size: every machine's (cpu_kind, cpus, memory_mb).
        volume_gb: every machine's volume size.
        volumes: live volumes in the region, when it matters.
    """

    count: int
    size: tuple[str, int, int] = ("shared", 1, 256)
    volume_gb: int = 1
    volumes: int | None = None


SYD_START = Region(2)

# (command, the regions it changes → their state afterwards); regions not named keep theirs.
COMMANDS: list[tuple[str, Mapping[str, Region]]] = [
    ("invoke scale --region syd --count 3 --dry-run", {}),
    ("invoke scale", {}),
    ("invoke scale --json", {}),
    ("invoke scale --region syd --count 3", {"syd": Region(3, volumes=3)}),
    ("invoke scale --region syd --count 1 --yes", {"syd": Region(1, volumes=3)}),
    (
        "invoke scale --region dfw --region ams --count 1 --yes",
        {"dfw": Region(1, volumes=1), "ams": Region(1, volumes=1)},
    ),
    ("invoke scale --region ams --count 0 --destroy-volumes --yes", {"ams": Region(0, volumes=0)}),
    ("invoke scale --region syd --memory 1024", {"syd": Region(1, ("shared", 1, 1024))}),
    ("invoke scale --region syd --cpu 2", {"syd": Region(1, ("shared", 2, 1024))}),
    (
        "invoke scale --region syd --volume-size 2",
        {"syd": Region(1, ("shared", 2, 1024), volume_gb=2, volumes=3)},
    ),
    (
        "invoke scale --region syd --vm performance-1x",
        {"syd": Region(1, ("performance", 1, 2048), volume_gb=2)},
    ),
    (
        "invoke scale --region syd --vm shared-cpu-2x",
        {"syd": Region(1, ("shared", 2, 512), volume_gb=2)},
    ),
    (
        "invoke scale --region syd --count 2 --memory 2048 --cpu 2",
        {"syd": Region(2, ("shared", 2, 2048), volume_gb=2)},
    ),
    (
        "invoke scale --region syd --count 3 --vm performance-2x",
        {"syd": Region(3, ("performance", 2, 4096), volume_gb=2, volumes=3)},
    ),
    (
        "invoke scale --region syd --count 1 --vm shared-cpu-1x --memory 512 --yes",
        {"syd": Region(1, ("shared", 1, 512), volume_gb=2)},
    ),
    (
        "invoke scale --region syd --count 1 --vm shared-cpu-2x --memory 1024",
        {"syd": Region(1, ("shared", 2, 1024), volume_gb=2)},
    ),
    (
        "invoke scale --region syd --count 2 --vm shared-cpu-2x --memory 2048",
        {"syd": Region(2, ("shared", 2, 2048), volume_gb=2)},
    ),
    (
        "invoke scale --region syd --count 3 --vm performance-2x --memory 4096",
        {"syd": Region(3, ("performance", 2, 4096), volume_gb=2)},
    ),
    (
        "invoke scale --region syd --count 2 --vm performance-4x --yes",
        {"syd": Region(2, ("performance", 4, 8192), volume_gb=2)},
    ),
    (
        "invoke scale --region syd --count 1 --vm performance-2x --memory 8192 --yes",
        {"syd": Region(1, ("performance", 2, 8192), volume_gb=2, volumes=3)},
    ),
    ("invoke scale --usage", {}),
    ("invoke status --region syd", {}),
    ("invoke logs --region syd --lines 20", {}),
    ("invoke plan --region syd", {}),
    ("invoke deploy --region syd", {}),
]


def doc_commands() -> list[str]:
    """Return the lines of docs/scaling.md's ```sh blocks (comments and blanks left out)."""
    blocks = re.findall(r"^```sh\n(.*?)^```", DOC.read_text(), flags=re.M | re.S)
    return [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


SEEDS_REPLICAS = "invoke scale --region dfw --region ams --count 1 --yes"


def _write_in_primary(fleet: LocalFleet, data: str) -> None:
    def written() -> bool:
        resp = fleet.app_request("POST", "/records", region="syd", json_body={"data": data})
        if resp.status_code == 409 and resp.json().get("leader"):
            resp = fleet.app_request(
                "POST", "/records", machine_id=resp.json()["leader"], json_body={"data": data}
            )
        return resp.status_code in (200, 201)

    wait_for(written, what="a record written in syd")


def test_the_list_is_the_docs_commands() -> None:
    assert doc_commands() == [command for command, _ in COMMANDS]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    """A deployed fleet, this process working in its directory."""
    with pytest.MonkeyPatch.context() as mp:
        yield from deployed_fleet(tmp_path_factory.mktemp("docs") / "fleet", mp)


def _guest(machine: Mapping[str, Any]) -> tuple[str, int, int]:
    guest = machine["config"]["guest"]
    return (guest["cpu_kind"], guest["cpus"], guest["memory_mb"])


def _observed(fleet: LocalFleet, region: str) -> Region:
    machines = fleet.machines(region)
    volumes = {v["id"]: v for v in fleet.volumes(region)}
    guests = {_guest(m) for m in machines}
    assert len(guests) <= 1, f"{region}: machines of different sizes: {guests}"
    mounted = {volumes[m["config"]["mounts"][0]["volume"]]["size_gb"] for m in machines}
    assert len(mounted) <= 1, f"{region}: volumes of different sizes: {mounted}"
    assert all(m["state"] == "started" for m in machines), [m["state"] for m in machines]
    return Region(
        count=len(machines),
        size=guests.pop() if guests else ("-", 0, 0),
        volume_gb=mounted.pop() if mounted else 0,
        volumes=len(volumes),
    )


def _matches(observed: Region, wanted: Region) -> bool:
    if observed.count != wanted.count:
        return False
    if wanted.volumes is not None and observed.volumes != wanted.volumes:
        return False
    if wanted.count == 0:
        return True
    return (observed.size, observed.volume_gb) == (wanted.size, wanted.volume_gb)


def _desired(fleet: LocalFleet) -> dict[str, Any]:
    spec = load_spec(fleet.root)
    return {
        code: (r.count, (r.vm.cpu_kind, r.vm.cpus, r.vm.memory_mb), r.volume_size_gb)
        for code, r in spec.regions.items()
    }


def test_every_command_of_the_doc_works_and_leaves_the_fleet_as_it_says(
    fleet: LocalFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    state: dict[str, Region] = {"syd": SYD_START, "dfw": Region(0), "ams": Region(0)}
    marker = f"seed-{uuid.uuid4().hex[:8]}"
    for command, changes in COMMANDS:
        files_before = _desired(fleet)
        if command == SEEDS_REPLICAS:
            # Data written in syd before the replicas exist must be in their forked volumes.
            _write_in_primary(fleet, marker)
        code = run_invoke(command)
        out, err = capsys.readouterr()
        assert code == 0, f"{command}: exit {code}\n{out}\n{err}"
        state.update(changes)
        for region, wanted in state.items():
            observed = _observed(fleet, region)
            assert _matches(observed, wanted), f"after `{command}`: {region} is {observed}"
        files_after = _desired(fleet)
        if not changes or "--dry-run" in command:
            assert files_after == files_before, f"`{command}` changed a region file"
        for region, wanted in changes.items():
            count, size, volume_gb = files_after[region]
            assert count == wanted.count, f"`{command}`: regions/{region}.toml count {count}"
            if wanted.count:
                assert size == wanted.size, f"`{command}`: regions/{region}.toml size {size}"
                assert volume_gb <= wanted.volume_gb, f"`{command}`: regions/{region}.toml"
        if command == SEEDS_REPLICAS:
            for region in ("dfw", "ams"):
                (machine,) = fleet.machines(region)
                records = fleet.records(machine["id"])
                assert any(marker in str(r.get("data")) for r in records), (region, records)
        if command == "invoke deploy --region syd":
            assert "Nothing to change" in out, out
        if command.startswith("invoke logs"):
            assert out
            assert all(line.startswith("syd ") for line in out.splitlines()), out
