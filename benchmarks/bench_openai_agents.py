#!/usr/bin/env python
"""OpenAI Agents SDK sessions: ``ThreadlineSession`` against the SDK's own stores.

    python benchmarks/bench_openai_agents.py            # SQLite, and PostgreSQL if reachable
    python benchmarks/bench_openai_agents.py --quick    # fewer operations
    python benchmarks/bench_openai_agents.py --first-reads   # first reads only, CPU too

Workloads, the calls a ``Runner`` makes (items are the SDK's own dicts: a user message
of ~400 characters, an assistant message, a function call and its output, built before
timing; every system starts from an empty database):

* **append 1**: ``add_items([item])`` 1,000 times (a durable transaction each);
* **append turn**: ``add_items`` of a 4-item turn (message, call, output, reply), 250 times;
* **last 20**: ``get_items(limit=20)`` on a 10,000-item session, p50/p95 over 500 reads
  (what a Runner with ``SessionSettings(limit=20)`` reads before each turn);
* **all of 200** / **all of 2,000**: ``get_items()`` of a 200- and a 2,000-item session,
  p50 (a Runner's default read);
* **200, first read**: ``get_items()`` of the 200-item session with nothing kept (what the
  first read of a process costs). ``ThreadlineSession`` keeps the items it read (shared by
  the session objects of one ``Store``) and later reads only fetch from the newest kept
  message on, so "all of" measures that; the SDK's sessions read everything every time,
  so for them this is their "all of 200" again.

Rows:

* **limit (sqlite3)** / **limit (asyncpg)**: what the database itself costs for the same
  logical work, the reference of every ratio: a minimal table ``(session_id, id, data)``
  with one index on ``(session_id, id)``, ``json.dumps`` per item, one transaction per
  call, ``SELECT data ... ORDER BY id DESC LIMIT 20`` and ``json.loads``; run inline (no
  worker thread) at ``synchronous=normal`` in WAL mode;
* **agents SQLiteSession**: the SDK's SQLite session on a file (WAL, ``synchronous=full``,
  the SDK has no setting for it);
* **agents SQLAlchemySession**: on ``sqlite+aiosqlite`` / ``postgresql+asyncpg`` (when
  ``sqlalchemy`` and the driver are installed);
* **ThreadlineSession**: on ``sqlite:///`` at the store's default ``synchronous=normal``
  and at ``synchronous=full`` (the SDK's durability), and on ``postgresql://``.

Each system runs alone, in turn, three times over; each figure is the median of its three
rounds (a shared machine's load comes and goes). Ratios are system / the database's limit. Goal:
ThreadlineSession at least as fast as SQLiteSession on every workload (the last column,
the worst of its time ratios to SQLiteSession, <= 1.00x).

``--first-reads`` measures only the first read of a process (``get_items()`` with nothing
kept) of 200 and 2,000 items, each system a block of reads in each round (after a
``gc.collect()``: the cyclic GC's collections that a system's allocations cause fall in its
own block; read by read, a heavy system's debt landed in the next one's reads), the rounds
interleaving the systems, wall p50 and the process's CPU per read (all its threads), median
of three rounds: ``SQLiteSession``; ``ThreadlineSession`` on SQLite (the store's
``read_message_rows``: no ``Message`` built) and, beside it, the read it replaced
(``get_messages``, the items built from the messages, a ``marshal`` copy) on the same
store; and on PostgreSQL when reachable (the server's CPU not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import marshal
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("THREADLINE_LOAD_PLUGINS", "threadline-sqlite,threadline-postgres")
os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")

from _common import environment, percentile, print_table, us
from agents import SQLiteSession

import threadline
from threadline.ids import new_id
from threadline_openai_agents import ThreadlineSession
from threadline_openai_agents import session as kept
from threadline_openai_agents.items import items_from_messages

PG_URL = os.environ.get("THREADLINE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

Item = dict[str, Any]


def turn(i: int) -> list[Item]:
    """One turn of a tool-using conversation as the SDK stores it."""
    words = " ".join(f"word{(i * 7 + k) % 997}" for k in range(50))
    return [
        {"content": f"question {i}: {words}", "role": "user"},
        {
            "arguments": json.dumps({"city": f"city {i}"}),
            "call_id": f"call_{i}",
            "name": "get_weather",
            "type": "function_call",
            "id": f"fc_{i}",
            "status": "completed",
        },
        {"call_id": f"call_{i}", "output": f"sunny, {i % 30}C", "type": "function_call_output"},
        {
            "id": f"msg_{i}",
            "content": [{"annotations": [], "text": f"answer {i}: {words}", "type": "output_text"}],
            "role": "assistant",
            "status": "completed",
            "type": "message",
        },
    ]


def items(n: int) -> list[Item]:
    out: list[Item] = []
    i = 0
    while len(out) < n:
        out.extend(turn(i))
        i += 1
    return out[:n]


# -- the systems --------------------------------------------------------------------------------


class Minimal:
    """The database's own cost: a minimal table, inline ``sqlite3`` calls."""

    name = "limit (sqlite3)"

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, data TEXT)"
        )
        self.db.execute("CREATE INDEX items_session ON items (session_id, id)")
        self.sid = new_id()

    async def add_items(self, batch: list[Item]) -> None:
        rows = [(self.sid, json.dumps(item)) for item in batch]
        self.db.execute("BEGIN")
        self.db.executemany("INSERT INTO items (session_id, data) VALUES (?, ?)", rows)
        self.db.execute("COMMIT")

    async def get_items(self, limit: int | None = None) -> list[Item]:
        if limit is None:
            sql, args = "SELECT data FROM items WHERE session_id = ? ORDER BY id", (self.sid,)
        else:
            sql = "SELECT data FROM items WHERE session_id = ? ORDER BY id DESC LIMIT ?"
            args = (self.sid, limit)  # type: ignore[assignment]
        rows = self.db.execute(sql, args).fetchall()
        if limit is not None:
            rows.reverse()
        return [json.loads(data) for (data,) in rows]

    async def close(self) -> None:
        self.db.close()


