"""Fixtures for the client tests: the OpenAPI-checking handler, a fake clock, a client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from orchestrator.fly.client import FlyClient

from .openapi import FlyAPI

BASE_URL = "https://api.machines.dev"
TOKEN = "fm2_sEcReT-t0ken-that-must-never-leak"


class FakeClock:
    """Virtual time: ``sleep`` records the delay and moves time on instead of waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        # Let other tasks run, as a real sleep would.
        await asyncio.sleep(0)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def api() -> FlyAPI:
    return FlyAPI()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def fly(api: FlyAPI, clock: FakeClock) -> AsyncIterator[FlyClient]:
    async with FlyClient(BASE_URL, TOKEN, transport=api.transport(), clock=clock) as client:
        yield client
