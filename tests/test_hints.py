"""The engine names the next step; the terminal and the notifications say it in the same words."""

from __future__ import annotations

import asyncio
import io
import json

import httpx
import pytest
from rich.console import Console

from orchestrator.errors import ErrorKind
from orchestrator.execute.events import EventBus, NextStep, Note, ReleaseFinished
from orchestrator.execute.results import DeployResult
from orchestrator.hints import with_next_step
from orchestrator.notify import Notifier, NotifySpec
from orchestrator.render.errors import run_failure_text
from orchestrator.render.live import LiveView


def _printed(*events: Note) -> list[str]:
    out = io.StringIO()
    view = LiveView(Console(file=out, width=200, color_system=None), live=False)
    for event in events:
        view(event)
    return out.getvalue().splitlines()


def test_the_pause_note_tells_how_to_go_on_or_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    # CI stamps every line with the time; the words are what is checked here.
    monkeypatch.delenv("CI", raising=False)
    lines = _printed(
        Note(
            "paused after wave 1 (syd): its gates passed",
            level="warning",
            next_step=NextStep.PROMOTE_OR_ABORT,
        ),
        Note(
            "syd: on_failure = halt: the fleet is left as the failure left it",
            level="warning",
            next_step=NextStep.ROLLBACK,
        ),
        Note("promoted after wave 1 (syd): going on"),
    )
    # docs/rollouts.md shows the first line as the operator reads it.
    assert lines == [
        "! paused after wave 1 (syd): its gates passed; `invoke promote` continues, "
        "`invoke abort` stops (from any host)",
        "! syd: on_failure = halt: the fleet is left as the failure left it; `invoke rollback` "
        "puts the previous release back",
        "! promoted after wave 1 (syd): going on",
    ]


def test_a_fleet_failure_says_how_to_see_the_roles() -> None:
    result = DeployResult(
        release="v2-abc",
        outcome="failed",
        mutating_steps=1,
        steps=(),
        error="gate.primary: no region takes writes; the fleet takes no writes as the spec says",
        error_kind=ErrorKind.FLEET,
    )
    assert run_failure_text(result, command="deploy") == (
        "error: gate.primary: no region takes writes; the fleet takes no writes as the spec "
        "says. Run `invoke status` to see each machine's role; after an interrupted drill, "
        "`invoke drill --resume` or `invoke drill --abort`"
    )


def test_an_interrupted_run_is_notified_with_how_to_resume() -> None:
    posted: list[dict[str, object]] = []

    def webhook(request: httpx.Request) -> httpx.Response:
        posted.append(json.loads(request.content))
        return httpx.Response(200)

    async def run() -> None:
        bus = EventBus()
        notifier = Notifier(
            NotifySpec(webhooks=("HOOK",)),
            {"HOOK": "https://hooks.example/x"},
            app="app",
            command="deploy",
            bus=bus,
            transport=httpx.MockTransport(webhook),
        )
        bus.subscribe(notifier)
        bus.emit(ReleaseFinished("v2-abc", "failed", "interrupted", next_step=NextStep.RESUME))
        await notifier.close()

    asyncio.run(run())
    assert [body["text"] for body in posted] == [
        "[app] deploy of v2-abc failed: interrupted; run `invoke deploy --resume` to converge"
    ]
    # The structured field keeps the engine's words; the next step is added for people.
    assert posted[0]["error"] == "interrupted"
    assert with_next_step("interrupted", None) == "interrupted"
