"""PromQL gates in ``regions/waves.toml``: the queries a wave's metrics gate runs, and where.

A wave (or ``[defaults]``, for every wave that lists none of its own) may hold queries, as
Argo Rollouts' and Flagger's analyses do::

    [prometheus]
      url = "local"            # "local", "fly" (Fly's managed Prometheus) or an http(s) URL
      org = "personal"         # with url = "fly": https://api.fly.io/prometheus/<org>/

    [[defaults.query]]
      name = "5xx per second"
      query = 'sum(rate(http_requests_total{region="$region",status=~"5.."}[$window]))'
      comparison = "<="        # the value must be <= threshold (also <, >, >=)
      threshold = 0.5
      window = "10s"           # at most the wave's bake_time
      baseline = 1.5           # and at most 1.5 x the old release's value (optional)

`read_queries` reads one table's ``query`` array and `check_prometheus` the ``[prometheus]``
table, each adding every problem it finds to a list (one line each, naming file and key), so
``load_spec`` reports them all at once. `read_prometheus` gives the deploy the endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from orchestrator.errors import ConfigError, ConfigProblems
from orchestrator.fleetconfig.values import Table, format_seconds, read_toml

__all__ = [
    "COMPARISONS",
    "FLY_PROMETHEUS",
    "PromQuery",
    "PrometheusSource",
    "check_prometheus",
    "read_prometheus",
    "read_queries",
]

WAVES_TOML = "regions/waves.toml"
COMPARISONS = ("<", "<=", ">", ">=")
FLY_PROMETHEUS = "https://api.fly.io/prometheus/{org}/"
_QUERY_KEYS = ("name", "query", "comparison", "threshold", "window", "baseline")
_PROMETHEUS_KEYS = ("url", "org")


@dataclass(frozen=True, slots=True)
class PromQuery:
    """One PromQL check of a wave's metrics gate.

    Attributes:
        name: what it measures, for messages.
        query: PromQL; ``$app``, ``$region`` and ``$window`` are filled in. It must return
            one value (aggregate with ``sum``, ``avg`` or ``max``).
        comparison: how the value must relate to ``threshold``.
        threshold: the absolute bound.
        window_s: the span the query looks at (``$window``); the new release is measured over
            the last ``window_s`` of the bake.
        baseline: the largest ratio allowed against the old release's value over a window as
            long just before the region changed (worse by more fails); ``None``: no baseline.
    """

    name: str
    query: str
    comparison: str
    threshold: float
    window_s: float
    baseline: float | None = None

    def to_params(self) -> dict[str, Any]:
        """Return the query as a plan step's parameters (JSON-ready)."""
        return {
            "name": self.name,
            "query": self.query,
            "comparison": self.comparison,
            "threshold": self.threshold,
            "window_s": self.window_s,
            "baseline": self.baseline,
        }


@dataclass(frozen=True, slots=True)
class PrometheusSource:
    """Where PromQL gates send their queries.

    Attributes:
        url: ``"local"`` (the local Fly's Prometheus), ``"fly"`` (the API token goes along as
            ``Authorization``) or an http(s) URL (asked without credentials).
        org: the Fly organization (for ``"fly"``).
    """

    url: str
    org: str = "personal"

    def base_url(self) -> str | None:
        """Return the query API's base URL (``None`` for ``"local"``: found at run time)."""
        if self.url == "local":
            return None
        if self.url == "fly":
            return FLY_PROMETHEUS.format(org=self.org)
        return self.url if self.url.endswith("/") else self.url + "/"


