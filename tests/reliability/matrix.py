"""The fault matrix: seeded deploys and scales under injected API faults, each checked after.

One *seed* is one orchestrator run with the local Fly injecting every kind of `FAULT_KINDS` on
a share of the calls to every operation of `OPERATIONS`, drawn from ``random.Random(seed)`` on
the local Fly's side (so the same seed and the same calls fire the same faults). While it runs,
a writer sends records to the app's primary through the edge proxy. After it:

- a run that failed must have failed cleanly (a one-line error a user can act on, the lock
  released); the faults are cleared and it is converged the documented way (``deploy
  --resume``, or the same ``scale`` again);
- `check_converged` must hold: desired release everywhere, one machine per slot, no orphan
  volume, no lease outliving its TTL, every acknowledged record on every machine.

Scenarios:

- ``deploy``: each seed points fly.toml at a new image tag and deploys every region in waves.
  On a rig with nothing deployed yet, the first seed is the first deploy (app, forked volumes,
  creates, replication) under faults.
- ``rollback``: ``invoke rollback --region R`` puts the release R ran before back (R turns
  through ams, dfw, syd); it runs between deploys on the deploy fleets (`schedule`), and the
  fleet must end with R on that release and the other regions on fly.toml's. A rollback that
  failed cleanly is finished with ``rollback --region R --to <release>``.
- ``scale``: each seed takes the next change of `SCALE_CYCLE` (add a dfw machine on a forked
  volume, remove it keeping or destroying its volume, resize ams, grow syd's volumes).

`bench/reliability.py` runs the same functions with more seeds.
"""

from __future__ import annotations

import time
import tomllib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from execute.localfleet import lock_holder

from orchestrator.fleetconfig.load import load_spec

from .harness import (
    FAULT_KINDS,
    OPERATIONS,
    RecordWriter,
    Rig,
    RunOutcome,
    check_converged,
    fault_rules,
    image_ref,
    recover,
    refused_cleanly,
)

__all__ = ["SCALE_CYCLE", "RigState", "SeedReport", "run_seeds", "schedule", "summarize"]


def _syd_bigger(rig: Rig) -> dict[str, Any]:
    data = tomllib.loads((rig.root / "regions" / "syd.toml").read_text())
    return {"region": "syd", "volume_size": int(data.get("volume_size_gb", 1)) + 1}


# Each scale seed applies the next of these (a callable computes its flags from the fleet).
SCALE_CYCLE: tuple[dict[str, Any] | Callable[[Rig], dict[str, Any]], ...] = (
    {"region": "dfw", "count": 3},
    {"region": "dfw", "count": 2},
    {"region": "ams", "memory": 512},
    _syd_bigger,
    {"region": "ams", "memory": 256},
    {"region": "dfw", "count": 3},
    {"region": "dfw", "count": 2, "destroy_volumes": True},
)


@dataclass
class SeedReport:
    """One seed's run and what was checked after it."""

    scenario: str
    seed: int
    what: str
    outcome: str
    error: str | None
    recovered: str | None
    seconds: float
    fired: Counter[tuple[str, str]] = field(default_factory=Counter)
    operations: Counter[str] = field(default_factory=Counter)
    records: int = 0
    lingering_leases: int = 0
    problems: list[str] = field(default_factory=list)
    rig: str = ""
    run_seconds: float = 0.0

    def line(self) -> str:
        """Return a one-line summary (for logs and failure messages)."""
        faults = sum(self.fired.values())
        after = f" -> {self.recovered}" if self.recovered else ""
        err = f" [{self.error}]" if self.error else ""
        return (
            f"{self.scenario} seed {self.seed} ({self.what}): {self.outcome}{after}, "
            f"{faults} faults, {self.seconds:.1f}s (run {self.run_seconds:.1f}s){err}"
        )


def _lock_released(rig: Rig) -> bool:
    return lock_holder(rig.root, rig.local.endpoint) is None


ROLLBACK_REGIONS = ("ams", "dfw", "syd")


@dataclass
class RigState:
    """What one fleet ran so far: the tags each region ran, in order, and the acked records."""

    tags: dict[str, list[str]] = field(default_factory=dict)
    acked: list[tuple[int, str]] = field(default_factory=list)
    rollbacks: int = 0
    scales: int = 0

    def images(self, fly_tag: str) -> dict[str, str]:
        """Return the regions whose machines run another image than fly.toml's."""
        return {
            region: image_ref(tags[-1])
            for region, tags in self.tags.items()
            if tags and tags[-1] != fly_tag
        }


