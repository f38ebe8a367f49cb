"""The sample app: the default workload a local Fly machine runs.

``python -m orchestrator.sampleapp`` serves ``/``, ``/status``, ``/metrics`` and ``/records`` on
``127.0.0.1:$PORT``, keeps records in SQLite on the machine's volume, takes writes only in the
primary region and lets replicas pull the primary's records. Operators' guide:
``docs/sample-app.md``.

Nothing is imported here, so starting the process loads only what the server needs.
"""

from __future__ import annotations
