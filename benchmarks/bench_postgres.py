"""Benchmark the threadline PostgreSQL store against the database's own limit (issue #13).

Usage::

    python benchmarks/bench_postgres.py [--url postgresql://postgres@127.0.0.1/test]
                                        [--quick] [--repeat 3] [--others]

Workloads (each system does the equivalent operation of its own API; every message is 400
bytes of distinct pseudo-English, built with its model or parameter tuple before timing):

* **W1** 2,000 durable single appends to one session, one after the other.
* **W2** 10,000 appends to one session in batches of 100.
* **W3** the last 20 messages of a 10,000-message session (10 rounds of the sliding
  window), read 500 times: p50 and p95 latency (the table's figures come from one extra
  pass where the systems' reads alternate call by call).
* **W4** 200 sessions x 20 appends (and creating each session), from 16 concurrent tasks.
* bytes on disk (tables, indexes, TOAST) per stored message.
* a loop-lag probe: the event loop's longest stall during each threadline append and
  window read (p50, p99), what the process's other tasks wait for.

Systems:

* ``limit``: what PostgreSQL itself costs for the same logical work: a minimal table
  ``(session_id text, seq integer, role text, content text)`` with one index on
  ``(session_id, seq)`` through raw asyncpg, one transaction per append, ``executemany``
  in a transaction per batch, ``SELECT role, content ... ORDER BY seq DESC LIMIT 20``.
* ``threadline``: ``threadline.connect("postgresql://...")`` and the public ``Store`` API.
* ``raw asyncpg``: an ``asyncpg`` pool with default settings sending the very statements
  the store sends (same SQL, same parameters), without the store around them: the cost
  of the schema and its SQL without the Python around them.
* ``raw, no reset``: the same, on a pool that skips asyncpg's reset query on release
  (which the store does, since it never changes session state).
* with ``--others``: ``openai-agents`` ``SQLAlchemySession`` on ``postgresql+asyncpg`` and
  LangGraph's ``AsyncPostgresSaver`` when installed (skipped otherwise).

Every system gets a schema of its own per run inside a temporary database dropped at the
end. Runs are interleaved and the table gives medians; ratios are to the limit, and the
goals of issue #13 are checked at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import asyncpg

import threadline
from threadline import Message, Session
from threadline.ids import new_id
from threadline.models import Role

os.environ.setdefault("THREADLINE_LOAD_PLUGINS", "threadline-postgres")

from _common import (
    LoopLag,
    environment,
    median_runs,
    percentile,
    print_table,
    pseudo_english,
    ratio,
    run_concurrently,
)

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
        self.probe = 300 // d


TEXTS: list[str] = []
"""400-byte distinct pseudo-English message bodies, built before any timing."""


def text(i: int) -> str:
    """The ``i``-th message body (distinct within any one session)."""
    return TEXTS[i % len(TEXTS)]


def role(i: int) -> Role:
    return "user" if i % 2 == 0 else "assistant"


Run = Callable[[], Awaitable[None]]
"""A workload's timed part; its inputs (models, parameter tuples) are built beforehand."""


class System:
    """One store under test; each ``w*`` builds its inputs and returns the part to time."""

    name = "?"
    schema = "bench"

    async def open(self, url: str) -> None: ...

    async def close(self) -> None: ...

    async def w1(self, n: int) -> Run:
        raise NotImplementedError

    async def w2(self, n: int, batch: int) -> Run:
        raise NotImplementedError

    async def w3_prepare(self, n: int) -> None: ...

    async def w3_read(self, last: int) -> int:
        return 0

    async def w4(self, sessions: int, messages: int, tasks: int) -> Run:
        raise NotImplementedError

    async def stored_bytes(self) -> float | None:
        """Bytes on disk (tables, indexes, TOAST) per stored message, when known."""
        return None


async def _schema_bytes(pool: asyncpg.Pool, schema: str, count_table: str) -> float:
    """Total relation size of every table of ``schema`` per row of ``count_table``."""
    async with pool.acquire() as conn:
        size = await conn.fetchval(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relkind = 'r'",
            schema,
        )
        rows = await conn.fetchval(f"SELECT count(*) FROM {schema}.{count_table}")
    return float(size) / max(1, int(rows))


