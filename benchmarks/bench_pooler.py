"""What PgBouncer, the pooler check and read replicas cost the PostgreSQL store.

Usage::

    python benchmarks/bench_pooler.py [--url postgresql://postgres@127.0.0.1/test] [--quick]

One conversation turn (``save_message`` of the user's text, ``load_window(5)``,
``save_message`` of the reply) repeated on a 200-message session, p50/p95 per turn, for:

* ``raw asyncpg``: the same three statements on a plain asyncpg connection (named
  statements, direct): what the database costs for the work; the reference row.
* ``direct`` (the default URL, ``pooler=auto``): named statements, the pooler check passed.
* ``direct, unnamed``: ``pooler=transaction`` on a direct server: what unnamed statements
  (a second round trip per statement) cost by themselves.
* ``pgbouncer transaction``: the default URL through a transaction-mode pgbouncer (the check
  finds it and switches to unnamed statements).
* ``pgbouncer session``: ``pooler=session`` through a session-mode pgbouncer (named kept).
* ``direct + replica``: ``?replica=`` naming the same server: the routing's own cost.

The benchmark's database commits with ``synchronous_commit = off`` so that the disk's
flush does not drown the round trips being compared. Also: opening a connection with and
without the pooler check, and what a read-your-writes scheme on replay LSNs would add to
every write (``SELECT pg_current_wal_lsn()`` after it).
pgbouncer is started by the benchmark (``TempPgBouncer``); rows needing it are skipped
without it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("THREADLINE_LOAD_PLUGINS", "threadline-postgres")

import asyncpg
from _common import environment, percentile, print_table, ratio, us

import threadline
from threadline.testing._support import new_conversation
from threadline.urls import StoreURL
from threadline_postgres.cluster import ClusterUnavailableError, TempPgBouncer

Turn = Callable[[int], Awaitable[None]]


async def _timed(turn: Turn, n: int) -> list[float]:
    for i in range(20):  # warm up: statements prepared, pool filled
        await turn(-1 - i)
    samples = []
    for i in range(n):
        started = time.perf_counter()
        await turn(i)
        samples.append(time.perf_counter() - started)
    return samples


async def _store_turns(url: str, n: int) -> list[float]:
    store = await threadline.connect(url)
    try:
        conv = await new_conversation(store)
        for r in range(100):
            await conv.add("user", f"q{r}")
            await conv.add("assistant", f"a{r}")

        async def turn(i: int) -> None:
            await conv.add("user", f"question {i}")
            await store.load_window(conv.tenant_id, conv.id, 5)
            await conv.add("assistant", f"answer {i}")

        return await _timed(turn, n)
    finally:
        await store.close()


async def _raw_turns(url: str, n: int, schema: str) -> list[float]:
    """The three statements on a minimal schema, one asyncpg connection, named statements."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            f'CREATE TABLE "{schema}".raw_msg (session_id int, seq int, role text, content text,'
            " PRIMARY KEY (session_id, seq))"
        )
        insert = f'INSERT INTO "{schema}".raw_msg VALUES (1, $1, $2, $3)'
        window = f'SELECT * FROM "{schema}".raw_msg WHERE session_id = 1 AND seq >= $1 ORDER BY seq'
        seq = 0
        for r in range(200):
            seq += 1
            await conn.execute(insert, seq, "user" if r % 2 == 0 else "assistant", f"m{r}")

        async def turn(i: int) -> None:
            nonlocal seq
            seq += 1
            await conn.execute(insert, seq, "user", f"question {i}")
            await conn.fetch(window, seq - 9)
            seq += 1
            await conn.execute(insert, seq, "assistant", f"answer {i}")

        return await _timed(turn, n)
    finally:
        await conn.close()


async def _connect_cost(url: str, check: bool, n: int) -> float:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        conn = await asyncpg.connect(url)
        if check:
            pid = conn.get_server_pid()
            await conn.execute(f"SELECT 1 / (pg_backend_pid() = {pid})::int")
        samples.append(time.perf_counter() - started)
        await conn.close()
    return percentile(samples, 50)


