"""Fault accounting for the reliability suite: what each test injected and what was lost.

Every reliability test calls :func:`record` once with its figures. When the environment
variable ``THREADLINE_RELIABILITY_REPORT`` names a file, records are appended to it as JSON
lines; ``tests/reliability/report.py`` runs the suite and renders docs/reliability.md
from them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

REPORT_ENV = "THREADLINE_RELIABILITY_REPORT"


def record(
    test: str,
    *,
    store: str,
    what: str,
    faults: int,
    operations: int,
    lost: int,
    seed: int | None = None,
    notes: str = "",
) -> None:
    """Note one test's figures (``lost`` is acknowledged data missing afterwards: goal 0)."""
    target = os.environ.get(REPORT_ENV)
    if not target:
        return
    line = {
        "test": test,
        "store": store,
        "what": what,
        "faults": faults,
        "operations": operations,
        "lost": lost,
        "seed": seed,
        "notes": notes,
        "at": time.time(),
    }
    with Path(target).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")
