"""The Fly Machines API: the client, its rate limiter and typed views of Fly's JSON."""

from __future__ import annotations

from orchestrator.fly.client import FlyClient
from orchestrator.fly.models import (
    App,
    CheckStatus,
    ExecResult,
    ExtendResult,
    Guest,
    Lease,
    Machine,
    MachineConfig,
    MachineEvent,
    Mount,
    Region,
    Snapshot,
    Volume,
    WaitResult,
)
from orchestrator.fly.ratelimit import Clock, Limit, RateLimiter
from orchestrator.fly.wire import RETRY_POLICY, RetryPolicy

__all__ = [
    "RETRY_POLICY",
    "App",
    "CheckStatus",
    "Clock",
    "ExecResult",
    "ExtendResult",
    "FlyClient",
    "Guest",
    "Lease",
    "Limit",
    "Machine",
    "MachineConfig",
    "MachineEvent",
    "Mount",
    "RateLimiter",
    "Region",
    "RetryPolicy",
    "Snapshot",
    "Volume",
    "WaitResult",
]
