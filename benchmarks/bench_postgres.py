"""Benchmark the threadline PostgreSQL store against raw asyncpg and other agent stores.

Usage::

    python benchmarks/bench_postgres.py [--url postgresql://postgres@127.0.0.1/test] [--quick]

Workloads (each system does the equivalent operation of its own API):

* **W1** 2,000 durable single appends to one session, one after the other.
* **W2** 10,000 appends to one session in batches of 100.
* **W3** the last 20 messages of a 10,000-message session (10 rounds of the sliding
  window), read 500 times: p50 and p95 latency.
* **W4** 200 sessions x 20 appends (and creating each session), from 16 concurrent tasks.

Systems:

* ``threadline``: ``threadline.connect("postgresql://...")`` and the public ``Store`` API.
* ``raw asyncpg``: an ``asyncpg`` pool with default settings sending the very statements
  the store sends (same SQL, same parameters), without the store around them: the floor
  for the store's overhead.
* ``raw, no reset``: the same, on a pool that skips asyncpg's reset query on release
  (which the store does, since it never changes session state): the statements alone.
* ``openai-agents SQLAlchemySession`` on ``postgresql+asyncpg`` and LangGraph's
  ``AsyncPostgresSaver`` when installed (skipped otherwise). LangGraph keeps a thread's
  messages in a channel stored whole at every checkpoint, so an append is a checkpoint
  holding the whole history so far and a read loads the latest checkpoint.

Every system gets a schema (or database) of its own inside a temporary database that is
dropped at the end. Ratios are threadline / raw asyncpg: throughput ratios >= 0.8 and a
W3 p50 ratio <= 1.5 are the targets.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import asyncpg

import threadline
from threadline import Message, Session
from threadline.ids import new_id

os.environ.setdefault("THREADLINE_LOAD_PLUGINS", "threadline-postgres")

from threadline_postgres import parse_config
from threadline_postgres.sql import Statements

DEFAULT_URL = os.environ.get(
    "THREADLINE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
POOL = 16  # every system gets a pool this large (W4 runs 16 tasks)
USER = new_id()
"""Every benchmark message carries this user id, as the agent runtime's messages do."""


class Sizes:
    """Workload sizes (``--quick`` divides them by 10)."""

    def __init__(self, quick: bool) -> None:
        d = 10 if quick else 1
        self.w1 = 2000 // d
        self.w2 = 10_000 // d
        self.batch = 100
        self.w3_session = 10_000 // d
        self.w3_reads = 500 // d
        self.w3_last = 20
        self.w4_sessions = 200 // d
        self.w4_messages = 20
        self.w4_tasks = 16


def text(i: int) -> str:
    """A message body of typical chat length."""
    return f"message {i}: " + "lorem ipsum dolor sit amet " * 6


async def run_concurrently(tasks: int, jobs: int, job: Callable[[int], Awaitable[None]]) -> None:
    """Run ``job(0..jobs-1)`` on ``tasks`` concurrent workers."""
    queue = iter(range(jobs))

    async def worker() -> None:
        for index in queue:
            await job(index)

    await asyncio.gather(*(worker() for _ in range(tasks)))


class System:
    """One store under test; subclasses do each workload with their own API."""

    name = "?"

    async def open(self, url: str) -> None: ...

    async def close(self) -> None: ...

    async def w1(self, n: int) -> None: ...

    async def w2(self, n: int, batch: int) -> None: ...

    async def w3_prepare(self, n: int) -> None: ...

    async def w3_read(self, last: int) -> int:
        return 0

    async def w4_session(self, index: int, messages: int) -> None: ...


