"""Reading a machine's log file: the last lines, then what is appended, line by line."""

from __future__ import annotations

from pathlib import Path

from orchestrator.logs import LogLine, LogSource, _Follower, read_last_lines


def test_the_last_lines_stop_at_the_last_complete_line(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_bytes(b"".join(f"line {i}\n".encode() for i in range(1, 5001)) + b"half a li")
    lines, offset = read_last_lines(log, 3)
    assert lines == ["line 4998", "line 4999", "line 5000"]
    assert offset == log.stat().st_size - len(b"half a li")
    everything, _ = read_last_lines(log)
    assert len(everything) == 5000
    assert read_last_lines(log, 0)[0] == []
    assert read_last_lines(tmp_path / "missing") == ([], 0)


def test_a_follower_waits_for_whole_lines_and_survives_truncation(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_bytes(b"old\n")
    _, offset = read_last_lines(log)
    follower = _Follower(LogSource("m1", "syd", "sample-fleet-syd-1", 1, log), offset)
    assert follower.read_new() == []
    with open(log, "ab") as f:
        f.write(b"new li")
    assert follower.read_new() == []
    with open(log, "ab") as f:
        f.write("ne \u00e9\nnext\n".encode())
    assert follower.read_new() == ["new line \u00e9", "next"]
    log.write_bytes(b"after a restart\n")
    assert follower.read_new() == ["after a restart"]


def test_a_line_is_prefixed_by_region_and_machine() -> None:
    assert LogLine("syd", "3d8d", "hello").format() == "syd 3d8d | hello"
