"""The reliability suites' rig: a copy of the sample fleet on its own local Fly, and its checks.

A `Rig` is one fleet directory (a copy of the repo's ``fly.toml`` and ``regions/``) with its own
local Fly under ``<root>/.localfly``. It runs the orchestrator two ways:

- in this process, through the package's own entry points (`Rig.deploy`, `Rig.scale`), which is
  what ``tasks.py`` calls: several rigs can then run at once in threads, each with its own
  event loop, without paying a Python start-up per run;
- as the real ``invoke`` command in a child process (`Rig.invoke`, `Rig.spawn`), where a test
  needs a process to kill or two commands at once.

Either way the orchestrator runs with the same settings (``RUNTIME``): checks polled every
0.2 s, 3 s leases (so a killed run's leases lapse quickly) and a 1 s API timeout (so a delay
"past the client's timeout" costs a second, not thirty). The sample fleet bakes 0 s: the
metrics gate reads the app's ``/metrics`` through the edge proxy, which no API fault touches.

`check_converged` is the end condition every suite asserts after a run (and its resume): the
fleet is at the desired release with one machine per slot, no orphan volume, no lease that
outlives its TTL, and every acknowledged record on every machine.

`bench/reliability.py` imports this module for its long runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from execute.localfleet import (
    APP,
    INVOKE,
    REPO,
    LocalFleet,
    copy_fleet,
    is_control_machine,
    wait_for,
)

from orchestrator.commands import deploy as deploying
from orchestrator.connect import load_settings
from orchestrator.errors import OrchestratorError
from orchestrator.execute.context import ExecuteOptions
from orchestrator.execute.journal import JOURNAL_DIR, JOURNAL_FILE
from orchestrator.fleetconfig.load import load_spec
from orchestrator.plan.config import (
    META_CONFIG_DIGEST,
    META_RELEASE,
    META_SLOT,
    config_digest,
    desired_config,
    release_id,
)
from orchestrator.settings import Settings

__all__ = [
    "FAULT_KINDS",
    "OPERATIONS",
    "OPTIONS",
    "RUNTIME",
    "Converged",
    "RecordWriter",
    "Rig",
    "RunOutcome",
    "check_converged",
    "fault_rules",
]

# The orchestrator's tuning in every suite (invoke.yaml's ``orchestrator`` section).
RUNTIME: Mapping[str, float] = {"poll": 0.2, "lease_ttl": 3, "api_timeout": 1.0}
OPTIONS = ExecuteOptions.from_config(RUNTIME)
# The sample fleet checks /status every 2 s, which the fast profile runs every 0.2 s: 25 checks
# a second per fleet, most of a local Fly's CPU. Several fleets share 2 cores here, so they
# check every 5 s (0.5 s in the fast profile); grace periods and everything else are as shipped.
CHECK_INTERVAL = "5s"
# Variables that would point the orchestrator somewhere else than the rig's local Fly.
# CI changes how output looks (docs/ci.md); tests that want it set it themselves.
_SCRUBBED = (
    "FLY_API_TOKEN",
    "FLY_FLAPS_BASE_URL",
    "FLY_APP_NAME",
    "FLY_ACCESS_TOKEN",
    "FLY_APP_URL",
    "ORCHESTRATOR_LOCK_TTL",
    "CI",
)

# Every Machines API operation a deploy or a scale of the sample fleet calls (the fault matrix
# checks the requests log against this list, so a new call cannot slip past the faults).
OPERATIONS: tuple[str, ...] = (
    "Apps_create",
    "Apps_show",
    "Machines_create",
    "Machines_create_lease",
    "Machines_delete",
    "Machines_list",
    "Machines_release_lease",
    "Machines_show",
    "Machines_list_versions",
    "Machines_show_lease",
    "Machines_show_metadata",
    "Machines_start",
    "Machines_stop",
    "Machines_update",
    "Machines_update_metadata",
    "Machines_wait",
    "Secrets_list",
    "Volume_delete",
    "Volumes_create",
    "Volumes_extend",
    "Volumes_get_by_id",
    "Volumes_list",
    "Volumes_list_snapshots",
    "createVolumeSnapshot",
)

# One fault of each kind the local Fly can inject, with the share of calls it hits. The delay
# is past the client's 1 s timeout, so the client gives up and retries while the local Fly
# still carries the first attempt out (as a slow Fly would).
FAULT_KINDS: Mapping[str, tuple[dict[str, Any], float]] = {
    "429": ({"status": 429}, 0.02),
    "500": ({"status": 500}, 0.015),
    "502": ({"status": 502}, 0.015),
    "503": ({"status": 503}, 0.02),
    "drop_before": ({"drop": "before"}, 0.015),
    "drop_after": ({"drop": "after"}, 0.02),
    "timeout": ({"delay_ms": 1500}, 0.008),
}


def image_ref(tag: str) -> str:
    """Return the sample app's image reference with ``tag``."""
    return f"registry.fly.io/sample-app:{tag}"


