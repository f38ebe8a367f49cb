"""The regions the local Fly knows: Fly's documented list, with coordinates for latency."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["NEAREST", "REGIONS", "Region", "distance_km", "is_region", "regions_response"]

NEAREST = "iad"


@dataclass(frozen=True, slots=True)
class Region:
    """A Fly region.

    Attributes:
        code: the three-letter code (``syd``).
        name: where it is.
        latitude: degrees north.
        longitude: degrees east.
        geo_region: Fly's continent grouping.
        gateway_available: WireGuard gateways run there (all but gru and jnb).
        deprecated: a region Fly has retired (it lists it with ``deprecated: true``); kept so a
            simulated fleet can span the 35 regions Fly's larger users ran in.
    """

    code: str
    name: str
    latitude: float
    longitude: float
    geo_region: str
    gateway_available: bool = True
    deprecated: bool = False

    def to_api(self) -> dict[str, Any]:
        """Return the region as ``GET /v1/platform/regions`` lists it."""
        return {
            "code": self.code,
            "name": self.name,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "geo_region": self.geo_region,
            "gateway_available": self.gateway_available,
            "requires_paid_plan": False,
            "deprecated": self.deprecated,
            "mpg_available": False,
        }


# Fly's region list (reference/regions in superfly/docs); gru and jnb have no gateway. Then the
# 17 regions Fly retired, flagged deprecated.
REGIONS: dict[str, Region] = {
    r.code: r
    for r in (
        Region("ams", "Amsterdam, Netherlands", 52.37, 4.90, "europe"),
        Region("arn", "Stockholm, Sweden", 59.33, 18.06, "europe"),
        Region("bom", "Mumbai, India", 19.08, 72.88, "asia-pacific"),
        Region("cdg", "Paris, France", 48.86, 2.35, "europe"),
        Region("dfw", "Dallas, Texas (US)", 32.78, -96.80, "north-america"),
        Region("ewr", "Secaucus, NJ (US)", 40.79, -74.06, "north-america"),
        Region("fra", "Frankfurt, Germany", 50.11, 8.68, "europe"),
        Region("gru", "Sao Paulo, Brazil", -23.55, -46.63, "south-america", False),
        Region("iad", "Ashburn, Virginia (US)", 39.04, -77.49, "north-america"),
        Region("jnb", "Johannesburg, South Africa", -26.20, 28.05, "africa", False),
        Region("lax", "Los Angeles, California (US)", 34.05, -118.24, "north-america"),
        Region("lhr", "London, United Kingdom", 51.51, -0.13, "europe"),
        Region("nrt", "Tokyo, Japan", 35.68, 139.69, "asia-pacific"),
        Region("ord", "Chicago, Illinois (US)", 41.88, -87.63, "north-america"),
        Region("sin", "Singapore, Singapore", 1.35, 103.82, "asia-pacific"),
        Region("sjc", "San Jose, California (US)", 37.34, -121.89, "north-america"),
        Region("syd", "Sydney, Australia", -33.87, 151.21, "asia-pacific"),
        Region("yyz", "Toronto, Canada", 43.65, -79.38, "north-america"),
        # Retired by Fly, listed as deprecated (see Region.deprecated).
        Region("atl", "Atlanta, Georgia (US)", 33.64, -84.43, "north-america", deprecated=True),
        Region("bog", "Bogotá, Colombia", 4.70, -74.14, "south-america", deprecated=True),
        Region(
            "bos", "Boston, Massachusetts (US)", 42.36, -71.01, "north-america", deprecated=True
        ),
        Region("den", "Denver, Colorado (US)", 39.86, -104.67, "north-america", deprecated=True),
        Region("eze", "Ezeiza, Argentina", -34.82, -58.54, "south-america", deprecated=True),
        Region("gdl", "Guadalajara, Mexico", 20.52, -103.31, "north-america", deprecated=True),
        Region("gig", "Rio de Janeiro, Brazil", -22.81, -43.25, "south-america", deprecated=True),
        Region("hkg", "Hong Kong, Hong Kong", 22.31, 113.91, "asia-pacific", deprecated=True),
        Region("mad", "Madrid, Spain", 40.47, -3.56, "europe", deprecated=True),
        Region("mia", "Miami, Florida (US)", 25.79, -80.29, "north-america", deprecated=True),
        Region("otp", "Bucharest, Romania", 44.57, 26.10, "europe", deprecated=True),
        Region("phx", "Phoenix, Arizona (US)", 33.43, -112.01, "north-america", deprecated=True),
        Region("qro", "Querétaro, Mexico", 20.62, -100.19, "north-america", deprecated=True),
        Region("scl", "Santiago, Chile", -33.39, -70.79, "south-america", deprecated=True),
        Region("sea", "Seattle, Washington (US)", 47.45, -122.31, "north-america", deprecated=True),
        Region("waw", "Warsaw, Poland", 52.17, 20.97, "europe", deprecated=True),
        Region("yul", "Montreal, Canada", 45.47, -73.74, "north-america", deprecated=True),
    )
}


def is_region(code: object) -> bool:
    """Say whether ``code`` is a region the local Fly knows."""
    return isinstance(code, str) and code in REGIONS


def distance_km(a: str, b: str) -> float:
    """Return the great-circle distance between two regions."""
    ra, rb = REGIONS[a], REGIONS[b]
    lat1, lon1, lat2, lon2 = map(
        math.radians, (ra.latitude, ra.longitude, rb.latitude, rb.longitude)
    )
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def regions_response() -> dict[str, Any]:
    """Return the body of ``GET /v1/platform/regions``."""
    return {"nearest": NEAREST, "regions": [r.to_api() for r in REGIONS.values()]}
