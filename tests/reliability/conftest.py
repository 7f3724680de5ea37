"""Reliability suite: faults injected for real (kills, outages, hostile input).

Only our own plugins load. PostgreSQL tests need the server on 127.0.0.1:5432; under CI
they fail when it is missing, elsewhere they skip with the reason.
"""

from __future__ import annotations

import os

os.environ["THREADLINE_LOAD_PLUGINS"] = ",".join(
    f"threadline-{name}" for name in ("memory", "sqlite", "postgres", "fsspec", "openai")
)
