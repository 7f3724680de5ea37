"""Helpers shared by the benchmark scripts: timing, percentiles, tables, import cost.

Standard library only, so a benchmark runs wherever threadline and the store under
test are installed.
"""

from __future__ import annotations

import asyncio
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

__all__ = [
    "LoopLag",
    "best",
    "environment",
    "import_cost",
    "median_runs",
    "percentile",
    "print_table",
    "pseudo_english",
    "ratio",
    "run_concurrently",
    "us",
]

_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "you",
    "that",
    "it",
    "he",
    "was",
    "for",
    "on",
    "are",
    "as",
    "with",
    "his",
    "they",
    "at",
    "be",
    "this",
    "have",
    "from",
    "or",
    "one",
    "had",
    "by",
    "word",
    "but",
    "not",
    "what",
    "all",
    "were",
    "we",
    "when",
    "your",
    "can",
    "said",
    "there",
    "use",
    "an",
    "each",
    "which",
    "she",
    "do",
    "how",
    "their",
    "if",
    "will",
    "up",
    "other",
    "about",
    "out",
    "many",
    "then",
    "them",
    "these",
    "so",
    "some",
    "her",
    "would",
    "make",
    "like",
    "him",
    "into",
    "time",
    "has",
    "look",
    "two",
    "more",
    "write",
    "go",
    "see",
    "number",
    "no",
    "way",
    "could",
    "people",
]


def pseudo_english(count: int, size: int = 400, seed: int = 13) -> list[str]:
    """``count`` distinct texts of ``size`` ASCII bytes of pseudo-English (issue #13's
    messages), reproducible from ``seed``; build them before timing."""
    rng, out = random.Random(seed), []
    for index in range(count):
        words = [f"#{index}"]
        while sum(len(w) + 1 for w in words) < size:
            words.append(rng.choice(_WORDS))
        out.append(" ".join(words)[:size].capitalize())
    return out


async def run_concurrently(tasks: int, jobs: int, job: Callable[[int], Awaitable[None]]) -> None:
    """Run ``job(0..jobs-1)`` on ``tasks`` concurrent workers."""
    queue = iter(range(jobs))

    async def worker() -> None:
        for index in queue:
            await job(index)

    await asyncio.gather(*(worker() for _ in range(tasks)))


def best(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per workload, the best of several runs (highest rate; lowest latency for keys
    starting with ``W3``)."""
    return {k: (min if k.startswith("W3") else max)(r[k] for r in runs) for k in runs[0]}


def median_runs(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per figure, the median of several runs (what a report quotes on a noisy machine)."""
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


class LoopLag:
    """How long the event loop is kept from other tasks: the gaps between the turns of a
    task that does nothing but yield. ``worst()`` is the longest gap since its last call."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.running = True

    async def __aenter__(self) -> LoopLag:
        self.task = asyncio.create_task(self.tick())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.running = False
        await self.task

    async def tick(self) -> None:
        clock, last = time.perf_counter, time.perf_counter()
        while self.running:
            await asyncio.sleep(0)
            now = clock()
            if now - last > self.longest:
                self.longest = now - last
            last = now

    def worst(self) -> float:
        found, self.longest = self.longest, 0.0
        return found


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
