"""invoke scale --group: a region file's [groups.<name>] table, written in place."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.fleetconfig import load_spec
from orchestrator.fleetconfig.edit import update_region_file
from orchestrator.render.errors import problem_text

FLY_TOML = """\
app = "shop"
primary_region = "syd"

[build]
  image = "registry.fly.io/shop:v1"

[processes]
  app = "bin/web"
  worker = "bin/worker"

[[mounts]]
  source = "data"
  destination = "/data"
  processes = ["app"]
"""

SYD = """\
# Sydney: the primary.
role = "primary"
count = 2  # the app's machines
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "regions").mkdir()
    (tmp_path / "fly.toml").write_text(FLY_TOML)
    (tmp_path / "regions" / "syd.toml").write_text(SYD)
    return tmp_path


def test_a_group_change_goes_into_its_table_and_changes_no_other_group(root: Path) -> None:
    edit = update_region_file(root, "syd", count=3, group="worker")
    assert edit.written
    assert [(c.key, c.old, c.new) for c in edit.changes] == [("count", 2, 3)]
    text = (root / "regions" / "syd.toml").read_text()
    # Comments and the flat keys are kept; the table is added below them.
    assert text.startswith(SYD)
    assert "[groups.worker]\ncount = 3\n" in text
    spec = load_spec(root)
    assert spec.regions["syd"].count == 2
    assert spec.for_group("worker").regions["syd"].count == 3

    sized = update_region_file(root, "syd", vm="shared-cpu-2x", group="worker")
    assert [c.key for c in sized.changes] == ["cpus", "memory_mb"]
    worker = load_spec(root).for_group("worker").regions["syd"]
    assert (worker.count, worker.vm.cpus, worker.vm.memory_mb) == (3, 2, 512)
    assert load_spec(root).regions["syd"].vm.cpus == 1


def test_a_bad_group_flag_is_refused_and_nothing_is_written(root: Path) -> None:
    with pytest.raises(ConfigError, match="'wrker' is not a process group") as err:
        update_region_file(root, "syd", count=3, group="wrker")
    assert err.value.option == "group"
    assert problem_text(err.value).startswith("--group: 'wrker' is not a process group")
    with pytest.raises(ConfigError, match="no \\[\\[mounts\\]\\] for process group 'worker'"):
        update_region_file(root, "syd", volume_size_gb=2, group="worker")
    assert (root / "regions" / "syd.toml").read_text() == SYD
