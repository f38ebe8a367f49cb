"""Typed reading of TOML values, with errors that name the file and the key.

Shared by the loader (``load.py``, ``flytoml.py``) and ``invoke scale`` (``edit.py``): Go
durations, ``max_unavailable``, sizes in MB and GB, Fly's name rules, and :class:`Table`, a TOML
table whose getters check types and ranges and refuse unknown keys with a did-you-mean.
Every error is a one-line :class:`ConfigError` whose ``where`` reads ``regions/syd.toml: count``.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError

__all__ = [
    "DAY_S",
    "MAX_COUNT",
    "MAX_VOLUME_GB",
    "Table",
    "check_app_name",
    "check_image",
    "check_volume_name",
    "describe",
    "format_seconds",
    "parse_duration",
    "parse_gb",
    "parse_mb",
    "read_toml",
    "resolve_max_unavailable",
    "show_key",
    "suggest",
]

MAX_COUNT = 1000
"""Most machines one region may ask for: a guard against a typo'd extra digit."""
MAX_VOLUME_GB = 500
"""Fly's largest volume."""
DAY_S = 86400.0

_APP_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_VOLUME_NAME = re.compile(r"[A-Za-z0-9_]{1,30}")
# An OCI image reference: [registry[:port]/]lowercase/path[:tag][@algo:hex].
_IMAGE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def describe(value: object) -> str:
    """Describe a TOML value for a one-line message: ``a string ('2')``."""
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a float ({value})"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:40] + "…"
        return f"a string ({shown!r})"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"


def show_key(key: str) -> str:
    """Return ``key`` as it may appear in a one-line message: bare if TOML allows, else quoted."""
    if re.fullmatch(r"[A-Za-z0-9_-]+", key):
        return key
    # Quoted keys may hold anything, even newlines; JSON escaping keeps the message one line.
    return json.dumps(key)