async def _lsn_cost(url: str, n: int, schema: str) -> tuple[float, float]:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'CREATE TABLE "{schema}".lsn_t (x int)')
        insert = f'INSERT INTO "{schema}".lsn_t VALUES ($1)'
        plain, with_lsn = [], []
        for i in range(n):
            started = time.perf_counter()
            await conn.execute(insert, i)
            plain.append(time.perf_counter() - started)
            started = time.perf_counter()
            await conn.execute(insert, i)
            await conn.fetchval("SELECT pg_current_wal_lsn()")
            with_lsn.append(time.perf_counter() - started)
        return percentile(plain, 50), percentile(with_lsn, 50)
    finally:
        await conn.close()


def _with(url: str, database: str, port: int | None = None, **options: object) -> str:
    parsed = StoreURL.parse(url)
    host = f"{parsed.host or '127.0.0.1'}:{port or parsed.port or 5432}"
    netloc = f"{parsed.username or 'postgres'}@{host}"
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"postgresql://{netloc}/{database}" + (f"?{query}" if query else "")


async def main(url: str, quick: bool) -> None:
    n = 200 if quick else 1000
    database = f"bench_pooler_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(url)
    await admin.execute(f'CREATE DATABASE "{database}"')
    # Commits without waiting for the disk: the rows compare statements and round trips,
    # not this machine's fsync (several ms here, and noisy).
    await admin.execute(f'ALTER DATABASE "{database}" SET synchronous_commit = off')
    await admin.close()
    base = _with(url, database)
    rows: list[list[object]] = []
    try:
        conn = await asyncpg.connect(base)
        for schema in ("raw", "a", "b", "c", "d", "e", "lsn"):
            await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.close()
        results: dict[str, list[float]] = {}
        results["raw asyncpg (named, direct)"] = await _raw_turns(base, n, "raw")
        results["direct (default: pooler=auto)"] = await _store_turns(
            _with(url, database, schema="a"), n
        )
        results["direct, unnamed (pooler=transaction)"] = await _store_turns(
            _with(url, database, schema="b", pooler="transaction"), n
        )
        results["direct + replica routing (?replica=same)"] = await _store_turns(
            _with(
                url, database, schema="e", replica=f"127.0.0.1:{StoreURL.parse(url).port or 5432}"
            ),
            n,
        )
        server_port = StoreURL.parse(url).port or 5432
        try:
            with TempPgBouncer(server_port, pool_mode="transaction", pool_size=4) as bouncer:
                results["pgbouncer transaction (default URL)"] = await _store_turns(
                    _with(url, database, bouncer.port, schema="c"), n
                )
            with TempPgBouncer(server_port, pool_mode="session", pool_size=20) as bouncer:
                results["pgbouncer session (pooler=session)"] = await _store_turns(
                    _with(url, database, bouncer.port, schema="d", pooler="session"), n
                )
        except ClusterUnavailableError as exc:
            print(f"note: pgbouncer rows skipped: {exc}")
        reference = percentile(results["raw asyncpg (named, direct)"], 50)
        direct = percentile(results["direct (default: pooler=auto)"], 50)
        for name, samples in results.items():
            p50 = percentile(samples, 50)
            rows.append([name, us(p50), us(percentile(samples, 95)), ratio(p50, reference),
                         ratio(p50, direct)])  # fmt: skip
        print(environment())
        print_table(
            f"one turn (append, window of 5 rounds, append), {n} turns",
            ["system", "p50", "p95", "x raw", "x direct"],
            rows,
        )
        plain_connect = await _connect_cost(base, False, 50)
        checked_connect = await _connect_cost(base, True, 50)
        plain, with_lsn = await _lsn_cost(base, n, "lsn")
        print_table(
            "one-off costs",
            ["what", "p50", "with", "x"],
            [
                [
                    "open a connection / + pooler check",
                    us(plain_connect),
                    us(checked_connect),
                    ratio(checked_connect, plain_connect),
                ],
                [
                    "a write / + SELECT pg_current_wal_lsn() (LSN read-your-writes)",
                    us(plain),
                    us(with_lsn),
                    ratio(with_lsn, plain),
                ],
            ],  # fmt: skip
        )
    finally:
        admin = await asyncpg.connect(url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.url, args.quick))
