"""Helpers shared by the benchmark scripts: timing, percentiles, tables, import cost.

Standard library only, so a benchmark runs wherever threadline and the store under
test are installed.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

__all__ = [
    "environment",
    "import_cost",
    "percentile",
    "print_table",
    "ratio",
    "us",
]


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``samples``, by nearest rank."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def us(seconds: float) -> str:
    """Seconds shown as microseconds, e.g. ``'41.3'``."""
    return f"{seconds * 1e6:,.1f}"


def ratio(ours: float | None, reference: float | None) -> str:
    """``ours / reference`` as ``'0.93x'``, or ``'-'`` when either is missing."""
    if not ours or not reference:
        return "-"
    return f"{ours / reference:.2f}x"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a Markdown table (pastes into a README as is)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    print(f"\n{title}\n")
    for index, row in enumerate(cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def environment() -> str:
    """One line naming the interpreter, SQLite and the machine."""
    import sqlite3

    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs"
    )


def import_cost(code: str, runs: int = 15) -> float:
    """Median wall time (seconds) of ``python -c CODE`` in a fresh interpreter.

    Bytecode is written and used: ``PYTHONDONTWRITEBYTECODE`` is removed from the
    child's environment and one warm-up run compiles what the code imports, so the
    number is what users see on their second run, not the compile cost.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    command = [sys.executable, "-c", code]
    subprocess.run(command, env=env, check=True)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)
