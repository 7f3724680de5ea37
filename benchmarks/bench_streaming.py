#!/usr/bin/env python
"""What does persistence add to a streamed turn? The agent against the bare provider.

    python benchmarks/bench_streaming.py                      # SQLite normal + full, PostgreSQL
    python benchmarks/bench_streaming.py --turns 200 --delay 0.005 --stores sqlite

An OpenAI-compatible server (``tests/e2e/openai_server.py``, run as a subprocess so it
does not share the event loop) streams a reply of ``--chunks`` chunks with ``--delay``
seconds between them. In the same run and alternating turn by turn, the same stream is
consumed twice:

* **bare**: ``OpenAIProvider.stream(...)`` alone, no persistence, the same number of
  messages in the request as the agent sends;
* **agent**: ``Agent.chat_stream(...)`` with the same provider class on a store: the
  user message durable before the first token, the reply inserted at its first token
  and finished with its status, one ``ApiCall`` per turn, a 2-round sliding window
  read from the store.

Reported per store: time to first token (TTFT) and whole-turn time, median and p95, and
what the agent adds (agent minus bare). Targets: added TTFT <= 1 ms median on SQLite,
<= 2 ms on PostgreSQL; added turn time <= 5 %. Then where the time goes: every store
call of a turn, timed as the runtime awaits it, and which of them sit on the path to the
first token or to the end of the turn. PostgreSQL is used when threadline-postgres is
installed and ``THREADLINE_BENCH_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``) is reachable: a database is created for
the run and dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault(
    "THREADLINE_LOAD_PLUGINS", "threadline-sqlite,threadline-postgres,threadline-openai"
)

from _common import environment, percentile, print_table

import threadline
from threadline import Message
from threadline.ids import new_id
from threadline.runtime.providers import ChatRequest, TextDelta
from threadline_openai import OpenAIProvider

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "tests" / "e2e" / "openai_server.py"
ADMIN_URL = os.environ.get("THREADLINE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
TENANT = "019bda9f-0000-7000-8000-0000000000b1"
USER = "019bda9f-0000-7000-8000-0000000000b2"
SYSTEM = "You are a benchmark assistant."
MODEL = "bench-model"
TARGET_TTFT_MS = {"sqlite": 1.0, "postgres": 2.0}
TARGET_TURN_PCT = 5.0


# -- the server -----------------------------------------------------------------------------


@contextlib.contextmanager
def server_process(delay: float, first_delay: float = 0.0) -> Iterator[str]:
    """Run the test server in a subprocess; yield its base URL."""
    command = [sys.executable, str(SERVER), "--port", "0", "--delay", str(delay)]
    proc = subprocess.Popen(
        [*command, "--first-delay", str(first_delay)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the test server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- stores ---------------------------------------------------------------------------------


async def _postgres_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(ADMIN_URL, timeout=3)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def postgres_database(wanted: bool) -> AsyncIterator[str | None]:
    """A database created for this run (``None`` when not wanted or not available)."""
    if not wanted:
        yield None
        return
    try:
        import threadline_postgres  # noqa: F401
    except ImportError:
        print("PostgreSQL: threadline-postgres is not installed; skipped")
        yield None
        return
    name = f"threadline_bench_{uuid.uuid4().hex[:12]}"
    try:
        await _postgres_admin(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        print(f"PostgreSQL: not reachable at {ADMIN_URL} ({type(exc).__name__}); skipped")
        yield None
        return
    parts = urlsplit(ADMIN_URL)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, "/" + name, "", ""))
    finally:
        for attempt in range(10):  # the server may be restarting: give it a few seconds
            try:
                await _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                break
            except Exception as exc:
                if attempt == 9:
                    print(f"PostgreSQL: could not drop database {name} ({exc!r})")
                await asyncio.sleep(1)


# -- measuring ------------------------------------------------------------------------------


class Samples:
    """TTFT and whole-turn times (seconds) of one way of consuming the stream."""

    def __init__(self) -> None:
        self.ttft: list[float] = []
        self.total: list[float] = []

    def add(self, ttft: float, total: float) -> None:
        self.ttft.append(ttft)
        self.total.append(total)


def question(chunks: int) -> str:
    """A user message the server echoes back in exactly ``chunks`` chunks."""
    return " ".join(f"word{i}" for i in range(chunks - 1))


def bare_messages(text: str, reply: str) -> list[Message]:
    """What the agent sends in a steady state: system prompt, 2 rounds, the new question."""
    sid = new_id()
    messages = [Message(session_id=sid, tenant_id=TENANT, role="system", content=SYSTEM)]
    for _ in range(2):
        messages.append(Message(session_id=sid, tenant_id=TENANT, role="user", content=text))
        messages.append(Message(session_id=sid, tenant_id=TENANT, role="assistant", content=reply))
    messages.append(Message(session_id=sid, tenant_id=TENANT, role="user", content=text))
    return messages


async def bare_turn(provider: OpenAIProvider, messages: list[Message]) -> tuple[float, float]:
    """One stream through the provider alone: (TTFT, total) in seconds."""
    started = time.perf_counter()
    first: float | None = None
    async for event in provider.stream(ChatRequest(model=MODEL, messages=messages)):
        if first is None and isinstance(event, TextDelta) and event.text:
            first = time.perf_counter()
    ended = time.perf_counter()
    assert first is not None
    return first - started, ended - started


async def agent_turn(agent: threadline.Agent, text: str) -> tuple[float, float]:
    """One persisted turn: (TTFT, total) in seconds, the final writes included."""
    started = time.perf_counter()
    first: float | None = None
    async for _ in agent.chat_stream(text):
        if first is None:
            first = time.perf_counter()
    ended = time.perf_counter()
    assert first is not None
    return first - started, ended - started


async def build_agent(store: threadline.Store, provider: OpenAIProvider) -> threadline.Agent:
    """An agent on a new session of ``store``, streaming through ``provider``."""
    return await (
        threadline.AgentBuilder(SYSTEM)
        .with_store(store)
        .with_tenant_id(TENANT)
        .with_user_id(USER)
        .with_session_id(new_id())
        .with_sliding_window(2)
        .with_provider(provider)
        .build()
    )


async def measure(
    url: str, base_url: str, *, turns: int, chunks: int, warmup: int
) -> tuple[Samples, Samples, Samples, Samples]:
    """Steady-state turns (bare vs agent, alternating) and first turns of new sessions."""
    text = question(chunks)
    store = await threadline.connect(url)
    bare_provider = OpenAIProvider(base_url=base_url, model=MODEL)
    agent_provider = OpenAIProvider(base_url=base_url, model=MODEL)
    agent = await build_agent(store, agent_provider)
    try:
        reply = await agent.chat(text)  # the session exists; the warm-up fills its window
        messages = bare_messages(text, reply)
        bare, persisted = Samples(), Samples()
        for i in range(warmup + turns):
            pair: list[Callable[[], Awaitable[tuple[float, float]]]] = [
                functools.partial(bare_turn, bare_provider, messages),
                functools.partial(agent_turn, agent, text),
            ]
            if i % 2:
                pair.reverse()  # alternate the order: neither side always goes first
            results = [await run() for run in pair]
            if i % 2:
                results.reverse()
            if i >= warmup:
                bare.add(*results[0])
                persisted.add(*results[1])
        # the first turn of a session also opens it (session row, system prompt)
        first_bare, first_agent = Samples(), Samples()
        first_messages = [messages[0], messages[-1]]
        for i in range(max(10, turns // 5)):
            fresh = await build_agent(store, agent_provider)  # a warm provider, as above
            a = await agent_turn(fresh, text)
            b = await bare_turn(bare_provider, first_messages)
            if i >= 2:
                first_agent.add(*a)
                first_bare.add(*b)
        return bare, persisted, first_bare, first_agent
    finally:
        await agent.close()
        await bare_provider.aclose()
        await store.close()


# -- where the time goes --------------------------------------------------------------------

_TIMED = (
    "get_session",
    "create_session",
    "interrupt_streaming",
    "save_message",
    "load_window",
    "update_message",
    "save_api_call",
)


async def breakdown(url: str, base_url: str, *, turns: int, chunks: int) -> dict[str, list[float]]:
    """Time every store call the runtime makes during ``turns`` steady-state turns."""
    text = question(chunks)
    store = await threadline.connect(url)
    timings: dict[str, list[float]] = defaultdict(list)
    agent = await build_agent(store, OpenAIProvider(base_url=base_url, model=MODEL))
    try:
        await agent.chat(text)
        await agent.chat(text)
        for name in _TIMED:
            method = getattr(store, name)

            async def timed(*args: Any, _m: Any = method, _n: str = name, **kw: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await _m(*args, **kw)
                finally:
                    timings[_n].append(time.perf_counter() - started)

            setattr(store, name, timed)
        for _ in range(turns):
            await agent.chat(text)
    finally:
        await agent.close()
        await store.close()
    return timings


# -- report ---------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report_row(
    label: str, kind: str, bare: Samples, agent: Samples
) -> tuple[list[object], list[str]]:
    added_ttft = median(agent.ttft) - median(bare.ttft)
    added_ttft_p95 = percentile(agent.ttft, 95) - percentile(bare.ttft, 95)
    added_pct = (median(agent.total) / median(bare.total) - 1) * 100
    target = TARGET_TTFT_MS[kind]
    misses = []
    if added_ttft * 1000 > target:
        misses.append(f"{label}: added TTFT {added_ttft * 1000:.2f} ms > {target} ms")
    if added_pct > TARGET_TURN_PCT:
        misses.append(f"{label}: added turn time {added_pct:.1f} % > {TARGET_TURN_PCT} %")
    row: list[object] = [
        label,
        f"{ms(median(bare.ttft))} / {ms(percentile(bare.ttft, 95))}",
        f"{ms(median(agent.ttft))} / {ms(percentile(agent.ttft, 95))}",
        f"{ms(added_ttft)} / {ms(added_ttft_p95)}",
        f"{ms(median(bare.total))}",
        f"{ms(median(agent.total))}",
        f"{added_pct:+.1f} %",
        "ok" if not misses else "MISSED",
    ]
    return row, misses


async def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--turns", type=int, default=100, help="measured turns per store")
    parser.add_argument("--warmup", type=int, default=10, help="turns not measured")
    parser.add_argument("--chunks", type=int, default=40, help="chunks in each reply")
    parser.add_argument("--delay", type=float, default=0.002, help="seconds between chunks")
    parser.add_argument(
        "--first-delay",
        type=float,
        default=0.0,
        help="seconds the server waits before the first chunk (a model's own TTFT)",
    )
    parser.add_argument(
        "--stores",
        default="sqlite,sqlite-full,postgres",
        help="comma-separated: sqlite, sqlite-full, postgres",
    )
    args = parser.parse_args()
    wanted = [s.strip() for s in args.stores.split(",") if s.strip()]

    print(environment())
    print(
        f"{args.turns} turns per store after {args.warmup} warm-up; replies of {args.chunks} "
        f"chunks {args.delay * 1000:g} ms apart, the first after {args.first_delay * 1000:g} ms; "
        "server in a subprocess; times in ms"
    )
    rows: list[list[object]] = []
    first_rows: list[list[object]] = []
    misses: list[str] = []
    calls: dict[str, dict[str, list[float]]] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        server_process(args.delay, args.first_delay) as base_url,
    ):
        async with postgres_database("postgres" in wanted) as pg_url:
            variants: list[tuple[str, str, str]] = []
            if "sqlite" in wanted:
                variants.append(("SQLite (synchronous=normal)", "sqlite", f"sqlite:///{tmp}/n.db"))
            if "sqlite-full" in wanted:
                variants.append(
                    (
                        "SQLite (synchronous=full)",
                        "sqlite",
                        f"sqlite:///{tmp}/f.db?synchronous=full",
                    )
                )
            if "postgres" in wanted and pg_url is not None:
                variants.append(("PostgreSQL", "postgres", pg_url))
            for label, kind, url in variants:
                gc.collect()
                try:
                    bare, agent, first_bare, first_agent = await measure(
                        url, base_url, turns=args.turns, chunks=args.chunks, warmup=args.warmup
                    )
                except Exception as exc:  # one broken store does not hide the others' numbers
                    misses.append(f"{label}: failed with {type(exc).__name__}: {exc}")
                    continue
                row, missed = report_row(label, kind, bare, agent)
                rows.append(row)
                misses += missed
                first_row, _ = report_row(label, kind, first_bare, first_agent)
                first_rows.append(first_row[:4])
                calls[label] = await breakdown(url, base_url, turns=30, chunks=args.chunks)

    headers = [
        "store",
        "bare TTFT p50 / p95",
        "agent TTFT p50 / p95",
        "added TTFT p50 / p95",
        "bare turn p50",
        "agent turn p50",
        "added turn",
        "targets",
    ]
    print_table("Steady-state turns (a session with history, 2-round window)", headers, rows)
    print_table(
        "First turn of a new session (also creates the session and saves the system prompt)",
        headers[:4],
        first_rows,
    )
    for label, timings in calls.items():
        turns = len(timings.get("save_api_call", [])) or 1
        table = [
            [
                name,
                f"{len(values) / turns:g}",
                ms(median(values)),
                ms(percentile(values, 95)),
                _on_path(name),
            ]
            for name, values in timings.items()
        ]
        print_table(
            f"Store calls per turn, {label} (awaited time)",
            ["call", "per turn", "p50", "p95", "on the caller's path"],
            table,
        )
    if misses:
        print("\nMissed targets:\n  " + "\n  ".join(misses))
    return 0


def _on_path(name: str) -> str:
    return {
        "load_window": "yes: awaited before the request is sent (adds to TTFT)",
        "save_message": "user msg: awaited at the 1st token if not done; reply insert: no",
        "update_message": "final write: yes (end of turn); flushes: no",
        "save_api_call": "yes: awaited after the last token (end of turn)",
    }.get(name, "first turn only")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
