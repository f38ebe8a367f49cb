"""`invoke logs` reading: the last N lines of all machines in time order, and ``--since``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.logs import LogSource, line_time, stream_logs


def _source(tmp_path: Path, machine: str, lines: list[str]) -> LogSource:
    path = tmp_path / machine / "log"
    path.parent.mkdir()
    path.write_text("".join(f"{line}\n" for line in lines))
    return LogSource(machine, "syd", f"app-syd-{machine}", 1, path)


def _read(sources: list[LogSource], **kw: object) -> list[str]:
    async def collect() -> list[str]:
        return [line.format() async for line in stream_logs(None, sources, **kw)]  # type: ignore[arg-type]

    return asyncio.run(collect())


def test_lines_of_all_machines_merge_by_time_and_keep_the_last_n(tmp_path: Path) -> None:
    a = _source(
        tmp_path,
        "a",
        [
            "[localfly] 2026-01-01T10:00:00.000Z exec app",
            "2026-01-01T10:00:01.000Z a one",
            "an undated line, written after a one",
            "2026-01-01T10:00:04.000Z a four",
        ],
    )
    b = _source(
        tmp_path,
        "b",
        ["2026-01-01T10:00:02.000Z b two", "2026-01-01T10:00:03.000Z b three"],
    )

    everything = _read([a, b], lines=None)
    last_three = _read([a, b], lines=3)

    assert everything == [
        "syd a | [localfly] 2026-01-01T10:00:00.000Z exec app",
        "syd a | 2026-01-01T10:00:01.000Z a one",
        "syd a | an undated line, written after a one",
        "syd b | 2026-01-01T10:00:02.000Z b two",
        "syd b | 2026-01-01T10:00:03.000Z b three",
        "syd a | 2026-01-01T10:00:04.000Z a four",
    ]
    assert last_three == everything[-3:]
    assert _read([a, b], lines=0) == []


def test_since_keeps_lines_written_from_then_on(tmp_path: Path) -> None:
    a = _source(
        tmp_path,
        "a",
        ["2026-01-01T10:00:00.000Z old", "2026-01-01T10:05:00.000Z new", "undated after new"],
    )
    since = datetime(2026, 1, 1, 10, 1, tzinfo=UTC)

    assert _read([a], lines=100, since=since) == [
        "syd a | 2026-01-01T10:05:00.000Z new",
        "syd a | undated after new",
    ]


def test_a_line_is_dated_by_the_local_fly_or_by_the_app() -> None:
    assert line_time("[localfly] 2026-01-01T10:00:00.250Z exec x") == datetime(
        2026, 1, 1, 10, 0, 0, 250000, tzinfo=UTC
    )
    assert line_time("2026-01-01T10:00:00Z hello") == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert line_time("hello 2026-01-01T10:00:00Z") is None