class MinimalPostgres:
    """The database's own cost on PostgreSQL: a minimal table, one asyncpg connection."""

    name = "limit (asyncpg)"

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.sid = new_id()

    @classmethod
    async def open(cls, url: str, schema: str) -> MinimalPostgres:
        import asyncpg

        conn = await asyncpg.connect(url)
        await conn.execute(f'CREATE SCHEMA "{schema}"; SET search_path TO "{schema}"')
        await conn.execute(
            "CREATE TABLE items (id bigserial PRIMARY KEY, session_id uuid NOT NULL, data text);"
            "CREATE INDEX items_session ON items (session_id, id)"
        )
        return cls(conn)

    async def add_items(self, batch: list[Item]) -> None:
        rows = [(self.sid, json.dumps(item)) for item in batch]
        async with self.conn.transaction():
            await self.conn.executemany(
                "INSERT INTO items (session_id, data) VALUES ($1, $2)", rows
            )

    async def get_items(self, limit: int | None = None) -> list[Item]:
        if limit is None:
            rows = await self.conn.fetch(
                "SELECT data FROM items WHERE session_id = $1 ORDER BY id", self.sid
            )
        else:
            rows = await self.conn.fetch(
                "SELECT data FROM items WHERE session_id = $1 ORDER BY id DESC LIMIT $2",
                self.sid,
                limit,
            )
            rows.reverse()
        return [json.loads(r[0]) for r in rows]

    async def close(self) -> None:
        await self.conn.close()


class Wrapped:
    """A session object (SDK or ours) and what closes it."""

    def __init__(self, name: str, session: Any, closer: Callable[[], Awaitable[None]]) -> None:
        self.name = name
        self.session = session
        self.closer = closer

    async def add_items(self, batch: list[Item]) -> None:
        await self.session.add_items(batch)

    async def get_items(self, limit: int | None = None) -> list[Item]:
        result: list[Item] = await self.session.get_items(limit)
        return result

    async def first_read(self) -> list[Item]:
        """``get_items()`` with nothing kept (ours keeps what it read; the SDK's sessions
        keep nothing, so for them it is the same read)."""
        if isinstance(self.session, ThreadlineSession):
            store = await self.session.get_store()
            kept._TAILS.clear()
            fresh = ThreadlineSession(self.session.session_id, store)
            result: list[Item] = await fresh.get_items()
            return result
        return await self.get_items()

    async def close(self) -> None:
        await self.closer()


async def _nothing() -> None:
    return None


def sdk_sqlite(path: Path) -> Wrapped:
    session = SQLiteSession(new_id(), path)

    async def close() -> None:
        session.close()

    return Wrapped("agents SQLiteSession", session, close)


