"""Request counts and the request log (``requests.log``, one JSON line per API call)."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

from orchestrator.localfly.util import iso_now

__all__ = ["RequestLog", "Stats"]


class Stats:
    """Request counts by operation and status since the server started (or a reset)."""

    def __init__(self) -> None:
        self.counts: dict[str, Counter[str]] = {}
        self.since = iso_now()

    def record(self, operation: str, status: int) -> None:
        """Count one request.

        Status 0: an injected fault dropped the connection; 499: the client closed it before
        the answer (a cancelled call).
        """
        self.counts.setdefault(operation, Counter())[str(status)] += 1

    def reset(self) -> None:
        """Start counting from zero."""
        self.counts.clear()
        self.since = iso_now()

    def to_api(self) -> dict[str, Any]:
        """Return the counts as JSON."""
        by_status: Counter[str] = Counter()
        for c in self.counts.values():
            by_status.update(c)
        return {
            "since": self.since,
            "total": sum(by_status.values()),
            "by_status": dict(sorted(by_status.items())),
            "rate_limited": by_status.get("429", 0),
            "operations": {op: dict(sorted(c.items())) for op, c in sorted(self.counts.items())},
        }


class RequestLog:
    """Append one JSON line per API request: never a header, never the token."""

    def __init__(self, path: Path, max_bytes: int = 64 << 20) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._file: IO[str] = open(path, "a", buffering=1)  # noqa: SIM115 - lives with the server

    def write(
        self,
        *,
        method: str,
        path: str,
        status: int,
        operation: str,
        mutating: bool,
        duration_ms: float,
        dropped: bool = False,
    ) -> None:
        """Log one request."""
        line: dict[str, Any] = {
            "time": iso_now(time.time()),
            "method": method,
            "path": path,
            "status": status,
            "operation": operation,
            "mutating": mutating,
            "duration_ms": round(duration_ms, 2),
        }
        if dropped:
            line["dropped"] = True
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
        if self._file.tell() > self.max_bytes:
            # One old generation is kept, so a long benchmark cannot fill the disk.
            self._file.close()
            self.path.replace(self.path.with_name(self.path.name + ".1"))
            self._file = open(self.path, "a", buffering=1)  # noqa: SIM115

    def close(self) -> None:
        """Close the file."""
        self._file.close()
