"""A copy of the sample fleet in a temp dir with its own local Fly, for end-to-end tests.

`LocalFleet.start` copies ``fly.toml`` and ``regions/`` out of the repo (the orchestrator must
work in the user's directory, not in the package's), starts the local Fly under
``<root>/.localfly`` and knows how to run ``invoke`` there. `LocalFleet.stop` stops the server
and every machine process it started, by PID, and then kills by PID anything still running from
that state directory, so no test leaves a process behind, even when it failed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from orchestrator.execute.lock import DeployLock, LockHolder, read_lock
from orchestrator.fly.client import CONTROL_ROLE_KEY
from orchestrator.localfly import control
from orchestrator.settings import Settings, Token

REPO = Path(__file__).resolve().parents[2]
INVOKE = Path(sys.executable).with_name("invoke")
APP = "sample-fleet"
# Variables that would point the orchestrator somewhere else than the test's local Fly.
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


def copy_fleet(dest: Path) -> Path:
    """Copy the repo's sample fleet (fly.toml and regions/) into ``dest``; return ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "fly.toml", dest / "fly.toml")
    shutil.copytree(REPO / "regions", dest / "regions")
    return dest


def wait_for(
    condition: Callable[[], Any], *, timeout: float = 30.0, every: float = 0.2, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns something truthy; return that, or fail at deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(every)  # polling a condition with a deadline, not synchronising on time


def leftover_processes(state_dir: Path) -> list[psutil.Process]:
    """Return live processes started from ``state_dir`` (its server or a machine)."""
    found = []
    marker = str(state_dir.resolve())
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            cwd = proc.info["cwd"] or ""
            ours = marker in cmdline or cwd.startswith(marker)
            if ours and proc.pid != os.getpid() and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def kill_leftovers(state_dir: Path) -> list[int]:
    """Kill, by PID, every process still running from ``state_dir``; return their PIDs."""
    pids = []
    for proc in leftover_processes(state_dir):
        pids.append(proc.pid)
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def is_control_machine(machine: Mapping[str, Any]) -> bool:
    """Tell whether a machine (API JSON) is the orchestrator's own (the deploy lock's)."""
    metadata = (machine.get("config") or {}).get("metadata") or {}
    return CONTROL_ROLE_KEY in metadata


def lock_settings(root: Path, endpoint: control.Endpoint) -> Settings:
    """Return settings that reach ``endpoint``'s API for the fleet at ``root`` (deploy lock)."""
    return Settings(
        root=root,
        app=APP,
        backend="local",
        base_url=endpoint.api_url,
        token=Token(endpoint.token),
    )


def lock_holder(root: Path, endpoint: control.Endpoint) -> LockHolder | None:
    """Return who holds the app's deploy lock on ``endpoint`` now, or ``None``."""
    return read_lock(lock_settings(root, endpoint), APP).holder


def hold_lock(
    root: Path, endpoint: control.Endpoint, *, release: str = "", command: str = "deploy"
) -> DeployLock:
    """Return the app's deploy lock (enter it to hold it), as another run would."""
    return DeployLock(lock_settings(root, endpoint), APP, release=release, command=command)


@dataclass
class LocalFleet:
    """A fleet directory and the local Fly serving it."""

    root: Path
    endpoint: control.Endpoint

    @classmethod
    def start(cls, root: Path) -> LocalFleet:
        """Start the local Fly for ``root`` (fast profile) with ``invoke local.up``.

        Started by a child ``invoke`` (which exits), the server is nobody's child here, so
        stopping it from any process leaves nothing to reap in this one.
        """
        fleet = cls(root=root, endpoint=None)  # type: ignore[arg-type]
        proc = fleet.invoke("local.up", "--profile", "fast")
        if proc.returncode != 0:
            fleet.stop()
            raise AssertionError(f"invoke local.up failed: {proc.stdout}{proc.stderr}")
        # Finds the running server; starts nothing.
        fleet.endpoint = control.ensure_running(root / ".localfly", profile="fast")
        return fleet

    @property
    def state_dir(self) -> Path:
        return self.root / ".localfly"

    def stop(self) -> None:
        """Stop the local Fly and every machine process, by PID; kill stragglers by PID."""
        try:
            control.stop(self.state_dir)
        finally:
            kill_leftovers(self.state_dir)

    # -- the orchestrator's command line ------------------------------------------------------

    def invoke(
        self,
        *args: str,
        cwd: Path | None = None,
        timeout: float = 240.0,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``invoke ARGS`` with the repo's tasks.py, from the fleet's directory.

        ``env`` adds variables (``ORCH_TEST_KILL_AT``...) to the child's environment.
        """
        return subprocess.run(
            [str(INVOKE), "--search-root", str(REPO), *args],
            cwd=cwd or self.root,
            env=self._env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def spawn(
        self, *args: str, capture: bool = False, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """Start ``invoke ARGS`` in the background (the caller stops it by PID).

        With ``capture``, stdout and stderr are pipes (read them with ``communicate``).
        """
        out = subprocess.PIPE if capture else subprocess.DEVNULL
        return subprocess.Popen(
            [str(INVOKE), "--search-root", str(REPO), *args],
            cwd=self.root,
            env=self._env(env),
            stdout=out,
            stderr=out,
            text=True,
        )

    def _env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        env.pop("ORCH_TEST_KILL_AT", None)  # only where a test asks for it
        env["COLUMNS"] = "200"  # rich wraps at 80 columns in a pipe otherwise
        # invoke reads its project config beside tasks.py (the repo), not in the fleet's copy:
        # a fleet's own invoke.yaml (tests' poll and lease tuning) is named as the runtime one.
        if (self.root / "invoke.yaml").exists():
            env["INVOKE_RUNTIME_CONFIG"] = str(self.root / "invoke.yaml")
        env.update(extra or {})
        return env

    # -- the Machines API, to look at what happened -------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call the local Fly's API."""
        headers = {**self.endpoint.headers, **kwargs.pop("headers", {})}
        with httpx.Client(base_url=self.endpoint.api_url, timeout=30.0) as client:
            return client.request(method, path, headers=headers, **kwargs)

    def machines(self, region: str | None = None) -> list[dict[str, Any]]:
        """Return the app's live machines (of ``region``), sorted by slot."""
        resp = self.api("GET", f"/v1/apps/{APP}/machines")
        if resp.status_code == 404:
            return []
        resp.raise_for_status()
        out = [
            m
            for m in resp.json()
            if (region is None or m["region"] == region)
            and m["state"] != "destroyed"
            and not is_control_machine(m)
        ]
        return sorted(out, key=lambda m: (m["region"], _slot(m), m["id"]))

    def volumes(self, region: str | None = None) -> list[dict[str, Any]]:
        """Return the app's live volumes (of ``region``), by id."""
        resp = self.api("GET", f"/v1/apps/{APP}/volumes")
        if resp.status_code == 404:
            return []
        resp.raise_for_status()
        return sorted(
            (
                v
                for v in resp.json()
                if (region is None or v["region"] == region) and v["state"] == "created"
            ),
            key=lambda v: v["id"],
        )

    def requests_log(self) -> list[dict[str, Any]]:
        """Return the local Fly's ``requests.log`` entries."""
        path = self.state_dir / "requests.log"
        if not path.exists():
            return []
        text = path.read_text()
        # The server may be appending: a last line without its newline is not written yet.
        text = text[: text.rfind("\n") + 1]
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def lock_machine_id(self) -> str | None:
        """Return the id of the app's deploy-lock machine, once a locked command made it."""
        resp = self.api("GET", f"/v1/apps/{APP}/machines")
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        found = [m["id"] for m in resp.json() if is_control_machine(m)]
        return found[0] if found else None

    def mutating_requests(self) -> list[dict[str, Any]]:
        """Return the logged API requests that could change the fleet (not GET).

        The deploy lock's own calls (its machine's lease and metadata) are left out: every
        locked command makes them, and they change nothing of the app's fleet.
        """
        log = self.requests_log()  # before asking for the lock machine, itself a call
        lock = self.lock_machine_id()
        return [
            r
            for r in log
            if str(r.get("method", "")).upper() not in ("GET", "HEAD")
            and str(r.get("path", "")).startswith("/v1")
            and not (lock and f"/machines/{lock}" in str(r.get("path", "")))
        ]

    # -- the app, through the edge proxy ------------------------------------------------------

    def app_request(
        self,
        method: str,
        path: str,
        *,
        region: str | None = None,
        machine_id: str | None = None,
        json_body: Any = None,
    ) -> httpx.Response:
        """Call the app through the local Fly's edge proxy."""
        headers = {"Host": f"{APP}.fly.dev"}
        if region:
            headers["fly-prefer-region"] = region
        if machine_id:
            headers["fly-force-instance-id"] = machine_id
        with httpx.Client(base_url=self.endpoint.proxy_url, timeout=10.0) as client:
            return client.request(method, path, headers=headers, json=json_body)

    def write_record(self, data: str, *, region: str = "syd") -> int:
        """POST a record through the proxy until the region's writer takes it; return its seq.

        The proxy spreads requests over the region's machines and only one takes writes (the
        others answer 409 "not primary"), so this asks again until it lands.
        """

        def attempt() -> httpx.Response | None:
            resp = self.app_request("POST", "/records", region=region, json_body={"data": data})
            return resp if resp.is_success else None

        resp = wait_for(
            attempt, timeout=30, every=0.05, what=f"the {region} primary to take a write"
        )
        seq: int = resp.json()["seq"]
        return seq

    def primary(self, region: str = "syd") -> str:
        """Return the id of the machine that takes writes (asks each machine of ``region``)."""

        def find() -> str | None:
            for m in self.machines(region):
                resp = self.app_request("GET", "/status", machine_id=m["id"])
                if resp.status_code == 200 and resp.json().get("role") == "primary":
                    return str(m["id"])
            return None

        found: str = wait_for(find, timeout=30, what=f"a primary in {region}")
        return found

    def records(self, machine_id: str) -> list[Mapping[str, Any]]:
        """Return every record a machine holds (asked directly)."""
        resp = self.app_request("GET", "/records?after=0&limit=1000", machine_id=machine_id)
        resp.raise_for_status()
        records: list[Mapping[str, Any]] = resp.json()["records"]
        return records


def _slot(machine: Mapping[str, Any]) -> int:
    value = (machine.get("config") or {}).get("metadata", {}).get("orch_slot", "0")
    return int(value) if str(value).isdigit() else 0
