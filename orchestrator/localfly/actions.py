"""Machine actions: start, stop, restart, suspend, signal, cordon, wait and exec."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.responses import Response

from orchestrator.localfly import lifecycle
from orchestrator.localfly.core import RUNNING, Call, LocalFly, json_response
from orchestrator.localfly.procs import map_mounts
from orchestrator.localfly.state import MachineRecord
from orchestrator.localfly.util import ApiError, parse_duration, show
from orchestrator.localfly.validate import check_body, check_signal

__all__ = [
    "cordon",
    "exec_machine",
    "restart_machine",
    "signal_machine",
    "start_machine",
    "stop_machine",
    "suspend_machine",
    "uncordon",
    "wait_machine",
]

_STARTABLE = ("created", "stopped", "suspended", "failed")
_SETTLED = {"created", "started", "stopped", "suspended", "failed", "destroyed"}
_WAIT_STATES = _SETTLED | {"settled"}


def _live(fly: LocalFly, call: Call) -> MachineRecord:
    m = fly.machine(call.params["app_name"], call.params["machine_id"])
    fly.check_lease(m, call.nonce)
    return m


async def start_machine(fly: LocalFly, call: Call) -> Response:
    """Answer ``POST .../start``: launch a stopped (or created) machine."""
    m = _live(fly, call)
    previous = m.state
    pending = bool(fly.rt(m.id).pending)
    if previous not in _STARTABLE or (pending and previous != "created"):
        raise ApiError(412, f"machine {m.id} still active, refusing to start (state {previous})")
    lifecycle.cancel_pending(fly, m)
    m.restarts = 0
    fly.event(m, "start", "starting", source="user")
    fly.set_state(m, "starting")
    lifecycle.schedule(
        fly, m, fly.profile.duration("start", fly.rng), lambda: lifecycle.launch(fly, m)
    )
    return json_response({"previous_state": previous, "migrated": False, "new_host": ""})


async def _stop_body(call: Call) -> tuple[int | None, float | None]:
    body = await call.json()
    if body is None:
        body = {}
    body = check_body("StopRequest", body)
    sig = check_signal(body["signal"]) if body.get("signal") else None
    timeout = None
    if body.get("timeout") not in (None, ""):
        try:
            timeout = parse_duration(body["timeout"])
        except ValueError:
            raise ApiError(400, f"invalid timeout {show(body['timeout'])}") from None
    return sig, timeout


async def _halt_to(
    fly: LocalFly, m: MachineRecord, final: str, sig: int | None, timeout: float | None
) -> None:
    async def work() -> None:
        await lifecycle.halt(fly, m, final, sig=sig, timeout=timeout)
        delay = fly.profile.duration("stop", fly.rng)
        if delay:
            await asyncio.sleep(delay)

    lifecycle.schedule(fly, m, 0, work)


async def stop_machine(fly: LocalFly, call: Call) -> Response:
    """Answer ``POST .../stop``: SIGTERM (or the given signal), SIGKILL after the timeout."""
    m = _live(fly, call)
    sig, timeout = await _stop_body(call)
    pending = lifecycle.cancel_pending(fly, m)
    if m.state in RUNNING or pending or fly.rt(m.id).proc is not None:
        fly.event(m, "stop", "stopping", source="user")
        fly.set_state(m, "stopping")
        await _halt_to(fly, m, "stopped", sig, timeout)
    return json_response({"ok": True})


async def suspend_machine(fly: LocalFly, call: Call) -> Response:
    """Answer ``POST .../suspend``: locally a stop that ends in ``suspended``."""
    m = _live(fly, call)
    pending = lifecycle.cancel_pending(fly, m)
    if m.state in RUNNING or pending or fly.rt(m.id).proc is not None:
        fly.event(m, "suspend", "suspending", source="user")
        fly.set_state(m, "suspending")
        await _halt_to(fly, m, "suspended", None, None)
    return json_response({"ok": True})


async def restart_machine(fly: LocalFly, call: Call) -> Response:
    """Answer ``POST .../restart?signal=&timeout=``: stop then start, same version."""
    m = _live(fly, call)
    if m.state not in RUNNING:
        raise ApiError(412, f"machine {m.id} is not started (state {m.state})")
    sig = check_signal(call.query("signal")) if call.query("signal") else None
    timeout = None
    if call.query("timeout"):
        try:
            timeout = parse_duration(call.query("timeout") or "")
        except ValueError:
            raise ApiError(400, f"invalid timeout {show(call.query('timeout'))}") from None
    lifecycle.cancel_pending(fly, m)
    m.restarts = 0
    fly.event(m, "restart", "restarting", source="user")
    fly.set_state(m, "restarting")

    async def work() -> None:
        await lifecycle.halt(fly, m, "restarting", sig=sig, timeout=timeout)
        await lifecycle.launch(fly, m)

    lifecycle.schedule(fly, m, fly.profile.duration("start", fly.rng), work)
    return json_response({"ok": True})


async def signal_machine(fly: LocalFly, call: Call) -> Response:
    """Answer ``POST .../signal``: send a signal to the machine's process group."""
    m = _live(fly, call)
    body = check_body("SignalRequest", await call.json())
    sig = check_signal(body.get("signal"), default="")
    proc = fly.rt(m.id).proc
    if proc is None:
        raise ApiError(412, f"machine {m.id} is not running")
    proc.signal_group(sig)
    return json_response({"ok": True})


