"""threadline-postgres at volume (issue #14): bulk load, reads before and after ANALYZE,
deep session pages, and hundreds of concurrent conversations.

Usage::

    python benchmarks/bench_scale.py [--url postgresql://postgres@127.0.0.1/test]
                                     [--messages 2000000] [--per-session 200]
                                     [--conversations 256]

In a temporary database (dropped at the end), one tenant:

* **load**: ``--messages`` messages (400 bytes of pseudo-English each) in sessions of
  ``--per-session``, written by ``save_messages`` (one call per session, 8 sessions at a
  time, models built inside the timing: the client's cost is part of a load), autovacuum
  off on the store's tables so nothing analyzes behind the benchmark's back.
* **window**: ``load_window`` (10 rounds) of random sessions, p50/p95, straight after the
  load (no statistics) and after ``ANALYZE``.
* **list_sessions**: the first page (20) and a deep page in the middle of the tenant's
  sessions, by keyset cursor and, for comparison, by OFFSET.
* **conversations**: ``--conversations`` concurrent conversations of new sessions
  (append the user's message, read the window, append the reply), 5 turns each, direct
  and through a transaction-mode PgBouncer the benchmark starts (``TempPgBouncer``, pool
  of ``--pool`` server connections) on the loaded database.
* bytes on disk per stored message.
* **replica**: the same conversations on a server pair the benchmark makes (a
  ``TempCluster`` primary and its streaming standby, ``pg_basebackup``), direct on the
  primary and with ``?replica=`` reads on the standby: the pair's own ratio (its servers
  are small: ``shared_buffers`` 16 MB, and not the loaded database).

``--partitions N`` runs it all on a schema whose messages and checkpoints are ``N`` hash
partitions by tenant. Rows needing pgbouncer or the server binaries are skipped without
them. Per-turn costs of the poolers and of replica routing: ``bench_pooler.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import time
from collections.abc import Awaitable, Callable

import asyncpg

import threadline
from threadline import Message, Session, SessionCursor
from threadline.ids import new_id

os.environ.setdefault("THREADLINE_LOAD_PLUGINS", "threadline-postgres")

from _common import environment, percentile, print_table, pseudo_english, run_concurrently

from threadline_postgres import parse_config
from threadline_postgres.cluster import ClusterUnavailableError, TempCluster, TempPgBouncer

DEFAULT_URL = os.environ.get(
    "THREADLINE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
SCHEMA = "scale"
TABLES = ("entity_session", "entity_message", "entity_api_call", "entity_checkpoint")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.2f}"


async def timings(call: Callable[[], Awaitable[object]], count: int) -> list[float]:
    """Seconds of ``count`` awaited calls of ``call()``, one after the other."""
    out = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        out.append(time.perf_counter() - started)
    return out


async def load(store: threadline.Store, tenant: str, args: argparse.Namespace) -> list[str]:
    """Write the messages; return the session ids (in creation order)."""
    texts = pseudo_english(4096)
    sessions = [new_id() for _ in range(args.messages // args.per_session)]

    async def one(index: int) -> None:
        sid = sessions[index]
        await store.create_session(Session(id=sid, tenant_id=tenant))
        base = index * args.per_session
        await store.save_messages([
            Message(session_id=sid, tenant_id=tenant, role="user" if i % 2 == 0 else "assistant",
                    content=texts[(base + i) % len(texts)])
            for i in range(args.per_session)
        ])  # fmt: skip

    await run_concurrently(8, len(sessions), one)
    return sessions


async def windows(
    store: threadline.Store, tenant: str, sessions: list[str], reads: int
) -> list[float]:
    picks = random.Random(14)

    async def read() -> None:
        await store.load_window(tenant, picks.choice(sessions), 10)

    return await timings(read, reads)


async def conversations(
    store: threadline.Store, tenant: str, count: int, turns: int
) -> tuple[float, list[float]]:
    """``count`` concurrent conversations; messages per second and seconds per turn."""
    per_turn: list[float] = []

    async def one(_: int) -> None:
        sid = (await store.create_session(Session(tenant_id=tenant))).id
        for turn in range(turns):
            started = time.perf_counter()
            await store.save_message(Message(session_id=sid, tenant_id=tenant, role="user",
                                             content=f"question {turn}"))  # fmt: skip
            await store.load_window(tenant, sid, 10)
            await store.save_message(Message(session_id=sid, tenant_id=tenant, role="assistant",
                                             content=f"answer {turn}"))  # fmt: skip
            per_turn.append(time.perf_counter() - started)

    started = time.perf_counter()
    await run_concurrently(count, count, one)
    return count * turns * 2 / (time.perf_counter() - started), per_turn


async def run(args: argparse.Namespace) -> int:
    admin = await asyncpg.connect(args.url, timeout=5)
    version = await admin.fetchval("SHOW server_version")
    database = f"threadline_scale_{secrets.token_hex(4)}"
    await admin.execute(f'CREATE DATABASE "{database}"')
    base = args.url.split("?", 1)[0].rsplit("/", 1)[0] + "/" + database
    rows: list[tuple[str, str]] = []
    try:
        options = f"schema={SCHEMA}&max_size={args.pool}"
        if args.partitions:
            options += f"&partitions={args.partitions}"
        url = f"{base}?{options}"
        store = await threadline.connect(url)
        conn = await asyncpg.connect(base)
        try:
            leaves = await conn.fetch(  # a partitioned table's settings are its partitions'
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = $1 AND c.relkind = 'r'",
                SCHEMA,
            )
            for (table,) in leaves:
                await conn.execute(f"ALTER TABLE {SCHEMA}.{table} SET (autovacuum_enabled = false)")
            tenant = new_id()
            started = time.perf_counter()
            sessions = await load(store, tenant, args)
            took = time.perf_counter() - started
            total = len(sessions) * args.per_session
            rows.append(
                (
                    f"load {total:,} messages in {len(sessions):,} sessions",
                    f"{total / took:,.0f} msg/s ({took:,.1f} s)",
                )
            )
            cold = await windows(store, tenant, sessions, args.reads)
            rows.append(
                (
                    "window p50 / p95, no ANALYZE (ms)",
                    f"{ms(percentile(cold, 50))} / {ms(percentile(cold, 95))}",
                )
            )
            await conn.execute(f"ANALYZE {', '.join(f'{SCHEMA}.{t}' for t in TABLES)}")
            warm = await windows(store, tenant, sessions, args.reads)
            rows.append(
                (
                    "window p50 / p95, after ANALYZE (ms)",
                    f"{ms(percentile(warm, 50))} / {ms(percentile(warm, 95))}",
                )
            )
            first = await timings(lambda: store.list_sessions(tenant, limit=20), 50)
            rows.append(("list_sessions first page of 20, p50 (ms)", ms(percentile(first, 50))))
            depth = len(sessions) // 2
            cursor = SessionCursor.of(await _nth(store, tenant, depth))
            deep = await timings(lambda: store.list_sessions(tenant, limit=20, after=cursor), 50)
            rows.append(
                (
                    f"list_sessions page after {depth:,} by cursor, p50 (ms)",
                    ms(percentile(deep, 50)),
                )
            )
            offset = await timings(lambda: store.list_sessions(tenant, limit=20, offset=depth), 20)
            rows.append(
                (f"list_sessions page at OFFSET {depth:,}, p50 (ms)", ms(percentile(offset, 50)))
            )
            rows += await _conversation_rows(store, tenant, args, "direct")
            try:
                with TempPgBouncer(
                    _port(args.url), pool_mode="transaction", pool_size=args.pool
                ) as bouncer:
                    through = await threadline.connect(f"{bouncer.url(database)}?{options}")
                    try:
                        rows += await _conversation_rows(
                            through, tenant, args, "PgBouncer transaction mode"
                        )
                    finally:
                        await through.close()
            except ClusterUnavailableError as exc:
                print(f"note: PgBouncer row skipped: {exc}")
            size = await conn.fetchval(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
                SCHEMA,
            )
            count = await conn.fetchval(f"SELECT count(*) FROM {SCHEMA}.entity_message")
            rows.append(("bytes per stored message", f"{int(size) / int(count):,.0f}"))
        finally:
            await conn.close()
            await store.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
    if args.replica:
        try:
            rows += await _replica_rows(args)
        except ClusterUnavailableError as exc:
            print(f"note: replica rows skipped: {exc}")
    print(
        f"\nthreadline-postgres at volume: PostgreSQL {version} at "
        f"{parse_config(args.url).display}, pool {args.pool}; {environment()}"
    )
    print_table("Results", ["measure", "value"], rows)
    return 0


def _port(url: str) -> int:
    return parse_config(url).port or 5432


async def _conversation_rows(
    store: threadline.Store, tenant: str, args: argparse.Namespace, how: str
) -> list[tuple[str, str]]:
    rate, turns = await conversations(store, tenant, args.conversations, 5)
    return [
        (f"{args.conversations} concurrent conversations, {how}", f"{rate:,.0f} msg/s"),
        (
            "  one turn (append, window, append) p50 / p95 (ms)",
            f"{ms(percentile(turns, 50))} / {ms(percentile(turns, 95))}",
        ),
    ]


async def _replica_rows(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The conversations on a primary of our own, direct and with reads on its standby."""
    rows: list[tuple[str, str]] = []
    with TempCluster() as primary, TempCluster(standby_of=primary) as standby:
        pool = min(args.pool, 16)  # the pair's servers take 40 connections each
        options = f"schema={SCHEMA}&max_size={pool}"
        if args.partitions:
            options += f"&partitions={args.partitions}"
        tenant = new_id()
        for how, extra in (
            ("own primary, direct", ""),
            ("own primary, reads on its replica", f"&replica=127.0.0.1:{standby.port}"),
        ):
            store = await threadline.connect(f"{primary.url}?{options}{extra}")
            try:
                rows += await _conversation_rows(store, tenant, args, how)
            finally:
                await store.close()
    return rows


async def _nth(store: threadline.Store, tenant: str, n: int) -> Session:
    """The tenant's ``n``-th session, newest first (read by cursor, untimed)."""
    index = 0
    async for session in store.iter_sessions(tenant, page=1000):
        index += 1
        if index == n:
            return session
    raise LookupError(f"fewer than {n} sessions")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="server (any database on it)")
    parser.add_argument("--messages", type=int, default=2_000_000, help="messages to load")
    parser.add_argument("--per-session", type=int, default=200, help="messages per session")
    parser.add_argument("--conversations", type=int, default=256, help="concurrent conversations")
    parser.add_argument("--reads", type=int, default=200, help="window reads per measurement")
    parser.add_argument("--pool", type=int, default=32, help="the store's max_size")
    parser.add_argument("--partitions", type=int, default=0, help="hash partitions by tenant")
    parser.add_argument(
        "--no-replica", dest="replica", action="store_false", help="skip the replica rows"
    )
    args = parser.parse_args()
    if args.messages < args.per_session * 2 or args.per_session < 2:
        parser.error("--messages must hold at least two sessions of --per-session (>= 2)")
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