def fault_rules(operations: Sequence[str] = OPERATIONS, *, scale: float = 1.0) -> list[Any]:
    """Return one rule per operation and fault kind (``scale`` multiplies every rate)."""
    return [
        {"operation": op, "rate": min(1.0, rate * scale), **what}
        for op in operations
        for what, rate in FAULT_KINDS.values()
    ]


def _kind_of(rule: Mapping[str, Any]) -> str:
    for name, (what, _) in FAULT_KINDS.items():
        if all(rule.get(k) == v for k, v in what.items()):
            return name
    return "other"


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How one orchestrator run ended.

    Attributes:
        outcome: ``succeeded``, ``noop``, ``failed`` (the run reported a failure) or
            ``refused`` (it stopped before running any step, with an `OrchestratorError`).
        error: the one-line error, if any.
        run: the journal's run number, when a run was recorded.
    """

    outcome: str
    error: str | None = None
    run: int | None = None

    @property
    def ok(self) -> bool:
        """Tell whether the run reached its goal."""
        return self.outcome in ("succeeded", "noop")


@dataclass
class Rig:
    """A fleet directory, its local Fly and the orchestrator's settings for it."""

    root: Path
    local: LocalFleet
    runtime_file: Path
    # One HTTP client per thread and base URL (making one costs an SSL context: ~50 ms of CPU).
    _clients: dict[tuple[int, str], httpx.Client] = field(default_factory=dict, repr=False)

    # -- life ---------------------------------------------------------------------------------

    @classmethod
    def start(cls, root: Path) -> Rig:
        """Copy the sample fleet to ``root`` and start its local Fly (nothing deployed yet)."""
        copy_fleet(root)
        waves = root / "regions" / "waves.toml"
        text = waves.read_text()
        assert 'bake_time = "3s"' in text
        waves.write_text(text.replace('bake_time = "3s"', 'bake_time = "0s"'))
        fly = root / "fly.toml"
        text = fly.read_text()
        assert 'interval = "2s"' in text
        fly.write_text(text.replace('interval = "2s"', f'interval = "{CHECK_INTERVAL}"'))
        runtime = root.parent / f"{root.name}-invoke.yaml"
        lines = ["orchestrator:", *(f"  {k}: {v}" for k, v in RUNTIME.items())]
        runtime.write_text("\n".join(lines) + "\n")
        local = LocalFleet.start(root)
        return cls(root=root, local=local, runtime_file=runtime)

    def stop(self) -> None:
        """Stop the local Fly and every process it started, by PID."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        self.local.stop()

    def _client(self, base_url: str) -> httpx.Client:
        key = (threading.get_ident(), base_url)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = httpx.Client(
                base_url=base_url, timeout=30.0, verify=False
            )
        return client

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call the local Fly's API (Machines API or the ``/_localfly`` control)."""
        headers = {**self.local.endpoint.headers, **kwargs.pop("headers", {})}
        return self._client(self.local.endpoint.api_url).request(
            method, path, headers=headers, **kwargs
        )

    def app(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call the app through the local Fly's edge proxy."""
        headers = {"Host": f"{APP}.fly.dev", **kwargs.pop("headers", {})}
        return self._client(self.local.endpoint.proxy_url).request(
            method, path, headers=headers, **kwargs
        )

    def machines(self) -> list[dict[str, Any]]:
        """Return the app's live machines (not destroyed), by region and id."""
        resp = self.api("GET", f"/v1/apps/{APP}/machines")
        if resp.status_code == 404:
            return []
        resp.raise_for_status()
        live = [
            m
            for m in resp.json()
            if m["state"] not in ("destroyed", "destroying") and not is_control_machine(m)
        ]
        return sorted(live, key=lambda m: (m["region"], m["id"]))

    @property
    def state_dir(self) -> Path:
        return self.root / ".localfly"

    def settings(self) -> Settings:
        """Return the settings an operator's shell in the fleet directory would give."""
        return load_settings(self.root, self.environ())

    def environ(self, **extra: str) -> dict[str, str]:
        """Return the environment of an orchestrator process (no ``FLY_*`` settings)."""
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        env["INVOKE_RUNTIME_CONFIG"] = str(self.runtime_file)
        env["COLUMNS"] = "200"
        env.update(extra)
        return env

    # -- the orchestrator, in this process ----------------------------------------------------

    def deploy(self, *, resume: bool = False, regions: Sequence[str] = ()) -> RunOutcome:
        """Run a deploy (or ``--resume``) in this process, as ``invoke deploy`` does."""
        request = deploying.DeployRequest(regions=tuple(regions), resume=resume)
        try:
            result = asyncio.run(deploying.deploy(self.settings(), request, options=OPTIONS))
        except OrchestratorError as exc:
            return RunOutcome("refused", " ".join(str(exc).split()))
        assert isinstance(result, deploying.DeployResult)
        return RunOutcome(result.outcome, result.error, result.run)

    def scale(self, region: str, **flags: Any) -> RunOutcome:
        """Run ``invoke scale --region REGION --FLAG VALUE...`` in this process."""
        from orchestrator.commands import scale as scaling

        settings = self.settings()
        try:
            request = scaling.parse_scale_flags(
                region=[region], fleet_regions=scaling.fleet_regions(settings), **flags
            )
            # As ``--yes``: the suites scale down and up on purpose.
            result = asyncio.run(
                scaling.scale(settings, request, options=OPTIONS, confirm=lambda impact: True)
            )
        except OrchestratorError as exc:
            return RunOutcome("refused", " ".join(str(exc).split()))
        assert isinstance(result, scaling.ScaleResult)
        return RunOutcome(result.result.outcome, result.result.error, result.result.run)

    def rollback(self, regions: Sequence[str] = (), to: str | None = None) -> RunOutcome:
        """Run ``invoke rollback [--region R]... [--to RELEASE]`` in this process."""
        from orchestrator.commands import rollback as rolling

        request = rolling.RollbackRequest(regions=tuple(regions), to=to)
        try:
            result = asyncio.run(rolling.rollback(self.settings(), request, options=OPTIONS))
        except OrchestratorError as exc:
            return RunOutcome("refused", " ".join(str(exc).split()))
        return RunOutcome(result.outcome, result.error, result.run)

    def release_of(self, tag: str) -> str:
        """Return the release id fly.toml would have with ``sample-app:TAG``."""
        return release_id(load_spec(self.root, image_override=image_ref(tag)))

    def set_image(self, tag: str) -> str:
        """Point fly.toml's ``[build] image`` at ``sample-app:TAG``; return the release id."""
        path = self.root / "fly.toml"
        lines = path.read_text().splitlines(keepends=True)
        for i, line in enumerate(lines):
            if line.strip().startswith("image = "):
                lines[i] = f'  image = "{image_ref(tag)}"\n'
        path.write_text("".join(lines))
        return self.release()

    def image_tag(self) -> str:
        """Return the tag of fly.toml's ``[build] image``."""
        return load_spec(self.root).image.rsplit(":", 1)[-1]

    def release(self) -> str:
        """Return the release id fly.toml and regions/ describe now."""
        return release_id(load_spec(self.root))

    # -- the orchestrator, as a command -------------------------------------------------------

    def invoke(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 240.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the real ``invoke ARGS`` in the fleet directory and wait for it.

        Its output is also kept in the runs directory (`runs_dir`), beside the forked ones'.
        """
        done = subprocess.run(
            [str(INVOKE), "--search-root", str(REPO), *args],
            cwd=self.root,
            env=self.environ(**(env or {})),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        n = next(_child_count)
        (self.runs_dir / f"{n}.out").write_text(done.stdout)
        (self.runs_dir / f"{n}.err").write_text(done.stderr)
        return done

    @property
    def runs_dir(self) -> Path:
        """Return where every orchestrator process's stdout and stderr are kept."""
        path = self.root.parent / f"{self.root.name}-runs"
        path.mkdir(exist_ok=True)
        return path

    def spawn(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        """Start the real ``invoke ARGS`` in the background; its output goes to files."""
        out = (self.root.parent / f"{self.root.name}-spawn.out").open("a")
        try:
            return subprocess.Popen(
                [str(INVOKE), "--search-root", str(REPO), *args],
                cwd=self.root,
                env=self.environ(**(env or {})),
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
        finally:
            out.close()

    def start_child(self, *args: str, env: Mapping[str, str] | None = None) -> Child:
        """Start ``invoke ARGS`` as a forked orchestrator process in the fleet directory."""
        n = next(_child_count)
        out, err = self.runs_dir / f"{n}.out", self.runs_dir / f"{n}.err"
        process = _context().Process(
            target=_child_main,
            args=(str(self.root), list(args), self.environ(**(env or {})), str(out), str(err)),
            name=f"invoke {' '.join(args)}",
        )
        process.start()
        return Child(process, out, err)

    def run_child(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 240.0
    ) -> tuple[int, Child]:
        """Run ``invoke ARGS`` as a forked orchestrator process; return its exit code."""
        child = self.start_child(*args, env=env)
        try:
            return child.wait(timeout), child
        finally:
            child.kill()

    # -- the local Fly ------------------------------------------------------------------------

    def set_faults(self, seed: int, rules: Sequence[Any]) -> None:
        """Replace the local Fly's injected faults."""
        resp = self.api("PUT", "/_localfly/faults", json={"seed": seed, "rules": rules})
        assert resp.status_code == 200, resp.text

    def clear_faults(self) -> Counter[tuple[str, str]]:
        """Remove every fault; return how often each (operation, kind) fired since set."""
        resp = self.api("GET", "/_localfly/faults")
        fired: Counter[tuple[str, str]] = Counter()
        if resp.status_code == 200:
            for rule in resp.json().get("rules", []):
                if rule.get("fired"):
                    fired[(rule["operation"], _kind_of(rule))] += int(rule["fired"])
        self.api("DELETE", "/_localfly/faults")
        return fired

    @property
    def requests_log(self) -> Path:
        return self.state_dir / "requests.log"

    def log_mark(self) -> int:
        """Return the requests log's size: a position in it for `requests_since`."""
        try:
            return self.requests_log.stat().st_size
        except FileNotFoundError:
            return 0

    def requests_since(self, mark: int) -> list[dict[str, Any]]:
        """Return the requests logged since ``mark`` (API and control calls)."""
        try:
            with self.requests_log.open("rb") as f:
                f.seek(max(mark - 1, 0))
                data = f.read()
        except FileNotFoundError:
            return []
        return _complete_lines(data, after_mark=mark > 0)

    def operations_since(self, mark: int) -> Counter[str]:
        """Count the Machines API operations logged since ``mark``."""
        return Counter(
            str(r.get("operation"))
            for r in self.requests_since(mark)
            if str(r.get("path", "")).startswith("/v1")
        )

    def volume_ids(self) -> set[str]:
        """Return the ids of the app's live volumes (in any state but being destroyed)."""
        return {v["id"] for v in live_volumes(self)}

    # -- the journal ----------------------------------------------------------------------------

    def journal_rows(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        """Read the journal (read-only, from outside the orchestrator)."""
        path = self.root / JOURNAL_DIR / JOURNAL_FILE
        if not path.exists():
            return []
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
        try:
            db.row_factory = sqlite3.Row
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def last_run(self) -> sqlite3.Row | None:
        """Return the journal's newest run of the app."""
        rows = self.journal_rows(
            "SELECT * FROM releases WHERE app = ? ORDER BY run DESC LIMIT 1", APP
        )
        return rows[0] if rows else None


# -- the orchestrator as its own process, without a Python start-up each time -------------------
#
# `invoke deploy` spends about a second of CPU importing before it does anything; the crash
# matrix starts dozens. Children are forked from a forkserver that imported the orchestrator
# once: each is a new process running invoke's `Program` on the repo's tasks.py with its own
# environment, working directory and output files, and can be killed like the real command.

_PRELOAD = [
    "invoke",
    "rich.console",
    "reliability.harness",
    "orchestrator.render.live",
    "orchestrator.render.summary",
    "orchestrator.commands.scale",
    "orchestrator.drill",
]
_forkserver_lock = threading.Lock()
_forkserver: Any = None


def _context() -> Any:
    global _forkserver
    with _forkserver_lock:
        if _forkserver is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(_PRELOAD)
            _forkserver = ctx
        return _forkserver


def _child_main(root: str, argv: list[str], env: dict[str, str], out: str, err: str) -> None:
    os.chdir(root)
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
    # Ctrl-C as at a terminal: a harness started in the background (``cmd &`` in a script)
    # passes SIGINT on ignored, and Python then leaves it ignored, so a ``sigint@`` point
    # would be a no-op and the run would go on to the end.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # The kill hook reads its variable when imported; the forkserver imported it without one.
    from orchestrator.execute import failpoints

    importlib.reload(failpoints)
    from invoke import Program

    Program().run(["invoke", "--search-root", str(REPO), *argv])


@dataclass
class Child:
    """An orchestrator command running as its own process (see `Rig.start_child`)."""

    process: Any
    out: Path
    err: Path

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    @property
    def done(self) -> bool:
        """Tell whether the process has ended."""
        return self.process.exitcode is not None

    def wait(self, timeout: float = 240.0) -> int:
        """Wait for the process; return its exit code (``-9`` when it was SIGKILLed)."""
        self.process.join(timeout)
        if self.process.exitcode is None:
            self.kill()
            raise AssertionError(f"orchestrator pid {self.pid} still running after {timeout}s")
        return int(self.process.exitcode)

    def kill(self) -> None:
        """SIGKILL it (by PID) if it still runs, and reap it."""
        if self.process.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.process.join(10)

    @property
    def stdout(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    @property
    def stderr(self) -> str:
        return self.err.read_text(errors="replace") if self.err.exists() else ""


_child_count = itertools.count()


def _complete_lines(data: bytes, *, after_mark: bool) -> list[dict[str, Any]]:
    """Parse the whole JSON lines of a log the local Fly may be appending to right now.

    A reader can see a line half written: the last one is dropped unless it is complete. With
    ``after_mark``, ``data`` starts one byte before the mark; unless that byte ends a line, the
    mark fell inside a line being written, which is dropped too.
    """
    if after_mark:
        first, data = data[:1], data[1:]
        if first != b"\n":
            data = data.split(b"\n", 1)[1] if b"\n" in data else b""
    data = data[: data.rfind(b"\n") + 1]
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def recover(
    rig: Rig, failed: RunOutcome, *, scale_flags: Mapping[str, Any] | None = None
) -> RunOutcome:
    """Converge after a run that failed cleanly, the way docs/deploys.md and scaling.md say.

    A deploy that recorded a run is resumed (``invoke deploy --resume``); one refused before it
    ran anything is run again, as is a scale (the region file already holds the new size).
    """
    if scale_flags is not None:
        region = str(scale_flags["region"])
        flags = {k: v for k, v in scale_flags.items() if k != "region"}
        return rig.scale(region, **flags)
    if failed.run is not None:
        return rig.deploy(resume=True)
    return rig.deploy()


# -- records ------------------------------------------------------------------------------------


class RecordWriter:
    """Write records to the app's primary through the edge proxy, in the background.

    Only records the app acknowledged (201) are kept in `acked` as ``(seq, data)``: those are
    the ones a user was told are safe, so every one must survive whatever the orchestrator does.
    """

    def __init__(self, rig: Rig, tag: str, *, every_s: float = 0.2) -> None:
        self.rig = rig
        self.tag = tag
        self.every_s = every_s
        self.acked: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"writer-{tag}", daemon=True)

    def __enter__(self) -> RecordWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def write_one(self, n: int) -> None:
        data = f"{self.tag}-{n}"
        try:
            resp = self.rig.app(
                "POST", "/records", json={"data": data}, headers={"fly-prefer-region": "syd"}
            )
        except httpx.HTTPError:
            return
        if resp.status_code == 201:
            self.acked.append((int(resp.json()["seq"]), data))

    def _loop(self) -> None:
        n = 0
        while not self._stop.wait(self.every_s):
            n += 1
            self.write_one(n)


_VOLUME_GONE = frozenset({"pending_destroy", "scheduling_destroy", "destroying", "destroyed"})


def live_volumes(rig: Rig) -> list[dict[str, Any]]:
    """Return the app's volumes that are not being destroyed (hydrating ones included)."""
    resp = rig.api("GET", f"/v1/apps/{APP}/volumes")
    if resp.status_code == 404:
        return []
    resp.raise_for_status()
    return [v for v in resp.json() if v.get("state") not in _VOLUME_GONE]


def machine_records(rig: Rig, machine_id: str) -> dict[int, str]:
    """Return every record one machine holds, ``seq → data`` (asked directly, page by page)."""
    out: dict[int, str] = {}
    after = 0
    while True:
        resp = rig.app(
            "GET",
            f"/records?after={after}&limit=1000",
            headers={"fly-force-instance-id": machine_id},
        )
        resp.raise_for_status()
        page = resp.json()["records"]
        for record in page:
            out[int(record["seq"])] = str(record["data"])
        if len(page) < 1000:
            return out
        after = int(page[-1]["seq"])


# -- the end condition ----------------------------------------------------------------------------


@dataclass
class Converged:
    """What `check_converged` saw (for the figures).

    Attributes:
        machines: live machines.
        volumes: live volumes.
        records: acknowledged records checked on every machine.
        lingering_leases: leases still held right after the run (each lapsed within its TTL).
    """

    machines: int = 0
    volumes: int = 0
    records: int = 0
    lingering_leases: int = 0
    problems: list[str] = field(default_factory=list)


def check_converged(
    rig: Rig,
    *,
    volumes_before: set[str],
    acked: Sequence[tuple[int, str]] = (),
    lease_grace_s: float | None = None,
    images: Mapping[str, str] | None = None,
) -> Converged:
    """Assert the fleet is where the spec says, with nothing lost or left behind.

    - every region has exactly its ``count`` machines, one per slot 1..count, none unmanaged,
      each ``started`` on the desired release with the desired config digest, checks passing;
    - each machine mounts one volume of its region, attached to it; every other live volume
      existed before the run (``volumes_before``: kept by a scale-down, say), so none is an
      orphan of this run;
    - no machine holds a lease once ``lease_grace_s`` (default: the lease TTL + 2 s) has passed:
      a lease whose nonce was lost (a dropped answer, a killed run) lapses, none is stuck;
    - every acknowledged record is on every machine (replicas get a few seconds to catch up);
    - the journal's newest run of the app succeeded (or had nothing to do).

    ``images`` names, per region, another image than fly.toml's (a region rolled back): its
    machines must be on that image's release and config.
    """
    spec = load_spec(rig.root)
    specs = {
        code: load_spec(rig.root, image_override=image) for code, image in (images or {}).items()
    }
    seen = Converged()
    problems = seen.problems

    def healthy_fleet() -> list[dict[str, Any]] | None:
        machines = rig.machines()
        for m in machines:
            checks = m.get("checks") or []
            if m["state"] != "started" or not checks:
                return None
            if any(c.get("status") != "passing" for c in checks):
                return None
        return machines

    # Checks are polled by the local Fly; give a just-restarted one a moment to report.
    machines = _poll(healthy_fleet, 10.0) or rig.machines()
    seen.machines = len(machines)
    by_region: dict[str, list[dict[str, Any]]] = {}
    for m in machines:
        by_region.setdefault(m["region"], []).append(m)
    for region in sorted(set(by_region) - set(spec.regions)):
        problems.append(f"{region}: machines in a region the spec does not have")
    for code, region_spec in sorted(spec.regions.items()):
        here = by_region.get(code, [])
        slots = sorted(str((m["config"].get("metadata") or {}).get(META_SLOT, "-")) for m in here)
        wanted = sorted(str(n) for n in range(1, region_spec.count + 1))
        if slots != wanted:
            problems.append(f"{code}: slots {slots}, want {wanted} (duplicate or missing)")
        here_spec = specs.get(code, spec)
        release = release_id(here_spec)
        for m in here:
            meta = m["config"].get("metadata") or {}
            slot = str(meta.get(META_SLOT, ""))
            name = f"{code}/{m['id']} (slot {slot})"
            if m["state"] != "started":
                problems.append(f"{name}: state {m['state']}")
            if meta.get(META_RELEASE) != release:
                problems.append(f"{name}: release {meta.get(META_RELEASE)}, want {release}")
            if slot.isdigit():
                want = config_digest(desired_config(here_spec, code, int(slot)))
                if meta.get(META_CONFIG_DIGEST) != want:
                    problems.append(f"{name}: config digest {meta.get(META_CONFIG_DIGEST)}")
            checks = m.get("checks") or []
            if not checks or any(c.get("status") != "passing" for c in checks):
                problems.append(f"{name}: checks {[c.get('status') for c in checks]}")

    # Volumes: one per machine, attached; the rest existed before the run.
    live_ids = {m["id"] for m in machines}
    volumes = live_volumes(rig)
    seen.volumes = len(volumes)
    mounted: Counter[str] = Counter()
    for m in machines:
        mounts = [x.get("volume") for x in m["config"].get("mounts") or [] if x.get("volume")]
        if len(mounts) != 1:
            problems.append(f"{m['id']}: mounts {mounts}")
        mounted.update(mounts)
    for volume_id, n in mounted.items():
        if n > 1:
            problems.append(f"volume {volume_id} mounted by {n} machines")
    for v in volumes:
        attached = v.get("attached_machine_id")
        if attached and attached not in live_ids:
            problems.append(f"volume {v['id']} attached to a machine that is gone: {attached}")
        if not attached and v["id"] not in volumes_before:
            problems.append(f"volume {v['id']} ({v['region']}) is an orphan: new and unattached")
        if attached and v["id"] not in mounted:
            problems.append(f"volume {v['id']} attached to {attached} but not in its mounts")

    # Leases: none outlives its TTL.
    grace = float(RUNTIME["lease_ttl"]) + 2.0 if lease_grace_s is None else lease_grace_s

    def held() -> list[str]:
        out = []
        for m in machines:
            resp = rig.api("GET", f"/v1/apps/{APP}/machines/{m['id']}/lease")
            if resp.status_code != 404:
                out.append(f"{m['id']}: {resp.status_code} {resp.text[:120]}")
        return out

    first = held()
    seen.lingering_leases = len(first)
    if first:
        still = _poll(lambda: not held(), grace)
        if not still:
            problems.extend(f"lease stuck past its TTL: {h}" for h in held())

    # Records: every acknowledged one, on every machine.
    if acked:
        want = dict(acked)
        missing: dict[str, list[int]] = {}

        def all_there() -> bool:
            missing.clear()
            for m in machines:
                have = machine_records(rig, m["id"])
                gone = sorted(s for s, d in want.items() if have.get(s) != d)
                if gone:
                    missing[m["id"]] = gone
            return not missing

        if not _poll(all_there, 20.0):
            for machine_id, gone in missing.items():
                problems.append(
                    f"machine {machine_id} lacks {len(gone)} acknowledged record(s): {gone[:5]}"
                )
        seen.records = len(want)

    last = rig.last_run()
    if last is not None and last["outcome"] not in ("succeeded", "noop"):
        problems.append(f"journal: newest run {last['run']} is {last['outcome']}: {last['error']}")
    return seen


def _poll(condition: Any, timeout: float) -> Any:
    try:
        return wait_for(condition, timeout=timeout, every=0.25)
    except AssertionError:
        return None


@contextmanager
def rigs(roots: Sequence[Path]) -> Iterator[list[Rig]]:
    """Start a rig per root (in parallel) and stop them all after, even on failure."""
    started: list[Rig] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def start(root: Path) -> None:
        try:
            rig = Rig.start(root)
        except BaseException as exc:
            with lock:
                errors.append(exc)
            return
        with lock:
            started.append(rig)

    threads = [threading.Thread(target=start, args=(r,)) for r in roots]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        if errors:
            raise errors[0]
        started.sort(key=lambda r: str(r.root))
        yield started
    finally:
        for rig in started:
            rig.stop()


def in_threads(work: Mapping[str, Any]) -> dict[str, Any]:
    """Run each callable of ``work`` in its own thread; return name → result or exception."""
    results: dict[str, Any] = {}

    def run(name: str, fn: Any) -> None:
        try:
            results[name] = fn()
        except BaseException as exc:
            results[name] = exc

    threads = [threading.Thread(target=run, args=(n, f), name=n) for n, f in work.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def elapsed(since: float) -> float:
    """Return seconds since ``since`` (``time.monotonic``), rounded."""
    return round(time.monotonic() - since, 2)


def refused_cleanly(outcome: RunOutcome) -> bool:
    """Tell whether a failed run failed the way a user can act on (no internal error)."""
    return outcome.error is not None and "internal error" not in outcome.error