async def cordon(fly: LocalFly, call: Call) -> Response:
    """Answer ``POST .../cordon``: the proxy stops routing to the machine."""
    m = _live(fly, call)
    m.cordoned = True
    fly.set_state(m, m.state)
    return json_response({"ok": True})


async def uncordon(fly: LocalFly, call: Call) -> Response:
    """Answer ``POST .../uncordon``: the proxy routes to the machine again."""
    m = _live(fly, call)
    m.cordoned = False
    fly.set_state(m, m.state)
    return json_response({"ok": True})


def _wait_states(call: Call) -> set[str]:
    states: set[str] = set()
    for value in call.request.query_params.getlist("state"):
        states.update(s.strip() for s in value.split(",") if s.strip())
    if states - _WAIT_STATES:
        bad = ", ".join(sorted(states - _WAIT_STATES))
        raise ApiError(400, f"invalid state {bad}: one of {', '.join(sorted(_WAIT_STATES))}")
    if "settled" in states:
        states = (states - {"settled"}) | _SETTLED
    return states or {"started"}


async def wait_machine(fly: LocalFly, call: Call) -> Response:
    """Answer ``GET .../wait``: block until the machine is in a state (at a version), else 408."""
    m = fly.machine(call.params["app_name"], call.params["machine_id"], live=False)
    states = _wait_states(call)
    version = call.query("version") or call.query("instance_id")
    text = call.query("timeout") or "60"
    # As Fly: whole seconds, 1 to 60 (the document types it integer; Fly blocks at most 60 s).
    if not text.isdigit() or not 1 <= int(text) <= 60:
        raise ApiError(400, f"invalid timeout {show(text)}: whole seconds from 1 to 60")
    timeout = float(text)
    rt = fly.rt(m.id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    # A client that gives up (a cancelled call) ends the wait: no need to hold it for 60 s.
    gone: asyncio.Future[None] | None = None
    try:
        while True:
            if m.state in states and (not version or m.version == version):
                event_id = m.events[-1]["id"] if m.events else ""
                return json_response(
                    {"ok": True, "state": m.state, "version": m.version, "event_id": event_id}
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                want = "/".join(sorted(states)) + (f" at version {version}" if version else "")
                raise ApiError(
                    408,
                    f"machine {m.id} did not reach {want} within {timeout:g}s (state {m.state})",
                )
            if gone is None:
                gone = asyncio.ensure_future(call.until_disconnected())
            changed = asyncio.ensure_future(rt.changed.wait())
            try:
                await asyncio.wait(
                    (changed, gone), timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                changed.cancel()
            if gone.done():
                raise ClientDisconnect
    finally:
        if gone is not None:
            gone.cancel()
            # Wait for it to stop reading before the answer goes out (never raises).
            await asyncio.wait((gone,))


async def exec_machine(fly: LocalFly, call: Call) -> Response:
    """Answer ``POST .../exec``: run a command in the machine's environment and root."""
    m = fly.machine(call.params["app_name"], call.params["machine_id"])
    body = check_body("MachineExecRequest", await call.json())
    command: Any = body.get("command") or (shlex.split(body["cmd"]) if body.get("cmd") else None)
    if not command:
        raise ApiError(400, "command is required")
    if fly.rt(m.id).proc is None or m.state != "started":
        raise ApiError(412, f"machine {m.id} is not started (state {m.state})")
    if fly.profile.simulated:
        raise ApiError(412, f"machine {m.id} is simulated (sim profile): nothing runs to exec in")
    timeout = float(body.get("timeout") or 30)
    env = lifecycle.machine_env(fly, m, m.port or 0)
    root = fly.machine_dir(m.id) / "root"
    command = map_mounts([str(w) for w in command], m.config.get("mounts") or [], root)
    try:
        proc = await asyncio.create_subprocess_exec(
            *command,
            cwd=fly.machine_dir(m.id) / "root",
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        return json_response({"exit_code": 127, "stdout": "", "stderr": f"{exc}\n"})
    try:
        out, err = await asyncio.wait_for(
            proc.communicate((body.get("stdin") or "").encode()), timeout
        )
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise ApiError(408, f"exec timed out after {timeout:g}s") from None
    rc = proc.returncode if proc.returncode is not None else -1
    result: dict[str, Any] = {
        "exit_code": rc if rc >= 0 else -1,
        "stdout": out.decode(errors="replace"),
        "stderr": err.decode(errors="replace"),
    }
    if rc < 0:
        result["exit_signal"] = -rc
    return json_response(result)