class ThreadlineSystem(System):
    """The threadline PostgreSQL store through the public ``Store`` API."""

    name = "threadline"

    async def open(self, url: str) -> None:
        self.store = await threadline.connect(f"{url}?schema=bench_threadline&max_size={POOL}")
        self.tenant = new_id()

    async def close(self) -> None:
        await self.store.close()

    async def _session(self) -> str:
        return (await self.store.create_session(Session(tenant_id=self.tenant))).id

    async def w1(self, n: int) -> None:
        sid = await self._session()
        for i in range(n):
            await self.store.save_message(
                Message(
                    session_id=sid,
                    tenant_id=self.tenant,
                    user_id=USER,
                    role="user",
                    content=text(i),
                )  # fmt: skip
            )

    async def w2(self, n: int, batch: int) -> None:
        sid = await self._session()
        for start in range(0, n, batch):
            await self.store.save_messages([
                Message(session_id=sid, tenant_id=self.tenant, user_id=USER,
                        role="user" if i % 2 == 0 else "assistant", content=text(i))
                for i in range(start, start + batch)
            ])  # fmt: skip

    async def w3_prepare(self, n: int) -> None:
        self.w3 = await self._session()
        for start in range(0, n, 500):
            await self.store.save_messages([
                Message(session_id=self.w3, tenant_id=self.tenant, user_id=USER,
                        role="user" if i % 2 == 0 else "assistant", content=text(i))
                for i in range(start, min(n, start + 500))
            ])  # fmt: skip

    async def w3_read(self, last: int) -> int:
        return len(await self.store.load_window(self.tenant, self.w3, last // 2))

    async def w4_session(self, index: int, messages: int) -> None:
        sid = await self._session()
        for i in range(messages):
            await self.store.save_message(
                Message(session_id=sid, tenant_id=self.tenant, user_id=USER,
                        role="user" if i % 2 == 0 else "assistant", content=text(i))
            )  # fmt: skip


class RawSystem(System):
    """The store's own statements on a plain asyncpg pool, no models, no dispatch."""

    name = "raw asyncpg"
    schema = "bench_raw"
    reset: Any = None

    async def open(self, url: str) -> None:
        # Create the same tables through the store's migrations, then talk SQL directly.
        setup = await threadline.connect(f"{url}?schema={self.schema}")
        await setup.close()
        self.sql = Statements(parse_config(f"{url}?schema={self.schema}"))
        kwargs: dict[str, Any] = {"min_size": 1, "max_size": POOL}
        if self.reset is not None:
            kwargs["reset"] = self.reset
        self.pool = await asyncpg.create_pool(url, **kwargs)
        self.tenant = new_id()

    async def close(self) -> None:
        await self.pool.close()

    async def _session(self) -> str:
        sid = new_id()
        now = datetime.now(timezone.utc)
        async with self.pool.acquire() as conn:
            await conn.fetchrow(self.sql.create_session, sid, self.tenant, None, None, None,
                                "{}", now, now)  # fmt: skip
        return sid

    async def _append(self, sid: str, role: str, content: str) -> int:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                self.sql.append_one, sid, self.tenant, new_id(), role, content, USER, None,
                None, None, None, "complete", "{}", datetime.now(timezone.utc),
            )  # fmt: skip
        return int(row["seq"])

    async def _batch(self, sid: str, first: int, count: int) -> None:
        now = datetime.now(timezone.utc)
        nones = [None] * count
        async with self.pool.acquire() as conn:
            await conn.fetch(
                self.sql.append_many, sid, self.tenant, count,
                [new_id() for _ in range(count)],
                ["user" if i % 2 == 0 else "assistant" for i in range(first, first + count)],
                [text(i) for i in range(first, first + count)],
                [USER] * count, nones, nones, nones, nones, ["complete"] * count, ["{}"] * count,
                [now] * count,
            )  # fmt: skip

    async def w1(self, n: int) -> None:
        sid = await self._session()
        for i in range(n):
            await self._append(sid, "user", text(i))

    async def w2(self, n: int, batch: int) -> None:
        sid = await self._session()
        for start in range(0, n, batch):
            await self._batch(sid, start, batch)

    async def w3_prepare(self, n: int) -> None:
        self.w3 = await self._session()
        for start in range(0, n, 500):
            await self._batch(self.w3, start, min(500, n - start))

    async def w3_read(self, last: int) -> int:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(self.sql.window, self.w3, self.tenant, last // 2 - 1)
        return len(rows)

    async def w4_session(self, index: int, messages: int) -> None:
        sid = await self._session()
        for i in range(messages):
            await self._append(sid, "user" if i % 2 == 0 else "assistant", text(i))


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's reset query on release, as the store's pool does."""


class RawNoResetSystem(RawSystem):
    """Raw asyncpg on a pool configured like the store's (no reset query on release)."""

    name = "raw, no reset"
    schema = "bench_raw_noreset"
    reset = staticmethod(_no_reset)


class SQLAlchemySessionSystem(System):
    """openai-agents' ``SQLAlchemySession`` on ``postgresql+asyncpg``."""

    name = "agents SQLAlchemySession"

    async def open(self, url: str) -> None:
        from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession
        from sqlalchemy.ext.asyncio import create_async_engine

        self.engine = create_async_engine(
            url.replace("postgresql://", "postgresql+asyncpg://", 1),
            pool_size=POOL, max_overflow=0,
        )  # fmt: skip
        self.cls = SQLAlchemySession
        await self.cls(new_id(), engine=self.engine, create_tables=True).get_items()

    def _session(self) -> Any:
        return self.cls(new_id(), engine=self.engine)

    async def close(self) -> None:
        await self.engine.dispose()

    async def w1(self, n: int) -> None:
        session = self._session()
        for i in range(n):
            await session.add_items([{"role": "user", "content": text(i)}])

    async def w2(self, n: int, batch: int) -> None:
        session = self._session()
        for start in range(0, n, batch):
            await session.add_items([
                {"role": "user" if i % 2 == 0 else "assistant", "content": text(i)}
                for i in range(start, start + batch)
            ])  # fmt: skip

    async def w3_prepare(self, n: int) -> None:
        self.w3 = self._session()
        for start in range(0, n, 500):
            await self.w3.add_items([
                {"role": "user" if i % 2 == 0 else "assistant", "content": text(i)}
                for i in range(start, min(n, start + 500))
            ])  # fmt: skip

    async def w3_read(self, last: int) -> int:
        return len(await self.w3.get_items(limit=last))

    async def w4_session(self, index: int, messages: int) -> None:
        session = self._session()
        for i in range(messages):
            role = "user" if i % 2 == 0 else "assistant"
            await session.add_items([{"role": role, "content": text(i)}])


class LangGraphSystem(System):
    """LangGraph's ``AsyncPostgresSaver``: one checkpoint (whole history) per append."""

    name = "LangGraph PostgresSaver"

    async def open(self, url: str) -> None:
        from langgraph.checkpoint.base import empty_checkpoint
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        self.pool = AsyncConnectionPool(
            url, min_size=1, max_size=POOL, open=False,
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        )  # fmt: skip
        await self.pool.open()
        self.saver = AsyncPostgresSaver(self.pool)  # type: ignore[arg-type]
        await self.saver.setup()
        self.empty = empty_checkpoint
        self.histories: dict[str, list[dict[str, str]]] = {}
        self.configs: dict[str, Any] = {}

    async def close(self) -> None:
        await self.pool.close()

    def _thread(self) -> str:
        thread = new_id()
        self.histories[thread] = []
        self.configs[thread] = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        return thread

    async def _put(self, thread: str, new: list[dict[str, str]]) -> None:
        history = self.histories[thread]
        history.extend(new)
        checkpoint = self.empty()
        version = len(history)
        checkpoint["id"] = str(new_id())
        checkpoint["channel_values"] = {"messages": list(history)}
        checkpoint["channel_versions"] = {"messages": version}
        self.configs[thread] = await self.saver.aput(
            self.configs[thread], checkpoint, {"source": "loop", "step": version},
            {"messages": version},
        )  # fmt: skip

    async def w1(self, n: int) -> None:
        thread = self._thread()
        for i in range(n):
            await self._put(thread, [{"role": "user", "content": text(i)}])

    async def w2(self, n: int, batch: int) -> None:
        thread = self._thread()
        for start in range(0, n, batch):
            await self._put(thread, [
                {"role": "user" if i % 2 == 0 else "assistant", "content": text(i)}
                for i in range(start, start + batch)
            ])  # fmt: skip

    async def w3_prepare(self, n: int) -> None:
        self.w3 = self._thread()
        await self._put(self.w3, [
            {"role": "user" if i % 2 == 0 else "assistant", "content": text(i)}
            for i in range(n)
        ])  # fmt: skip

    async def w3_read(self, last: int) -> int:
        found = await self.saver.aget_tuple(
            {"configurable": {"thread_id": self.w3, "checkpoint_ns": ""}}
        )
        assert found is not None
        return len(found.checkpoint["channel_values"]["messages"][-last:])

    async def w4_session(self, index: int, messages: int) -> None:
        thread = self._thread()
        for i in range(messages):
            role = "user" if i % 2 == 0 else "assistant"
            await self._put(thread, [{"role": role, "content": text(i)}])


async def measure(system: System, sizes: Sizes) -> dict[str, float]:
    """Run W1..W4 on ``system``; throughputs in messages/s, latencies in ms."""
    out: dict[str, float] = {}
    started = time.perf_counter()
    await system.w1(sizes.w1)
    out["W1"] = sizes.w1 / (time.perf_counter() - started)
    started = time.perf_counter()
    await system.w2(sizes.w2, sizes.batch)
    out["W2"] = sizes.w2 / (time.perf_counter() - started)
    await system.w3_prepare(sizes.w3_session)
    for _ in range(20):
        await system.w3_read(sizes.w3_last)
    latencies = []
    for _ in range(sizes.w3_reads):
        started = time.perf_counter()
        got = await system.w3_read(sizes.w3_last)
        latencies.append((time.perf_counter() - started) * 1000)
        assert got == sizes.w3_last, (system.name, got)
    latencies.sort()
    out["W3 p50"] = statistics.median(latencies)
    out["W3 p95"] = latencies[int(len(latencies) * 0.95) - 1]
    total = sizes.w4_sessions * sizes.w4_messages
    started = time.perf_counter()
    await run_concurrently(
        sizes.w4_tasks, sizes.w4_sessions, lambda i: system.w4_session(i, sizes.w4_messages)
    )
    out["W4"] = total / (time.perf_counter() - started)
    return out


def best(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per workload, the best of several runs (highest throughput, lowest latency)."""
    keys = runs[0].keys()
    return {k: (min if k.startswith("W3") else max)(r[k] for r in runs) for k in keys}


def print_table(results: dict[str, dict[str, float] | str], sizes: Sizes) -> None:
    """The results side by side, with threadline / raw ratios."""
    rows = [
        ("W1", f"W1 {sizes.w1:,} single appends", "msg/s"),
        ("W2", f"W2 {sizes.w2:,} in batches of {sizes.batch}", "msg/s"),
        ("W3 p50", f"W3 last {sizes.w3_last} of {sizes.w3_session:,}, p50", "ms"),
        ("W3 p95", f"W3 last {sizes.w3_last} of {sizes.w3_session:,}, p95", "ms"),
        ("W4", f"W4 {sizes.w4_sessions}x{sizes.w4_messages}, {sizes.w4_tasks} tasks", "msg/s"),
    ]
    names = list(results)
    width = max(len(r[1]) for r in rows) + 8
    header = f"{'workload':<{width}}" + "".join(f"{n:>26}" for n in names)
    print(header)
    print("-" * len(header))
    ours = results.get("threadline")
    raw = results.get("raw asyncpg")
    for key, label, unit in rows:
        line = f"{label + ' (' + unit + ')':<{width}}"
        for name in names:
            value = results[name]
            if isinstance(value, str):
                line += f"{value:>26}"
                continue
            number = value[key]
            cell = f"{number:,.2f}" if unit == "ms" else f"{number:,.0f}"
            if isinstance(ours, dict) and name != "threadline":
                ratio = ours[key] / number if number else float("nan")
                cell += f" ({ratio:.2f}x)"
            line += f"{cell:>26}"
        print(line)
    print()
    print("(x) = threadline / that system: above 1 means threadline is faster for msg/s,")
    print("      below 1 means threadline is faster for ms.")
    if isinstance(ours, dict) and isinstance(raw, dict):
        checks = [
            ("W1 >= 0.8x raw", ours["W1"] / raw["W1"] >= 0.8, ours["W1"] / raw["W1"]),
            ("W4 >= 0.8x raw", ours["W4"] / raw["W4"] >= 0.8, ours["W4"] / raw["W4"]),
            ("W3 p50 <= 1.5x raw", ours["W3 p50"] / raw["W3 p50"] <= 1.5,
             ours["W3 p50"] / raw["W3 p50"]),
        ]  # fmt: skip
        print()
        for label, ok, ratio in checks:
            print(f"target {label:<20} {ratio:5.2f}  {'met' if ok else 'NOT MET'}")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="server (any database on it)")
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes")
    parser.add_argument("--repeat", type=int, default=2, help="runs of threadline and raw")
    args = parser.parse_args()
    sizes = Sizes(args.quick)
    admin = await asyncpg.connect(args.url, timeout=5)
    version = await admin.fetchval("SHOW server_version")
    database = f"threadline_bench_{secrets.token_hex(4)}"
    await admin.execute(f'CREATE DATABASE "{database}"')
    base = args.url.split("?", 1)[0].rsplit("/", 1)[0] + "/" + database
    results: dict[str, dict[str, float] | str] = {}
    try:
        core: list[type[System]] = [RawSystem, ThreadlineSystem, RawNoResetSystem]
        runs: dict[str, list[dict[str, float]]] = {cls.name: [] for cls in core}
        for _ in range(max(1, args.repeat)):  # interleaved, so drift hits all alike
            for cls in core:
                system = cls()
                await system.open(base)
                try:
                    runs[cls.name].append(await measure(system, sizes))
                finally:
                    await system.close()
        for name in ("threadline", "raw asyncpg", "raw, no reset"):
            results[name] = best(runs[name])
        for cls in (SQLAlchemySessionSystem, LangGraphSystem):
            other = cls()
            try:
                await other.open(base)
            except ImportError as exc:
                results[cls.name] = f"not installed ({exc.name})"
                continue
            try:
                results[cls.name] = await measure(other, sizes)
            except Exception as exc:  # a third-party failure must not hide our numbers
                results[cls.name] = f"failed: {type(exc).__name__}"
            finally:
                await other.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
    print(
        f"\nthreadline-postgres benchmark: PostgreSQL {version} at "
        f"{parse_config(args.url).display}, pool {POOL}, Python {sys.version.split()[0]}, "
        f"best of {max(1, args.repeat)} for threadline and raw\n"
    )
    print_table(results, sizes)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