async def sdk_sqlalchemy(url: str) -> Wrapped | None:
    try:
        from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession
        from sqlalchemy.ext.asyncio import create_async_engine
    except ImportError:
        return None
    try:
        engine = create_async_engine(url)
        session = SQLAlchemySession(new_id(), engine=engine, create_tables=True)
        await session.get_items()
    except ImportError:  # the async driver is missing
        return None
    return Wrapped("agents SQLAlchemySession", session, engine.dispose)


async def ours(name: str, url: str) -> Wrapped:
    store = await threadline.connect(url)
    return Wrapped(name, ThreadlineSession(new_id(), store), store.close)


# -- the workloads ------------------------------------------------------------------------------
# Each system runs alone (the others closed: an idle driver thread such as aiosqlite's
# still competes for the GIL), and the whole round of systems is repeated ROUNDS times;
# each system's best round counts, so load on the machine that comes and goes during the
# run does not decide which system looks faster.

Maker = Callable[[str], Awaitable[Any | None]]
ROUNDS = 3


async def append(system: Any, batches: list[list[Item]]) -> float:
    """Items per second appended, one ``add_items`` per batch."""
    began = time.perf_counter()
    for batch in batches:
        await system.add_items(batch)
    return sum(map(len, batches)) / (time.perf_counter() - began)


async def reads(system: Any, limit: int | None, count: int, first: bool = False) -> list[float]:
    """Seconds of each of ``count`` reads (after a few warm-up reads); ``first``: each by a
    new session object."""
    read = getattr(system, "first_read", None) if first else None
    read = read or (lambda: system.get_items(limit))
    for _ in range(5):
        await read()
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        await read()
        samples.append(time.perf_counter() - began)
    return samples


async def fill(system: Any, data: list[Item], batch: int = 500) -> None:
    for start in range(0, len(data), batch):
        await system.add_items(data[start : start + batch])


