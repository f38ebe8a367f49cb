"""Health checks: probe a machine's process the way Fly's checks do.

One asyncio task per machine runs all of its checks (no thread per check): each check
first runs after its grace period, then every interval (both shaped by the profile). An
``http`` check passes on 2xx, warns on 429 and is critical otherwise; a ``tcp`` check
passes when a connection opens. Before a check has run it reports ``warning``.

Service checks (``services[].checks``) run alongside the top-level ``checks``, named as Fly
names them in a machine's check list (``servicecheck-00-http-8080``); only they decide whether
the edge proxy routes to the machine, as on Fly, where top-level checks are informational.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.localfly.profiles import Profile
from orchestrator.localfly.util import iso_now, parse_duration

__all__ = [
    "CheckResult",
    "CheckSpec",
    "probe",
    "run_checks",
    "service_check_names",
    "specs_from_config",
]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's latest result, as ``Machine.checks`` lists it.

    Attributes:
        name: the check's name in the config.
        status: ``passing``, ``warning`` or ``critical``.
        output: what the check saw.
        updated_at: when, ISO 8601 UTC.
    """

    name: str
    status: str
    output: str
    updated_at: str

    def to_api(self) -> dict[str, Any]:
        """Return Fly's ``CheckStatus`` object."""
        return {
            "name": self.name,
            "status": self.status,
            "output": self.output,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """A check from the machine config, with effective timings in seconds.

    Attributes:
        name: the check's name.
        type: ``http`` or ``tcp``.
        path: the HTTP path.
        method: the HTTP method.
        headers: extra HTTP headers, as (name, value) pairs.
        interval: seconds between runs (the profile's effective value).
        timeout: seconds one run may take.
        grace: seconds after the launch before the first run.
        routes: a service check: the edge proxy routes only to machines passing all of them.
    """

    name: str
    type: str
    path: str
    method: str
    headers: tuple[tuple[str, str], ...]
    interval: float
    timeout: float
    grace: float
    routes: bool = False


def _service_checks(config: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """Return (name, check) for every service check, named as Fly names them."""
    out = []
    for service in config.get("services") or []:
        port = service.get("internal_port")
        for index, check in enumerate(service.get("checks") or []):
            kind = str(check.get("type") or "tcp")
            out.append((f"servicecheck-{index:02d}-{kind}-{port}", check))
    return out


def service_check_names(config: Mapping[str, Any]) -> list[str]:
    """Return the names of a config's service checks (those the edge proxy routes on)."""
    return [name for name, _ in _service_checks(config)]


def _spec(name: str, check: Mapping[str, Any], profile: Profile, *, routes: bool) -> CheckSpec:
    headers = tuple(
        (str(h.get("name", "")), str(v))
        for h in check.get("headers") or []
        for v in h.get("values") or []
    )
    return CheckSpec(
        name=name,
        type=str(check.get("type", "tcp")),
        path=str(check.get("path") or "/"),
        method=str(check.get("method") or "GET").upper(),
        headers=headers,
        interval=profile.check_interval(parse_duration(check.get("interval") or "15s")),
        timeout=profile.check_timeout(parse_duration(check.get("timeout") or "2s")),
        grace=profile.check_grace(parse_duration(check.get("grace_period") or "0s")),
        routes=routes,
    )


def specs_from_config(config: Mapping[str, Any], profile: Profile) -> list[CheckSpec]:
    """Return the top-level checks and the service checks of a (validated) machine config."""
    specs = [
        _spec(name, check, profile, routes=False)
        for name, check in sorted((config.get("checks") or {}).items())
    ]
    specs += [_spec(name, check, profile, routes=True) for name, check in _service_checks(config)]
    return specs


async def _http(spec: CheckSpec, port: int) -> tuple[str, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = [
            f"{spec.method} {spec.path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "User-Agent: Consul Health Check",
            "Connection: close",
            *(f"{k}: {v}" for k, v in spec.headers),
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        await writer.drain()
        status_line = (await reader.readline()).decode("latin-1").strip()
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            return "critical", f"HTTP {spec.method} {spec.path}: bad response {status_line!r}"
        code = int(parts[1])
        text = f"HTTP {spec.method} {spec.path}: {status_line.partition(' ')[2]}"
        if 200 <= code < 300:
            return "passing", text
        return ("warning" if code == 429 else "critical"), text
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def probe(spec: CheckSpec, port: int) -> tuple[str, str]:
    """Run one check against ``127.0.0.1:port``; return (status, output)."""
    try:
        if spec.type == "http":
            return await asyncio.wait_for(_http(spec, port), spec.timeout)
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), spec.timeout)
        writer.close()
        return "passing", f"TCP connect 127.0.0.1:{port}: Success"
    except TimeoutError:
        return "critical", f"{spec.type} check timed out after {spec.timeout:g}s"
    except OSError as exc:
        return "critical", f"{spec.type} check failed: {exc.strerror or exc}"


async def run_checks(
    specs: list[CheckSpec],
    port: int,
    results: dict[str, CheckResult],
    forced: Callable[[], str | None],
) -> None:
    """Run ``specs`` forever, writing results into ``results``.

    ``forced`` returns a reason when the checks must fail without probing (an injected
    failure or a region outage).
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    due = {s.name: start + s.grace for s in specs}
    for s in specs:
        results[s.name] = CheckResult(s.name, "warning", "waiting for the first check", iso_now())

    async def one(spec: CheckSpec) -> None:
        reason = forced()
        status, output = ("critical", reason) if reason else await probe(spec, port)
        results[spec.name] = CheckResult(spec.name, status, output, iso_now())
        due[spec.name] = loop.time() + spec.interval

    while specs:
        now = loop.time()
        ready = [s for s in specs if due[s.name] <= now]
        if ready:
            await asyncio.gather(*(one(s) for s in ready))
            continue
        await asyncio.sleep(min(due.values()) - now)