def suggest(word: str, choices: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the choice closest to ``word``, or ``""``."""
    choices = list(choices)
    # A shortened key ("rpo" for "rpo_records") is nearer in intent than in spelling.
    close = [c for c in choices if c.startswith(f"{word}_")]
    close = close or difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_duration(value: object, where: str) -> float:
    """Return seconds for a Go duration string such as ``"15s"``, ``"500ms"`` or ``"1m30s"``.

    Bare numbers are refused: fly.toml writes durations as strings, and a bare ``15`` could
    mean seconds or nanoseconds depending on who reads it.

    Raises:
        ConfigError: the value is not a non-negative Go duration.
    """
    allowed = 'a duration such as "15s", "500ms" or "1m30s" (units h, m, s, ms, us, ns)'
    if not isinstance(value, str):
        raise ConfigError(f"expected {allowed}, got {describe(value)}", where=where)
    if value == "0":
        return 0.0
    total, pos = 0.0, 0
    while pos < len(value):
        part = _DURATION_PART.match(value, pos)
        if part is None:
            break
        total += float(part.group(1)) * _DURATION_UNITS[part.group(2)]
        pos = part.end()
    if pos == 0 or pos != len(value):
        raise ConfigError(f"expected {allowed}, got {describe(value)}", where=where)
    return round(total, 9)


def format_seconds(seconds: float) -> str:
    return f"{seconds:g}s"


def resolve_max_unavailable(value: object, count: int, where: str) -> int:
    """Turn ``max_unavailable`` into a machine count, the way flyctl reads ``--max-unavailable``.

    A value of 1 or more is a count; a value between 0 and 1 is a fraction of ``count``,
    rounded up, and never less than one machine.

    Raises:
        ConfigError: the value is not a positive whole number or a fraction in (0, 1).
    """
    allowed = "a whole number of machines (1 or more) or a fraction of count between 0 and 1"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"expected {allowed}, got {describe(value)}", where=where)
    if 0 < value < 1:
        return max(1, math.ceil(value * count))
    if value >= 1 and float(value).is_integer():
        return int(value)
    raise ConfigError(f"expected {allowed}, got {value}", where=where)


def check_app_name(name: object, where: str) -> str:
    """Return ``name`` if Fly accepts it as an app name, else raise naming ``where``."""
    if not isinstance(name, str):
        raise ConfigError(f"expected an app name, got {describe(name)}", where=where)
    if not _APP_NAME.fullmatch(name):
        raise ConfigError(
            f"{name[:64]!r} is not a valid Fly app name: use 1 to 63 lowercase letters, digits and "
            "dashes, starting and ending with a letter or digit",
            where=where,
        )
    return name


def check_image(image: object, where: str) -> str:
    """Return ``image`` if it is an image reference (``registry.fly.io/app:v1``), else raise."""
    if not isinstance(image, str):
        raise ConfigError(f"expected an image reference, got {describe(image)}", where=where)
    if len(image) > 255 or not _IMAGE.fullmatch(image):
        raise ConfigError(
            f"{image[:64]!r} is not an image reference: expected [registry/]name[:tag][@digest] "
            "with a lowercase name, e.g. 'registry.fly.io/sample-app:v1'",
            where=where,
        )
    return image


# ---------------------------------------------------------------------------------------------
# Reading files and tables


class Table:
    """One TOML table being read: typed getters whose errors name the file and the key."""

    def __init__(
        self,
        data: Mapping[str, Any],
        file: str,
        path: str,
        known: Iterable[str],
        *,
        tolerated: Iterable[str] = (),
        refused: Mapping[str, str] | None = None,
        ignored: list[str] | None = None,
        problems: list[ConfigError] | None = None,
    ) -> None:
        """Check the table's keys; with ``problems``, unknown keys are added there, not raised."""
        self.data = data
        self.file = file
        self.path = path
        known = tuple(known)
        tolerated = tuple(tolerated)
        for key in data:
            if key in known:
                continue
            if key in tolerated:
                if ignored is not None:
                    ignored.append(self.at(key))
                continue
            if refused and key in refused:
                reason = f"not supported by this tool: {refused[key]}"
                error = ConfigError(reason, where=self.at(key))
            else:
                error = ConfigError(
                    f"unknown key{suggest(key, (*known, *tolerated))}; allowed: {', '.join(known)}",
                    where=self.at(key),
                )
            if problems is None:
                raise error
            problems.append(error)

    def at(self, key: str) -> str:
        """Return ``file: path.key`` for messages."""
        key = show_key(key)
        return f"{self.file}: {self.path}.{key}" if self.path else f"{self.file}: {key}"

    def here(self) -> str:
        """Return ``file: path`` for messages about the table itself."""
        return f"{self.file}: {self.path}" if self.path else self.file

    def has(self, key: str) -> bool:
        return key in self.data

    def _expect(self, key: str, what: str) -> ConfigError:
        return ConfigError(f"expected {what}, got {describe(self.data[key])}", where=self.at(key))

    def required(self, key: str, hint: str) -> Any:
        if key not in self.data:
            raise ConfigError(f"missing: {hint}", where=self.at(key))
        return self.data[key]

    def string(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._expect(key, "a string")
        control = re.search(r"[\x00-\x08\x0a-\x1f\x7f]", value)
        if control:
            # No value in these files needs one, and a newline would break a message or a header.
            raise ConfigError(
                f"contains a control character ({control.group()!r}) in {value[:40]!r}",
                where=self.at(key),
            )
        return value

    def choice(self, key: str, allowed: Iterable[str]) -> str | None:
        value = self.string(key)
        allowed = tuple(allowed)
        if value is not None and value not in allowed:
            raise ConfigError(
                f"{value[:40]!r} is not allowed{suggest(value, allowed)}: "
                f"allowed {', '.join(allowed)}",
                where=self.at(key),
            )
        return value

    def integer(self, key: str, low: int, high: int, unit: str = "") -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        span = f"a whole number from {low} to {high}{unit}"
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._expect(key, span)
        if not low <= value <= high:
            raise ConfigError(f"expected {span}, got {value}", where=self.at(key))
        return value

    def number(self, key: str, low: float, high: float, *, above_low: bool = False) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if above_low:
            span = f"a number above {low:g} and at most {high:g}"
        else:
            span = f"a number from {low:g} to {high:g}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._expect(key, span)
        if not math.isfinite(value) or value > high or value < low or (above_low and value == low):
            raise ConfigError(f"expected {span}, got {value}", where=self.at(key))
        return float(value)

    def boolean(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self._expect(key, "true or false")
        return value

    def duration(self, key: str, *, positive: bool, limit_s: float = DAY_S) -> float | None:
        if key not in self.data:
            return None
        seconds = parse_duration(self.data[key], self.at(key))
        if (positive and seconds <= 0) or seconds > limit_s:
            low = "above 0s" if positive else "0s or more"
            raise ConfigError(
                f"expected a duration {low} and at most {format_seconds(limit_s)}, "
                f"got {self.data[key]!r}",
                where=self.at(key),
            )
        return seconds

    def table(self, key: str) -> Mapping[str, Any] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self._expect(key, f"a table ([{self._dotted(key)}])")
        return value

    def tables(self, key: str) -> list[Mapping[str, Any]]:
        """Return an array of tables; a single table counts as an array of one, as in flyctl."""
        value = self.data.get(key)
        if value is None:
            return []
        if isinstance(value, dict):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self._expect(key, f"an array of tables ([[{self._dotted(key)}]])")
        return value

    def _dotted(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key


def read_toml(root: Path, rel: str, overlay: Mapping[str, str]) -> dict[str, Any]:
    """Parse one file under ``root``; every failure becomes a ConfigError naming ``rel``."""
    if rel in overlay:
        text = overlay[rel]
    else:
        try:
            raw = (root / rel).read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"not found in {root}", where=rel) from None
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror or exc}", where=rel) from exc
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigError(
                f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at line {line} "
                f"(offset {exc.start}); save the file as UTF-8",
                where=rel,
            ) from None
    # Editors on Windows like to start files with a byte-order mark; TOML does not allow one.
    text = text.removeprefix("\ufeff")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        detail = str(exc)
        found = re.search(r"\(at line (\d+), column (\d+)\)$", detail)
        if found:
            reason = detail[: found.start()].strip()
            where_in = f"line {found.group(1)}, column {found.group(2)}"
        else:
            reason, where_in = detail.replace("(at end of document)", "").strip(), "end of file"
        reason = reason[:1].lower() + reason[1:]
        raise ConfigError(f"invalid TOML at {where_in}: {reason}", where=rel) from None


def parse_mb(value: object, where: str) -> int:
    """Read fly.toml's ``memory``: an integer in MB or a string such as ``"512mb"``/``"1gb"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        found = re.fullmatch(r"\s*(\d+)\s*(mb|m|mib|gb|g|gib)?\s*", value, re.IGNORECASE)
        if found:
            unit = (found.group(2) or "mb").lower()
            return int(found.group(1)) * (1024 if unit.startswith("g") else 1)
    raise ConfigError(
        f'expected memory in MB such as 512 or "1gb", got {describe(value)}', where=where
    )


def parse_gb(value: object, where: str) -> int:
    """Read a volume size: an integer in GB or a string such as ``"10gb"``."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        found = re.fullmatch(r"\s*(\d+)\s*(gb|g|gib)?\s*", value, re.IGNORECASE)
        number = int(found.group(1)) if found else None
    if number is None or not 1 <= number <= MAX_VOLUME_GB:
        raise ConfigError(
            f'expected a whole number of GB from 1 to {MAX_VOLUME_GB} such as "1gb", '
            f"got {describe(value)}",
            where=where,
        )
    return number


def check_volume_name(name: str, where: str) -> str:
    """Return ``name`` if Fly accepts it as a volume name, else raise naming ``where``."""
    if not _VOLUME_NAME.fullmatch(name):
        raise ConfigError(
            f"{name[:40]!r} is not a valid Fly volume name: use 1 to 30 letters, digits and "
            "underscores",
            where=where,
        )
    return name