def run_seed(
    rig: Rig,
    scenario: str,
    seed: int,
    state: RigState,
    *,
    rate_scale: float = 1.0,
) -> SeedReport:
    """Run one seed of ``scenario`` on ``rig`` and check the fleet after it."""
    started = time.monotonic()
    volumes_before = rig.volume_ids()
    mark = rig.log_mark()
    fly_tag = rig.image_tag()
    scale_flags: dict[str, Any] | None = None
    recovery: Callable[[], RunOutcome]
    if scenario == "deploy":
        fly_tag = f"s{seed}"
        rig.set_image(fly_tag)
        what = f"deploy sample-app:{fly_tag}"

        def act() -> RunOutcome:
            return rig.deploy()

        def recovery() -> RunOutcome:
            return recover(rig, outcome)

        for region in load_spec(rig.root).regions:
            state.tags.setdefault(region, []).append(fly_tag)
    elif scenario == "rollback":
        region = ROLLBACK_REGIONS[state.rollbacks % len(ROLLBACK_REGIONS)]
        state.rollbacks += 1
        tags = state.tags[region]
        back_to = tags[-2]
        tags.append(back_to)
        what = f"rollback --region {region} (to sample-app:{back_to})"

        def act() -> RunOutcome:
            return rig.rollback([region])

        def recovery() -> RunOutcome:
            return rig.rollback([region], to=rig.release_of(back_to))

    else:
        item = SCALE_CYCLE[state.scales % len(SCALE_CYCLE)]
        state.scales += 1
        scale_flags = item(rig) if callable(item) else dict(item)
        what = "scale " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in scale_flags.items())
        flags = {k: v for k, v in scale_flags.items() if k != "region"}
        region = str(scale_flags["region"])

        def act() -> RunOutcome:
            return rig.scale(region, **flags)

        def recovery() -> RunOutcome:
            return rig.scale(region, **flags)

    rig.set_faults(seed, fault_rules(scale=rate_scale))
    try:
        with RecordWriter(rig, f"{scenario}{seed}") as writer:
            outcome = act()
    finally:
        fired = rig.clear_faults()
    state.acked.extend(writer.acked)
    report = SeedReport(
        scenario=scenario,
        seed=seed,
        what=what,
        outcome=outcome.outcome,
        error=outcome.error,
        recovered=None,
        seconds=0.0,
        fired=fired,
    )
    if not outcome.ok:
        if not refused_cleanly(outcome):
            report.problems.append(f"did not fail cleanly: {outcome.error}")
        if not _lock_released(rig):
            report.problems.append("the failed run left the deploy lock held")
        again = recovery()
        report.recovered = again.outcome
        if not again.ok:
            report.problems.append(f"recovery failed: {again.error}")
    report.operations = rig.operations_since(mark)
    report.run_seconds = round(time.monotonic() - started, 2)
    seen = check_converged(
        rig, volumes_before=volumes_before, acked=state.acked, images=state.images(fly_tag)
    )
    report.problems.extend(seen.problems)
    report.records = seen.records
    report.lingering_leases = seen.lingering_leases
    report.seconds = round(time.monotonic() - started, 2)
    return report


def run_seeds(
    rig: Rig,
    work: Sequence[tuple[str, int]],
    *,
    rate_scale: float = 1.0,
    log: Callable[[str], None] | None = None,
) -> list[SeedReport]:
    """Run ``(scenario, seed)`` pairs one after the other on ``rig``.

    A rig may start empty when its first seed deploys; a rollback needs two deploys before it
    (the region must have a release to go back to).
    """
    state = RigState()
    tag = rig.image_tag()
    if rig.volume_ids():  # deployed before: every region runs fly.toml's image
        state.tags = {region: [tag] for region in load_spec(rig.root).regions}
    reports = []
    for scenario, seed in work:
        report = run_seed(rig, scenario, seed, state, rate_scale=rate_scale)
        report.rig = rig.root.name
        reports.append(report)
        if log is not None:
            log(report.line())
    return reports


def schedule(deploys: Sequence[int], rollbacks: Sequence[int]) -> list[tuple[str, int]]:
    """Interleave deploy and rollback seeds: two deploys first, then one of each in turn."""
    out: list[tuple[str, int]] = [("deploy", s) for s in deploys[:2]]
    rest = list(deploys[2:])
    for n, seed in enumerate(rollbacks):
        out.append(("rollback", seed))
        if n < len(rest):
            out.append(("deploy", rest[n]))
    out.extend(("deploy", s) for s in rest[len(rollbacks) :])
    return out


def summarize(reports: Sequence[SeedReport]) -> dict[str, Any]:
    """Return the figures of a matrix run (for docs/reliability.md and the benchmark)."""
    fired: Counter[tuple[str, str]] = Counter()
    ops: Counter[str] = Counter()
    for r in reports:
        fired.update(r.fired)
        ops.update(r.operations)
    by_kind: Counter[str] = Counter()
    by_op: Counter[str] = Counter()
    for (op, kind), n in fired.items():
        by_kind[kind] += n
        by_op[op] += n
    scenarios = sorted({r.scenario for r in reports})
    return {
        "runs": len(reports),
        "by_scenario": {s: sum(1 for r in reports if r.scenario == s) for s in scenarios},
        "faults_injected": sum(fired.values()),
        "faults_by_kind": {k: by_kind.get(k, 0) for k in FAULT_KINDS},
        "faults_by_operation": {op: by_op.get(op, 0) for op in OPERATIONS},
        "calls_by_operation": dict(sorted(ops.items())),
        "failed_then_converged": sum(1 for r in reports if r.recovered == "succeeded"),
        "succeeded_first_time": sum(1 for r in reports if r.outcome in ("succeeded", "noop")),
        # Each rig's last check covers every record acknowledged on it so far.
        "records_checked": sum(
            max(r.records for r in reports if r.rig == rig) for rig in {r.rig for r in reports}
        ),
        "leases_lapsed_after_run": sum(r.lingering_leases for r in reports),
        "problems": [f"{r.line()}: {p}" for r in reports for p in r.problems],
        "seconds": round(sum(r.seconds for r in reports), 1),
    }
