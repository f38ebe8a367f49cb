"""Fly's region codes, with names, coordinates and whether a region has a WireGuard gateway.

The list is Fly's documented one (``reference/regions.html.markerb``, see
``../shared/ref/fly-notes.md`` §2). The live list is ``GET /v1/platform/regions``; a code Fly adds
later is refused here until it is added to :data:`REGIONS`, because a typo in a region code is
far more common than a brand-new region, and the typo would otherwise surface only mid-deploy.
Coordinates are the airports the codes are named after, close enough for nearest-region choices.
:data:`RETIRED` holds the 17 regions Fly has since retired (``deprecated`` in the live list):
accepted, so a fleet can span the 35 regions Fly's larger users ran in (the local Fly's ``sim``
benchmarks do), though Fly.io places no new machine there.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from orchestrator.errors import ConfigError

__all__ = ["REGIONS", "RETIRED", "Region", "distance_km", "nearest_region", "validate_region"]


@dataclass(frozen=True, slots=True)
class Region:
    """One Fly region.

    Attributes:
        code: the three-letter code (``syd``).
        name: where it is (``Sydney, Australia``).
        latitude: degrees north.
        longitude: degrees east.
        gateway: whether the region has a WireGuard gateway.
    """

    code: str
    name: str
    latitude: float
    longitude: float
    gateway: bool = True


_ALL = (
    Region("ams", "Amsterdam, Netherlands", 52.31, 4.76),
    Region("arn", "Stockholm, Sweden", 59.65, 17.92),
    Region("bom", "Mumbai, India", 19.09, 72.87),
    Region("cdg", "Paris, France", 49.01, 2.55),
    Region("dfw", "Dallas, Texas (US)", 32.90, -97.04),
    Region("ewr", "Secaucus, NJ (US)", 40.79, -74.06),
    Region("fra", "Frankfurt, Germany", 50.04, 8.56),
    Region("gru", "Sao Paulo, Brazil", -23.43, -46.47, gateway=False),
    Region("iad", "Ashburn, Virginia (US)", 39.04, -77.49),
    Region("jnb", "Johannesburg, South Africa", -26.14, 28.25, gateway=False),
    Region("lax", "Los Angeles, California (US)", 33.94, -118.41),
    Region("lhr", "London, United Kingdom", 51.47, -0.45),
    Region("nrt", "Tokyo, Japan", 35.77, 140.39),
    Region("ord", "Chicago, Illinois (US)", 41.98, -87.90),
    Region("sin", "Singapore, Singapore", 1.36, 103.99),
    Region("sjc", "San Jose, California (US)", 37.36, -121.93),
    Region("syd", "Sydney, Australia", -33.95, 151.18),
    Region("yyz", "Toronto, Canada", 43.68, -79.63),
)

_RETIRED = (
    Region("atl", "Atlanta, Georgia (US)", 33.64, -84.43),
    Region("bog", "Bogotá, Colombia", 4.70, -74.14),
    Region("bos", "Boston, Massachusetts (US)", 42.36, -71.01),
    Region("den", "Denver, Colorado (US)", 39.86, -104.67),
    Region("eze", "Ezeiza, Argentina", -34.82, -58.54),
    Region("gdl", "Guadalajara, Mexico", 20.52, -103.31),
    Region("gig", "Rio de Janeiro, Brazil", -22.81, -43.25),
    Region("hkg", "Hong Kong, Hong Kong", 22.31, 113.91),
    Region("mad", "Madrid, Spain", 40.47, -3.56),
    Region("mia", "Miami, Florida (US)", 25.79, -80.29),
    Region("otp", "Bucharest, Romania", 44.57, 26.10),
    Region("phx", "Phoenix, Arizona (US)", 33.43, -112.01),
    Region("qro", "Querétaro, Mexico", 20.62, -100.19),
    Region("scl", "Santiago, Chile", -33.39, -70.79),
    Region("sea", "Seattle, Washington (US)", 47.45, -122.31),
    Region("waw", "Warsaw, Poland", 52.17, 20.97),
    Region("yul", "Montreal, Canada", 45.47, -73.74),
)

RETIRED: frozenset[str] = frozenset(r.code for r in _RETIRED)
"""Codes of the regions Fly has retired (still accepted, see the module docstring)."""

REGIONS: Mapping[str, Region] = {r.code: r for r in sorted(_ALL + _RETIRED, key=lambda r: r.code)}
"""Region code → region, sorted by code."""


def _suggestion(code: str) -> str:
    lowered = code.strip().lower()
    if lowered in REGIONS:
        return f" (did you mean {lowered}?)"
    # People type the city ("sydney", "Dallas") as often as a near-miss of the code.
    for region in _ALL:
        city = region.name.split(",")[0].lower()
        if lowered and (lowered == city or (len(lowered) >= 4 and city.startswith(lowered))):
            return f" (did you mean {region.code}, {region.name}?)"
    close = difflib.get_close_matches(lowered, list(REGIONS), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def validate_region(code: object, where: str | None = None, *, option: str | None = None) -> Region:
    """Return the region for ``code``, or raise naming ``where`` and suggesting a near code.

    ``option`` names a command's option instead of a place in a file (see `ConfigError`).

    Raises:
        ConfigError: ``code`` is not a string or not a Fly region code.
    """
    if not isinstance(code, str):
        raise ConfigError(
            f"expected a region code such as 'syd', got {type(code).__name__}",
            where=where,
            option=option,
        )
    region = REGIONS.get(code)
    if region is not None:
        return region
    shown = code if len(code) <= 40 else code[:40] + "…"
    raise ConfigError(
        f"unknown Fly region {shown!r}{_suggestion(code)}: known regions are "
        + ", ".join(r.code for r in _ALL),
        where=where,
        option=option,
    )


def distance_km(a: Region, b: Region) -> float:
    """Return the great-circle distance between two regions in kilometres."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a.latitude, a.longitude, b.latitude, b.longitude))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def nearest_region(to: str, among: Iterable[str]) -> str | None:
    """Return the code in ``among`` closest to region ``to`` (ties by code), or ``None``."""
    origin = REGIONS[to]
    candidates = sorted(c for c in set(among) if c != to and c in REGIONS)
    if not candidates:
        return None
    return min(candidates, key=lambda c: (distance_km(origin, REGIONS[c]), c))
