"""Seeded fault injection: errors, delays and dropped connections on chosen operations.

Faults are set through ``PUT /_localfly/faults`` (see docs/local-fly.md)::

    {"seed": 7,
     "rules": [{"operation": "Machines_update", "rate": 0.5, "status": 503},
               {"operation": "*", "delay_ms": 200, "region": "syd"},
               {"operation": "Machines_create", "drop": "after", "times": 1}],
     "failing_checks": ["<machine id>", ...]}

Each rule that matches a call (operation id or ``*``, optionally a region, while it has
``times`` left) draws one number from a ``random.Random(seed)``; below ``rate`` it fires.
The same seed and the same sequence of calls fire the same faults, so a test replays.
``drop: "before"`` closes the connection without doing the call; ``"after"`` does the call
and then closes the connection, which is the ambiguous case a client must survive.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from orchestrator.localfly.regions import REGIONS

__all__ = ["FaultDecision", "FaultRule", "Faults"]


@dataclass(frozen=True, slots=True)
class FaultRule:
    """One injected fault.

    Attributes:
        operation: the OpenAPI operation id (``Machines_create``) or ``*``.
        rate: the share of matching calls it fires on, 0..1.
        status: answer with this HTTP status and a Fly error body.
        delay_ms: hold the call this long first.
        drop: ``before`` or ``after``: close the connection instead of answering.
        region: only calls whose target is in this region.
        times: fire at most this many times.
    """

    operation: str = "*"
    rate: float = 1.0
    status: int | None = None
    delay_ms: int = 0
    drop: str | None = None
    region: str | None = None
    times: int | None = None

    @classmethod
    def from_api(cls, data: Any) -> FaultRule:
        """Build a rule from its JSON; ValueError naming the bad field."""
        if not isinstance(data, dict):
            raise ValueError("each rule must be an object")
        unknown = set(data) - {f for f in cls.__slots__ if not f.startswith("_")}
        if unknown:
            raise ValueError(f"unknown rule field(s): {', '.join(sorted(unknown))}")
        rule = cls(**data)
        if not isinstance(rule.operation, str) or not rule.operation:
            raise ValueError("operation must be an operation id or '*'")
        if not isinstance(rule.rate, int | float) or not 0 <= rule.rate <= 1:
            raise ValueError("rate must be between 0 and 1")
        if rule.status is not None and (
            not isinstance(rule.status, int) or not 400 <= rule.status <= 599
        ):
            raise ValueError("status must be an HTTP error status (400-599)")
        if not isinstance(rule.delay_ms, int) or not 0 <= rule.delay_ms <= 600_000:
            raise ValueError("delay_ms must be an integer between 0 and 600000")
        if rule.drop not in (None, "before", "after"):
            raise ValueError("drop must be 'before', 'after' or null")
        if rule.region is not None and rule.region not in REGIONS:
            raise ValueError(f"unknown region {rule.region!r}")
        if rule.times is not None and (not isinstance(rule.times, int) or rule.times < 1):
            raise ValueError("times must be a positive integer")
        if rule.status is None and rule.drop is None and rule.delay_ms == 0:
            raise ValueError("a rule needs a status, a drop or a delay_ms")
        return rule

    def to_api(self) -> dict[str, Any]:
        """Return the rule as JSON."""
        return {
            "operation": self.operation,
            "rate": self.rate,
            "status": self.status,
            "delay_ms": self.delay_ms,
            "drop": self.drop,
            "region": self.region,
            "times": self.times,
        }


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """What to do to one call.

    Attributes:
        delay_s: seconds to hold it first.
        status: answer with this error status, or None.
        drop: ``before``/``after`` to drop the connection, or None.
    """

    delay_s: float = 0.0
    status: int | None = None
    drop: str | None = None


class Faults:
    """The current fault set and its seeded random source."""

    def __init__(self) -> None:
        self.seed = 0
        self.rng = random.Random(0)
        self.rules: list[FaultRule] = []
        self.fired: list[int] = []
        self.failing_checks: set[str] = set()

    def configure(self, payload: Any) -> None:
        """Replace the fault set from a ``PUT /_localfly/faults`` body (all or nothing)."""
        if not isinstance(payload, dict):
            raise ValueError("body must be a JSON object")
        unknown = set(payload) - {"seed", "rules", "failing_checks"}
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
        seed = payload.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError("seed must be an integer")
        raw_rules = payload.get("rules", [])
        if not isinstance(raw_rules, list):
            raise ValueError("rules must be a list")
        rules = [FaultRule.from_api(r) for r in raw_rules]
        failing = payload.get("failing_checks", [])
        if not isinstance(failing, list) or not all(isinstance(x, str) for x in failing):
            raise ValueError("failing_checks must be a list of machine ids")
        self.seed, self.rng = seed, random.Random(seed)
        self.rules, self.fired = rules, [0] * len(rules)
        self.failing_checks = set(failing)

    def clear(self) -> None:
        """Remove every injected fault."""
        self.configure({})

    def decide(self, operation: str, region: str | None) -> FaultDecision:
        """Return what to do to a call of ``operation`` whose target is in ``region``."""
        if not self.rules:
            return FaultDecision()
        delay = 0.0
        status: int | None = None
        drop: str | None = None
        for i, rule in enumerate(self.rules):
            if rule.operation not in ("*", operation):
                continue
            if rule.region is not None and rule.region != region:
                continue
            if rule.times is not None and self.fired[i] >= rule.times:
                continue
            if self.rng.random() >= rule.rate:
                continue
            self.fired[i] += 1
            delay += rule.delay_ms / 1000.0
            if status is None and drop is None:
                status, drop = rule.status, rule.drop
        return FaultDecision(delay_s=delay, status=status, drop=drop)

    def to_api(self) -> dict[str, Any]:
        """Return the current fault set as JSON."""
        return {
            "seed": self.seed,
            "rules": [
                {**r.to_api(), "fired": n} for r, n in zip(self.rules, self.fired, strict=True)
            ],
            "failing_checks": sorted(self.failing_checks),
        }
