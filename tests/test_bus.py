"""The one event bus: deploys stop on a journal failure, drills never stop for a subscriber."""

from __future__ import annotations

import pytest

from orchestrator.drill.events import DrillBus, DrillEvent, DrillNote
from orchestrator.errors import DeployError
from orchestrator.execute.events import Event, EventBus, Note


def test_subscribers_see_every_event_in_subscription_order_and_a_broken_one_is_skipped() -> None:
    seen: list[tuple[str, str]] = []

    def broken(event: Event) -> None:
        raise RuntimeError("a view crashed")

    bus = EventBus(lambda e: seen.append(("first", type(e).__name__)), broken)
    bus.subscribe(lambda e: seen.append(("late", type(e).__name__)))
    bus.emit(Note("one"))
    bus.emit(Note("two"))
    assert seen == [("first", "Note"), ("late", "Note")] * 2


def test_a_deploy_bus_lets_an_orchestrator_error_through() -> None:
    seen: list[Event] = []

    def journal(event: Event) -> None:
        raise DeployError("journal write failed: disk full")

    bus = EventBus(journal, seen.append)
    with pytest.raises(DeployError, match="disk full"):
        bus.emit(Note("step started"))
    # The run stops there: no later subscriber shows a step that was never recorded.
    assert seen == []


def test_a_drill_bus_goes_on_whatever_a_subscriber_raises() -> None:
    seen: list[DrillEvent] = []

    def broken(event: DrillEvent) -> None:
        raise DeployError("journal write failed: disk full")

    bus = DrillBus(broken, seen.append)
    bus.note("fail-over under way", "warning")
    assert [(e.message, e.level) for e in seen if isinstance(e, DrillNote)] == [
        ("fail-over under way", "warning")
    ]