class ThreadlineSystem(System):
    """The threadline PostgreSQL store through the public ``Store`` API."""

    name = "threadline"
    schema = "bench_threadline"

    async def open(self, url: str) -> None:
        self.store = await threadline.connect(f"{url}?schema={self.schema}&max_size={POOL}")
        self.tenant = new_id()
        self.url = url

    async def close(self) -> None:
        await self.store.close()

    async def _session(self) -> str:
        return (await self.store.create_session(Session(tenant_id=self.tenant))).id

    def _messages(self, sid: str, start: int, stop: int) -> list[Message]:
        return [
            Message(session_id=sid, tenant_id=self.tenant, user_id=USER, role=role(i),
                    content=text(i))
            for i in range(start, stop)
        ]  # fmt: skip

    async def w1(self, n: int) -> Run:
        sid = await self._session()
        messages = self._messages(sid, 0, n)

        async def run() -> None:
            for message in messages:
                await self.store.save_message(message)

        return run

    async def w2(self, n: int, batch: int) -> Run:
        sid = await self._session()
        batches = [self._messages(sid, s, s + batch) for s in range(0, n, batch)]

        async def run() -> None:
            for chunk in batches:
                await self.store.save_messages(chunk)

        return run

    async def w3_prepare(self, n: int) -> None:
        self.w3 = await self._session()
        for start in range(0, n, 500):
            await self.store.save_messages(self._messages(self.w3, start, min(n, start + 500)))

    async def w3_read(self, last: int) -> int:
        return len(await self.store.load_window(self.tenant, self.w3, last // 2))

    async def w4(self, sessions: int, messages: int, tasks: int) -> Run:
        planned = [new_id() for _ in range(sessions)]
        work = [self._messages(sid, 0, messages) for sid in planned]

        async def one(index: int) -> None:
            await self.store.create_session(Session(id=planned[index], tenant_id=self.tenant))
            for message in work[index]:
                await self.store.save_message(message)

        return lambda: run_concurrently(tasks, sessions, one)

    async def stored_bytes(self) -> float | None:
        pool = await asyncpg.create_pool(self.url, min_size=1, max_size=1)
        try:
            return await _schema_bytes(pool, self.schema, "entity_message")
        finally:
            await pool.close()


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

    async def _session(self, sid: str | None = None) -> str:
        sid = sid or new_id()
        now = datetime.now(timezone.utc)
        async with self.pool.acquire() as conn:
            await conn.fetchrow(self.sql.create_session, sid, self.tenant, None, None, None,
                                "{}", now, now)  # fmt: skip
        return sid

    def _one(self, sid: str, i: int) -> tuple[Any, ...]:
        return (sid, self.tenant, new_id(), role(i), text(i), USER, None, None, None, None,
                "complete", "{}", datetime.now(timezone.utc))  # fmt: skip

    def _many(self, sid: str, first: int, count: int) -> tuple[Any, ...]:
        now, nones = datetime.now(timezone.utc), [None] * count
        span = range(first, first + count)
        return (sid, self.tenant, count, [new_id() for _ in span], [role(i) for i in span],
                [text(i) for i in span], [USER] * count, nones, nones, nones, nones,
                ["complete"] * count, ["{}"] * count, [now] * count)  # fmt: skip

    async def _append(self, args: tuple[Any, ...]) -> None:
        async with self.pool.acquire() as conn:
            await conn.fetchrow(self.sql.append_one, *args)

    async def w1(self, n: int) -> Run:
        sid = await self._session()
        rows = [self._one(sid, i) for i in range(n)]

        async def run() -> None:
            for args in rows:
                await self._append(args)

        return run

    async def w2(self, n: int, batch: int) -> Run:
        sid = await self._session()
        batches = [self._many(sid, s, batch) for s in range(0, n, batch)]

        async def run() -> None:
            for args in batches:
                async with self.pool.acquire() as conn:
                    await conn.fetch(self.sql.append_many, *args)

        return run

    async def w3_prepare(self, n: int) -> None:
        self.w3 = await self._session()
        for start in range(0, n, 500):
            async with self.pool.acquire() as conn:
                await conn.fetch(
                    self.sql.append_many, *self._many(self.w3, start, min(500, n - start))
                )

    async def w3_read(self, last: int) -> int:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(self.sql.window, self.w3, self.tenant, last // 2 - 1)
        return len(rows)

    async def w4(self, sessions: int, messages: int, tasks: int) -> Run:
        planned = [new_id() for _ in range(sessions)]
        work = [[self._one(sid, i) for i in range(messages)] for sid in planned]

        async def one(index: int) -> None:
            await self._session(planned[index])
            for args in work[index]:
                await self._append(args)

        return lambda: run_concurrently(tasks, sessions, one)

    async def stored_bytes(self) -> float | None:
        return await _schema_bytes(self.pool, self.schema, "entity_message")


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's reset query on release, as the store's pool does."""


class RawNoResetSystem(RawSystem):
    """Raw asyncpg on a pool configured like the store's (no reset query on release)."""

    name = "raw, no reset"
    schema = "bench_raw_noreset"
    reset = staticmethod(_no_reset)


class LimitSystem(System):
    """Issue #13's limit: what PostgreSQL costs for the same logical work on a minimal
    table ``(session_id, seq, role, content)`` with one index, through raw asyncpg."""

    name = "limit"
    schema = "bench_limit"

    async def open(self, url: str) -> None:
        self.pool = await asyncpg.create_pool(url, min_size=1, max_size=POOL, reset=_no_reset)
        async with self.pool.acquire() as conn:
            await conn.execute(f"""
                CREATE SCHEMA IF NOT EXISTS {self.schema};
                CREATE TABLE IF NOT EXISTS {self.schema}.message
                    (session_id text, seq integer, role text, content text);
                CREATE INDEX IF NOT EXISTS message_session_seq
                    ON {self.schema}.message (session_id, seq)""")
        self.insert = (
            f"INSERT INTO {self.schema}.message (session_id, seq, role, content) "
            "VALUES ($1, $2, $3, $4)"
        )
        self.window = (
            f"SELECT role, content FROM {self.schema}.message WHERE session_id = $1 "
            "ORDER BY seq DESC LIMIT 20"
        )

    async def close(self) -> None:
        await self.pool.close()

    @staticmethod
    def _rows(sid: str, start: int, stop: int) -> list[tuple[str, int, str, str]]:
        return [(sid, i + 1, role(i), text(i)) for i in range(start, stop)]

    async def _append(self, row: tuple[str, int, str, str]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(self.insert, *row)

    async def w1(self, n: int) -> Run:
        rows = self._rows(new_id(), 0, n)

        async def run() -> None:
            for row in rows:
                await self._append(row)

        return run

    async def _batch(self, rows: list[tuple[str, int, str, str]]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.executemany(self.insert, rows)

    async def w2(self, n: int, batch: int) -> Run:
        sid = new_id()
        batches = [self._rows(sid, s, s + batch) for s in range(0, n, batch)]

        async def run() -> None:
            for rows in batches:
                await self._batch(rows)

        return run

    async def w3_prepare(self, n: int) -> None:
        self.w3 = new_id()
        for start in range(0, n, 500):
            await self._batch(self._rows(self.w3, start, min(n, start + 500)))

    async def w3_read(self, last: int) -> int:
        async with self.pool.acquire() as conn:
            return len(await conn.fetch(self.window, self.w3))

    async def w4(self, sessions: int, messages: int, tasks: int) -> Run:
        work = [self._rows(new_id(), 0, messages) for _ in range(sessions)]

        async def one(index: int) -> None:
            for row in work[index]:
                await self._append(row)

        return lambda: run_concurrently(tasks, sessions, one)

    async def stored_bytes(self) -> float | None:
        return await _schema_bytes(self.pool, self.schema, "message")


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

    @staticmethod
    def _items(start: int, stop: int) -> list[Any]:
        return [{"role": role(i), "content": text(i)} for i in range(start, stop)]

    async def w1(self, n: int) -> Run:
        session, items = self._session(), self._items(0, n)

        async def run() -> None:
            for item in items:
                await session.add_items([item])

        return run

    async def w2(self, n: int, batch: int) -> Run:
        session = self._session()
        batches = [self._items(s, s + batch) for s in range(0, n, batch)]

        async def run() -> None:
            for items in batches:
                await session.add_items(items)

        return run

    async def w3_prepare(self, n: int) -> None:
        self.w3 = self._session()
        for start in range(0, n, 500):
            await self.w3.add_items(self._items(start, min(n, start + 500)))

    async def w3_read(self, last: int) -> int:
        return len(await self.w3.get_items(limit=last))

    async def w4(self, sessions: int, messages: int, tasks: int) -> Run:
        work = [(self._session(), self._items(0, messages)) for _ in range(sessions)]

        async def one(index: int) -> None:
            session, items = work[index]
            for item in items:
                await session.add_items([item])

        return lambda: run_concurrently(tasks, sessions, one)


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

    @staticmethod
    def _items(start: int, stop: int) -> list[dict[str, str]]:
        return [{"role": role(i), "content": text(i)} for i in range(start, stop)]

    async def w1(self, n: int) -> Run:
        thread, items = self._thread(), self._items(0, n)

        async def run() -> None:
            for item in items:
                await self._put(thread, [item])

        return run

    async def w2(self, n: int, batch: int) -> Run:
        thread = self._thread()
        batches = [self._items(s, s + batch) for s in range(0, n, batch)]

        async def run() -> None:
            for items in batches:
                await self._put(thread, items)

        return run

    async def w3_prepare(self, n: int) -> None:
        self.w3 = self._thread()
        await self._put(self.w3, self._items(0, n))

    async def w3_read(self, last: int) -> int:
        found = await self.saver.aget_tuple(
            {"configurable": {"thread_id": self.w3, "checkpoint_ns": ""}}
        )
        assert found is not None
        return len(found.checkpoint["channel_values"]["messages"][-last:])

    async def w4(self, sessions: int, messages: int, tasks: int) -> Run:
        work = [(self._thread(), self._items(0, messages)) for _ in range(sessions)]

        async def one(index: int) -> None:
            thread, items = work[index]
            for item in items:
                await self._put(thread, [item])

        return lambda: run_concurrently(tasks, sessions, one)


def _process_cpu(pid: int) -> int | None:
    """User and system clock ticks of process ``pid`` so far (``None``: cannot be read)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])


class ServerCPU:
    """CPU time of the server processes serving the benchmark's database (from
    ``/proc/<pid>/stat``; only when PostgreSQL runs on this machine): what the server spends
    on the same work, beside the client's own CPU. ``None`` when it cannot be read."""

    TICK = 1 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01

    def __init__(self, url: str) -> None:
        self.url = url
        self.start: dict[int, float] | None = None

    async def _ticks(self) -> dict[int, float] | None:
        try:
            conn = await asyncpg.connect(self.url, timeout=5)
        except Exception:
            return None
        try:
            pids = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
        finally:
            await conn.close()
        found: dict[int, float] = {}
        for row in pids:
            spent = _process_cpu(row["pid"])
            if spent is None:
                return None  # not on this machine, or not ours to read
            found[row["pid"]] = spent * self.TICK
        return found

    async def begin(self) -> None:
        self.start = await self._ticks()

    async def seconds(self) -> float | None:
        """Server CPU seconds since :meth:`begin` (backends that ended meanwhile not counted)."""
        end = await self._ticks()
        if self.start is None or end is None:
            return None
        return sum(t - self.start.get(pid, 0.0) for pid, t in end.items())


async def timed(run: Run, count: int, server: ServerCPU | None = None) -> dict[str, float]:
    """``count`` messages over the seconds ``run`` takes (``rate``), and the CPU time per
    message in µs of this process (``cpu``: Python, asyncpg, the socket calls) and of the
    server's processes (``server``, when known). CPU times are what a loaded machine blurs
    less than rates: they say where a workload's time goes."""
    if server is not None:
        await server.begin()
    started, cpu = time.perf_counter(), time.process_time()
    await run()
    out = {
        "rate": count / (time.perf_counter() - started),
        "cpu": (time.process_time() - cpu) / count * 1e6,
    }
    spent = await server.seconds() if server is not None else None
    if spent is not None:
        out["server"] = spent / count * 1e6
    return out


async def measure(system: System, sizes: Sizes, url: str) -> dict[str, float]:
    """Run W1..W4 on ``system``; throughputs in messages/s, latencies in ms, CPU times in µs
    per message (``W1 cpu``, ``W1 server``, ...)."""
    out: dict[str, float] = {}
    server = ServerCPU(url)

    def keep(workload: str, found: dict[str, float]) -> None:
        out[workload] = found["rate"]
        out[f"{workload} cpu"] = found["cpu"]
        if "server" in found:
            out[f"{workload} server"] = found["server"]

    keep("W1", await timed(await system.w1(sizes.w1), sizes.w1, server))
    keep("W2", await timed(await system.w2(sizes.w2, sizes.batch), sizes.w2, server))
    await system.w3_prepare(sizes.w3_session)
    for _ in range(20):
        await system.w3_read(sizes.w3_last)
    latencies = []
    cpu = time.process_time()
    for _ in range(sizes.w3_reads):
        started = time.perf_counter()
        got = await system.w3_read(sizes.w3_last)
        latencies.append((time.perf_counter() - started) * 1000)
        assert got == sizes.w3_last, (system.name, got)
    out["W3 cpu"] = (time.process_time() - cpu) / sizes.w3_reads * 1e6
    out["W3 p50"] = percentile(latencies, 50)
    out["W3 p95"] = percentile(latencies, 95)
    w4 = await system.w4(sizes.w4_sessions, sizes.w4_messages, sizes.w4_tasks)
    keep("W4", await timed(w4, sizes.w4_sessions * sizes.w4_messages, server))
    stored = await system.stored_bytes()
    if stored is not None:
        out["bytes/msg"] = stored
    return out


async def interleaved_windows(
    url: str, sizes: Sizes, kinds: list[type[System]]
) -> dict[str, list[float]]:
    """W3 latencies (ms) of every system, their reads alternating call by call: on a noisy
    machine a slow spell then hits all alike, which the sequential runs cannot promise."""
    systems = [kind() for kind in kinds]
    for system in systems:
        system.schema = f"{system.schema}_w3"
        await system.open(url)
        await system.w3_prepare(sizes.w3_session)
    try:
        found: dict[str, list[float]] = {system.name: [] for system in systems}
        for round_ in range(sizes.w3_reads + 20):
            for system in systems:
                started = time.perf_counter()
                await system.w3_read(sizes.w3_last)
                if round_ >= 20:  # the first rounds warm caches and statement caches
                    found[system.name].append((time.perf_counter() - started) * 1000)
        return found
    finally:
        for system in systems:
            await system.close()


async def loop_stalls(url: str, sizes: Sizes) -> dict[str, float]:
    """The event loop's longest stall per store call (ms, p50 and p99), appends and window
    reads on a session of ``w3_session`` messages: what other tasks of the process wait."""
    system = ThreadlineSystem()
    system.schema = "bench_threadline_probe"
    await system.open(url)
    try:
        await system.w3_prepare(sizes.w3_session)
        messages = system._messages(system.w3, sizes.w3_session, sizes.w3_session + sizes.probe)
        stalls: dict[str, list[float]] = {"append": [], "window": []}
        async with LoopLag() as lag:
            for message in messages:
                lag.worst()
                await system.store.save_message(message)
                stalls["append"].append(lag.worst() * 1000)
                await system.w3_read(sizes.w3_last)
                stalls["window"].append(lag.worst() * 1000)
    finally:
        await system.close()
    out = {}
    for call, found in stalls.items():
        out[f"{call} p50"] = percentile(found, 50)
        out[f"{call} p99"] = percentile(found, 99)
    return out


GOALS = {"W1": 0.85, "W2": 0.7, "W4": 0.95}
"""Issue #13: threadline's rate over the limit's, at least."""
W3_GOAL = 1.3  # threadline W3 p50 / limit's, at most
BYTES_GOAL = 1.3  # threadline bytes per message / limit's, at most


def report(
    results: dict[str, dict[str, float] | str], sizes: Sizes, runs: int
) -> dict[str, dict[str, float | str]]:
    """The results side by side with ratios to the limit, then the goals of issue #13
    (returned as rows: limit, store, ratio, goal)."""
    labels = {
        "W1": f"W1 {sizes.w1:,} single appends (msg/s)",
        "W2": f"W2 {sizes.w2:,} in batches of {sizes.batch} (msg/s)",
        "W3 p50": f"W3 last {sizes.w3_last} of {sizes.w3_session:,}, p50 (ms)",
        "W3 p95": f"W3 last {sizes.w3_last} of {sizes.w3_session:,}, p95 (ms)",
        "W4": f"W4 {sizes.w4_sessions}x{sizes.w4_messages}, {sizes.w4_tasks} tasks (msg/s)",
        "bytes/msg": "bytes per stored message",
        "W1 cpu": "W1 client CPU per message (µs)",
        "W1 server": "W1 server CPU per message (µs)",
        "W2 cpu": "W2 client CPU per message (µs)",
        "W2 server": "W2 server CPU per message (µs)",
        "W3 cpu": "W3 client CPU per window read (µs)",
        "W4 cpu": "W4 client CPU per message (µs)",
        "W4 server": "W4 server CPU per message (µs)",
    }
    limit = results.get("limit")
    rows = []
    for key, label in labels.items():
        row: list[object] = [label]
        for value in results.values():
            if isinstance(value, str):
                row.append(value)
            elif key not in value:
                row.append("-")
            else:
                number = value[key]
                cell = (
                    f"{number:,.3f}" if key.startswith("W3") and not key.endswith("cpu")
                    else f"{number:,.1f}" if key.endswith(("cpu", "server"))
                    else f"{number:,.0f}"
                )  # fmt: skip
                if isinstance(limit, dict) and value is not limit:
                    cell += f" ({ratio(number, limit.get(key))})"
                row.append(cell)
        rows.append(row)
    print_table(
        f"Median of {runs} runs (W3: one pass, reads alternating call by call); "
        "(x) = that system / the limit",
        ["workload", *results],
        rows,
    )
    ours = results.get("threadline")
    if not (isinstance(ours, dict) and isinstance(limit, dict)):
        return {}
    goals = []
    for key, goal in GOALS.items():
        goals.append((f"{key} >= {goal}x the limit", ours[key] / limit[key], goal, True))
    for key, goal in (("W3 p50", W3_GOAL), ("bytes/msg", BYTES_GOAL)):
        goals.append((f"{key} <= {goal}x the limit", ours[key] / limit[key], goal, False))
    print_table("Goals (issue #13)", ["goal", "measured", "status"],
                [(g, f"{r:.2f}x", "met" if (r >= x if up else r <= x) else "NOT MET")
                 for g, r, x, up in goals])  # fmt: skip
    keys = [*GOALS, "W3 p50", "bytes/msg"]
    return {
        key: {"limit": limit[key], "store": ours[key], "ratio": r,
              "goal": f"{'>=' if up else '<='} {x}"}
        for key, (_, r, x, up) in zip(keys, goals)
    }  # fmt: skip


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="server (any database on it)")
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes")
    parser.add_argument("--repeat", type=int, default=3, help="runs of threadline, raw, limit")
    parser.add_argument("--others", action="store_true", help="also SQLAlchemySession, LangGraph")
    parser.add_argument("--json", help="also write the goal rows (limit, store, ratio) here")
    args = parser.parse_args()
    sizes = Sizes(args.quick)
    TEXTS.extend(pseudo_english(max(sizes.w2, sizes.w3_session) + sizes.probe))
    admin = await asyncpg.connect(args.url, timeout=5)
    version = await admin.fetchval("SHOW server_version")
    database = f"threadline_bench_{secrets.token_hex(4)}"
    await admin.execute(f'CREATE DATABASE "{database}"')
    base = args.url.split("?", 1)[0].rsplit("/", 1)[0] + "/" + database
    results: dict[str, dict[str, float] | str] = {}
    try:
        core: list[type[System]] = [LimitSystem, RawSystem, ThreadlineSystem, RawNoResetSystem]
        runs: dict[str, list[dict[str, float]]] = {cls.name: [] for cls in core}
        for attempt in range(max(1, args.repeat)):  # interleaved, so drift hits all alike
            for cls in core:
                system = cls()
                system.schema = f"{system.schema}_{attempt}"
                await system.open(base)
                try:
                    runs[cls.name].append(await measure(system, sizes, base))
                finally:
                    await system.close()
        for name, found in runs.items():
            results[name] = median_runs(found)
        for name, reads in (await interleaved_windows(base, sizes, core)).items():
            figures = results[name]
            assert isinstance(figures, dict)
            figures["W3 p50"], figures["W3 p95"] = percentile(reads, 50), percentile(reads, 95)
        for other_cls in (SQLAlchemySessionSystem, LangGraphSystem) if args.others else ():
            other = other_cls()
            try:
                await other.open(base)
            except ImportError as exc:
                results[other_cls.name] = f"not installed ({exc.name})"
                continue
            try:
                results[other_cls.name] = await measure(other, sizes, base)
            except Exception as exc:  # a third-party failure must not hide our numbers
                results[other_cls.name] = f"failed: {type(exc).__name__}"
            finally:
                await other.close()
        stalls = await loop_stalls(base, sizes)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
    print(
        f"\nthreadline-postgres benchmark: PostgreSQL {version} at "
        f"{parse_config(args.url).display}, pool {POOL}; {environment()}"
    )
    figures = report(results, sizes, max(1, args.repeat))
    if args.json:
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(figures, indent=1))
    print_table(
        f"Event-loop stall per threadline call (ms), {sizes.probe} appends and window reads "
        f"on a {sizes.w3_session:,}-message session",
        ["call", "p50", "p99"],
        [
            (c, f"{stalls[c + ' p50']:.3f}", f"{stalls[c + ' p99']:.3f}")
            for c in ("append", "window")
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
