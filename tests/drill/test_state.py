"""The drill's one state: where it got to is saved for --resume, its measurements are not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.drill.measure import Ack, RpoResult
from orchestrator.drill.state import DrillState
from orchestrator.errors import ConfigError


def _state() -> DrillState:
    state = DrillState(
        drill_id="d1", app="app", region="syd", primary="syd", fault_kind="local-outage"
    )
    state.phase = "promote"
    state.finished_phases = ["preflight", "steady_state", "fault", "detect"]
    state.fault_injected = True
    state.promoting = "dfw"
    state.t0 = 100.0
    state.set_acks([Ack(n=1, seq=7, region="syd", machine_id="m1", sent_at=99.0, acked_at=99.1)])
    # This run's measurements.
    state.run_started_at = 90.0
    state.detected_at = 101.5
    state.rpo = RpoResult(1, 0.4, 7, 99.1, 6, 99.0, lost=())
    state.notes.append("warning: slow")
    return state


def test_where_a_drill_got_to_survives_the_process_and_its_measurements_do_not(
    tmp_path: Path,
) -> None:
    _state().save(tmp_path)
    saved = json.loads(DrillState.path(tmp_path).read_text())
    assert saved["promoting"] == "dfw"
    assert saved["acks"] == [[1, 7, "syd", "m1", 99.0, 99.1]]
    for measured in ("run_started_at", "detected_at", "rpo", "notes", "prior_phases"):
        assert measured not in saved
    loaded = DrillState.load(tmp_path)
    assert loaded is not None
    assert (loaded.phase, loaded.promoting, loaded.t0) == ("promote", "dfw", 100.0)
    assert loaded.finished_phases == ["preflight", "steady_state", "fault", "detect"]
    assert loaded.ack_list()[0].seq == 7
    assert (loaded.detected_at, loaded.rpo, loaded.notes) == (None, None, [])
    assert "dfw promoted or being promoted" in loaded.describe()
    DrillState.clear(tmp_path)
    assert DrillState.load(tmp_path) is None


def test_a_file_that_is_not_a_saved_drill_is_refused_naming_it(tmp_path: Path) -> None:
    path = DrillState.path(tmp_path)
    path.parent.mkdir(parents=True)
    saved = {
        "drill_id": "d1",
        "app": "app",
        "region": "syd",
        "primary": "syd",
        "fault_kind": "local-outage",
        "detected_at": 1.0,
    }
    path.write_text(json.dumps(saved))
    with pytest.raises(ConfigError) as err:
        DrillState.load(tmp_path)
    assert err.value.where == str(path)
    assert "detected_at" in str(err.value)