async def one_round(make: Maker, sizes: dict[str, int]) -> dict[str, float] | None:
    """Every workload once, each on a fresh system from ``make``."""
    out: dict[str, float] = {}
    one = [[item] for item in items(sizes["append1"])]
    turns = [turn(i) for i in range(sizes["turns"])]
    for workload, batches in (("append 1", one), ("append turn", turns)):
        system = await make(workload)
        if system is None:
            return None
        try:
            out[workload] = await append(system, batches)
        finally:
            await system.close()
    for workloads, size, limit, count in (
        (("last 20",), sizes["long"], 20, sizes["reads"]),
        (("all of 200", "200, first read"), 200, None, sizes["reads"] // 5),
        (("all of 2,000",), 2000, None, sizes["reads"] // 10),
    ):
        system = await make(workloads[0])
        try:
            await fill(system, items(size))
            assert await system.get_items(limit) == items(size)[-(limit or size) :]
            for workload in workloads:
                samples = await reads(system, limit, count, first="first read" in workload)
                out[workload] = percentile(samples, 50)
                out[workload + " p95"] = percentile(samples, 95)
        finally:
            await system.close()
    return out


async def measure(makers: dict[str, Maker], sizes: dict[str, int]) -> dict[str, dict[str, float]]:
    """Each system's median of ``ROUNDS`` rounds (the systems interleaved round by round)."""
    rounds: dict[str, list[dict[str, float]]] = {}
    for _ in range(ROUNDS):
        for name, make in makers.items():
            got = await one_round(make, sizes)
            if got is not None:
                rounds.setdefault(name, []).append(got)
    for name in makers:
        if name not in rounds:
            print(f"{name}: not installed, skipped")
    return {
        name: {key: statistics.median(r[key] for r in got) for key in got[0]}
        for name, got in rounds.items()
    }


def report(title: str, results: dict[str, dict[str, float]], baseline: str) -> None:
    reference = next(iter(results.values()))
    rows = []
    for name, r in results.items():
        rows.append([
            name,
            f"{r['append 1']:,.0f}",
            f"{r['append turn']:,.0f}",
            us(r["last 20"]),
            us(r["last 20 p95"]),
            us(r["all of 200"]),
            us(r["all of 2,000"]),
            us(r["200, first read"]),
            f"{reference['append 1'] / r['append 1']:.2f}x",
            f"{r['last 20'] / reference['last 20']:.2f}x",
            _versus(r, results.get(baseline)),
        ])  # fmt: skip
    print_table(
        title,
        ["system", "append 1 (items/s)", "append turn (items/s)", "last 20 p50 (us)",
         "last 20 p95 (us)", "all of 200 p50 (us)", "all of 2,000 p50 (us)",
         "200 first read p50 (us)", "append 1 time vs limit",
         "last 20 vs limit", f"time vs {baseline} (worst workload)"],
        rows,
    )  # fmt: skip


def _versus(r: dict[str, float], base: dict[str, float] | None) -> str:
    """The worst of this system's time ratios to ``base`` over the workloads."""
    if base is None:
        return "-"
    worst = max(
        base["append 1"] / r["append 1"],
        base["append turn"] / r["append turn"],
        r["last 20"] / base["last 20"],
        r["all of 200"] / base["all of 200"],
        r["all of 2,000"] / base["all of 2,000"],
        r["200, first read"] / base["200, first read"],
    )
    return f"{worst:.2f}x"


async def sqlite_suite(folder: Path, sizes: dict[str, int]) -> dict[str, dict[str, float]]:
    def path(name: str) -> Path:
        return folder / f"{name.replace(' ', '-')}-{secrets.token_hex(3)}.db"

    async def minimal(w: str) -> Any:
        return Minimal(path(w))

    async def agents_sqlite(w: str) -> Any:
        return sdk_sqlite(path(w))

    async def agents_sqlalchemy(w: str) -> Any:
        return await sdk_sqlalchemy(f"sqlite+aiosqlite:///{path(w)}")

    async def ours_normal(w: str) -> Any:
        return await ours("ThreadlineSession (sqlite, normal)", f"sqlite:///{path(w)}")

    async def ours_full(w: str) -> Any:
        url = f"sqlite:///{path(w)}?synchronous=full"
        return await ours("ThreadlineSession (sqlite, full)", url)

    return await measure(
        {
            "limit (sqlite3)": minimal,
            "agents SQLiteSession": agents_sqlite,
            "agents SQLAlchemySession (aiosqlite)": agents_sqlalchemy,
            "ThreadlineSession (sqlite, normal)": ours_normal,
            "ThreadlineSession (sqlite, full)": ours_full,
        },
        sizes,
    )


async def postgres_suite(sizes: dict[str, int]) -> dict[str, dict[str, float]]:
    import asyncpg

    admin = await asyncpg.connect(PG_URL, timeout=5)
    database = f"threadline_bench_oa_{secrets.token_hex(4)}"
    await admin.execute(f'CREATE DATABASE "{database}"')
    url = PG_URL.rsplit("/", 1)[0] + "/" + database
    try:

        async def minimal(w: str) -> Any:
            return await MinimalPostgres.open(url, f"m_{secrets.token_hex(4)}")

        async def agents_sqlalchemy(w: str) -> Any:
            return await sdk_sqlalchemy(url.replace("postgresql://", "postgresql+asyncpg://", 1))

        async def ours_pg(w: str) -> Any:
            schema_url = f"{url}?schema=t_{secrets.token_hex(4)}"
            return await ours("ThreadlineSession (postgres)", schema_url)

        return await measure(
            {
                "limit (asyncpg)": minimal,
                "agents SQLAlchemySession (asyncpg)": agents_sqlalchemy,
                "ThreadlineSession (postgres)": ours_pg,
            },
            sizes,
        )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


# -- first reads --------------------------------------------------------------------------------

BASE = "agents SQLiteSession"


async def first_reads(n: int, reads: int, pg_url: str | None) -> dict[str, tuple[float, float]]:
    """One round: ``{system: (wall p50, CPU per read)}`` of ``get_items()`` of ``n`` items
    with nothing kept, the systems taking turns read by read."""
    with tempfile.TemporaryDirectory(prefix="bench-oa-first-") as tmp:
        folder = Path(tmp)
        theirs = SQLiteSession(new_id(), folder / "sdk.db")
        store = await threadline.connect(f"sqlite:///{folder}/ours.db")
        ours_session = ThreadlineSession(new_id(), store)
        stores = [store]
        data = items(n)
        await fill(theirs, data)
        await fill(ours_session, data)

        def fresh(session: ThreadlineSession) -> Callable[[], Awaitable[list[Item]]]:
            async def read() -> list[Item]:
                kept._TAILS.clear()
                got: list[Item] = await ThreadlineSession(
                    session.session_id, await session.get_store()
                ).get_items()
                return got

            return read

        async def before() -> list[Item]:
            """What get_items did before read_message_rows: the messages, their items, kept,
            and a marshal copy of them handed out."""
            messages = await store.get_messages(
                ours_session.tenant_id, ours_session.thread_session_id
            )
            copied: list[Item] = marshal.loads(marshal.dumps(items_from_messages(messages)))
            return copied

        systems: dict[str, Callable[[], Awaitable[list[Item]]]] = {
            BASE: theirs.get_items,
            "ThreadlineSession (sqlite), first read": fresh(ours_session),
            "  before: get_messages + items (sqlite)": before,
        }
        if pg_url is not None:
            pg = await threadline.connect(f"{pg_url}?schema=b_{secrets.token_hex(4)}")
            stores.append(pg)
            on_pg = ThreadlineSession(new_id(), pg)
            await fill(on_pg, data)
            systems["ThreadlineSession (postgres), first read"] = fresh(on_pg)
        try:
            for read in systems.values():
                assert await read() == data
            wall: dict[str, list[float]] = {name: [] for name in systems}
            cpu: dict[str, float] = dict.fromkeys(systems, 0.0)
            for name, read in systems.items():  # a block each: its own GC debt is its own
                gc.collect()
                for _ in range(reads):
                    began, cpu_began = time.perf_counter(), time.process_time()
                    await read()
                    wall[name].append(time.perf_counter() - began)
                    cpu[name] += time.process_time() - cpu_began
            return {name: (statistics.median(wall[name]), cpu[name] / reads) for name in systems}
        finally:
            theirs.close()
            for opened in stores:
                await opened.close()


async def first_reads_main(postgres: bool) -> None:
    print(environment())
    admin, database, pg_url = None, "", None
    if postgres:
        import asyncpg

        try:
            admin = await asyncpg.connect(PG_URL, timeout=5)
        except (OSError, asyncio.TimeoutError) as exc:
            print(f"PostgreSQL at {PG_URL} not reachable ({exc}): skipped")
        else:
            database = f"threadline_bench_oa_{secrets.token_hex(4)}"
            await admin.execute(f'CREATE DATABASE "{database}"')
            pg_url = PG_URL.rsplit("/", 1)[0] + "/" + database
    try:
        for n, reads in ((200, 60), (2000, 12)):
            await _first_reads_table(n, reads, pg_url)
    finally:
        if admin is not None:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await admin.close()


async def _first_reads_table(n: int, reads: int, pg_url: str | None) -> None:
    rounds = [await first_reads(n, reads, pg_url) for _ in range(ROUNDS)]
    loads = os.getloadavg()
    base_wall = statistics.median(r[BASE][0] for r in rounds)
    base_cpu = statistics.median(r[BASE][1] for r in rounds)
    rows = []
    for name in rounds[0]:
        walls = [r[name][0] for r in rounds]
        cpus = [r[name][1] for r in rounds]
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        rows.append([
            name, us(wall), f"{base_wall / wall:.2f}x", us(cpu), f"{base_cpu / cpu:.2f}x",
            ", ".join(f"{r[BASE][1] / c:.2f}" for r, c in zip(rounds, cpus)),
        ])  # fmt: skip
    print_table(
        f"get_items() of {n:,} items, nothing kept (median of {ROUNDS} rounds x {reads} "
        f"reads; load {loads[0]:.1f}, {loads[1]:.1f}, {loads[2]:.1f})",
        ["system", "wall p50 (us)", "vs SQLiteSession", "CPU per read (us)",
         "vs SQLiteSession (CPU)", "CPU ratio per round"],
        rows,
    )  # fmt: skip


async def main(quick: bool, postgres: bool) -> None:
    sizes = {"append1": 1000, "turns": 250, "long": 10_000, "reads": 500}
    if quick:
        sizes = {"append1": 200, "turns": 50, "long": 2_000, "reads": 100}
    print(environment())
    print(f"workloads: {sizes}")
    with tempfile.TemporaryDirectory(prefix="bench-oa-") as tmp:
        results = await sqlite_suite(Path(tmp), sizes)
    report("SQLite (ratios: time / the database's limit)", results, "agents SQLiteSession")
    if not postgres:
        return
    try:
        pg = await postgres_suite(sizes)
    except (OSError, asyncio.TimeoutError) as exc:
        print(f"\nPostgreSQL at {PG_URL} not reachable ({exc}): skipped")
        return
    pg_base = "agents SQLAlchemySession (asyncpg)"
    report("PostgreSQL (ratios: time / the database's limit)", pg, pg_base)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer operations")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument(
        "--first-reads", action="store_true", help="only the first read of a process, with CPU"
    )
    args = parser.parse_args()
    if args.first_reads:
        asyncio.run(first_reads_main(not args.no_postgres))
    else:
        asyncio.run(main(args.quick, not args.no_postgres))