def _read_query(entry: Mapping[str, Any], path: str, bake_s: float) -> PromQuery:
    problems: list[ConfigError] = []
    table = Table(entry, WAVES_TOML, path, _QUERY_KEYS, problems=problems)

    def attempt(read: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return read(*args, **kwargs)
        except ConfigError as exc:
            problems.append(exc)
            return None

    name = attempt(table.string, "name")
    if "name" not in entry:
        problems.append(ConfigError("missing: name the query", where=table.at("name")))
    query = attempt(table.string, "query")
    if "query" not in entry:
        problems.append(ConfigError("missing: the PromQL to run", where=table.at("query")))
    elif isinstance(query, str) and not query.strip():
        problems.append(ConfigError("empty: the PromQL to run", where=table.at("query")))
    comparison = attempt(table.choice, "comparison", COMPARISONS)
    threshold = attempt(table.number, "threshold", -1e18, 1e18)
    if "threshold" not in entry:
        problems.append(
            ConfigError("missing: the bound the value is held to", where=table.at("threshold"))
        )
    window = attempt(table.duration, "window", positive=True, limit_s=3600.0)
    if "window" not in entry:
        problems.append(ConfigError('missing: e.g. window = "10s"', where=table.at("window")))
    elif window is not None and window > bake_s:
        problems.append(
            ConfigError(
                f"{format_seconds(window)} is longer than the wave's bake_time "
                f"({format_seconds(bake_s)}): the window would reach back before the new "
                "release ran; shorten it or lengthen bake_time",
                where=table.at("window"),
            )
        )
    baseline = attempt(table.number, "baseline", 1.0, 1000.0)
    if problems:
        raise ConfigProblems(problems)
    return PromQuery(
        name=str(name),
        query=str(query),
        comparison=comparison or "<=",
        threshold=float(threshold),
        window_s=float(window),
        baseline=baseline,
    )


def read_queries(
    body: Mapping[str, Any], path: str, bake_s: float, problems: list[ConfigError]
) -> tuple[PromQuery, ...] | None:
    """Read ``body``'s ``query`` array (``None`` when it has none); add problems to the list."""
    if "query" not in body:
        return None
    value = body["query"]
    entries: Sequence[Any] = [value] if isinstance(value, dict) else value
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        where = f"{WAVES_TOML}: {path}.query" if path else f"{WAVES_TOML}: query"
        problems.append(
            ConfigError(f"expected an array of tables ([[{path}.query]])", where=where)
        )
        return ()
    queries = []
    for n, entry in enumerate(entries, start=1):
        try:
            queries.append(_read_query(entry, f"{path}.query[{n}]", bake_s))
        except ConfigProblems as exc:
            problems.extend(exc.problems)
    return tuple(queries)


def check_prometheus(body: Any, problems: list[ConfigError]) -> PrometheusSource | None:
    """Read ``[prometheus]`` (``None`` when absent); add its problems to the list."""
    if body is None:
        return None
    if not isinstance(body, dict):
        where = f"{WAVES_TOML}: prometheus"
        problems.append(ConfigError("expected a table: [prometheus]", where=where))
        return None
    found = len(problems)
    table = Table(body, WAVES_TOML, "prometheus", _PROMETHEUS_KEYS, problems=problems)
    url: str | None = None
    org = "personal"
    try:
        url = table.string("url")
        org = table.string("org") or org
    except ConfigError as exc:
        problems.append(exc)
    if "url" not in body:
        problems.append(
            ConfigError(
                'missing: "local", "fly" or the URL of a Prometheus-compatible API',
                where=table.at("url"),
            )
        )
    elif url is not None and url not in ("local", "fly"):
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            problems.append(
                ConfigError(
                    f'{url[:60]!r} is not "local", "fly" or an http(s) URL', where=table.at("url")
                )
            )
    if len(problems) > found or url is None:
        return None
    return PrometheusSource(url=url, org=org)


def read_prometheus(root: Path) -> PrometheusSource | None:
    """Return ``[prometheus]`` of ``regions/waves.toml`` (``None``: no PromQL gates).

    Raises:
        ConfigProblems: the section is malformed (``load_spec`` reports the same first).
    """
    if not (root / WAVES_TOML).exists():
        return None
    problems: list[ConfigError] = []
    source = check_prometheus(read_toml(root, WAVES_TOML, {}).get("prometheus"), problems)
    if problems:
        raise ConfigProblems(problems)
    return source
