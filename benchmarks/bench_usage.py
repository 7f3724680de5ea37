#!/usr/bin/env python
"""How fast is ``Store.usage`` on 1,000,000 API calls? SQLite and PostgreSQL.

    python benchmarks/bench_usage.py                 # 1,000,000 calls (loading takes minutes)
    python benchmarks/bench_usage.py --quick         # 100,000 calls
    python benchmarks/bench_usage.py --no-postgres   # SQLite only

One tenant's calls (1,000 sessions, 100 users, 20 agents, 4 models, 90 days, every call
with tokens, latency and time to first token; each session makes ~11 calls a day, every
day) are loaded in bulk into each store's own schema as it was before migration
``0010_usage_rollup`` (SQLite ``executemany``, PostgreSQL ``COPY``), then the store is
opened, which applies 0010: its back-fill of the rollup from the calls is timed, as an
upgrade would run it. Then ``Store.usage`` is timed by every ``group_by`` over everything,
by model over the last 7 days and by user over 30 days from noon to noon (partial days at
both ends), median of ``--repeat`` runs. ``save_api_call``'s median time (the rollup's
triggers run in it) is printed beside. Run on a store without the rollup (an older
checkout) it loads and times the same.

Rows, in every table:

* **limit**: what the database itself costs for the same logical work, the reference of
  every ratio: a minimal table ``(created_at, model, agent, user, session, status, prompt,
  completion, total, latency, ttft)`` holding the same calls, with no tenant and no index
  (PostgreSQL: with ``(created_at)`` for the periods), and the sums, status counts and
  exact p50/p95 per group in plain SQL over the calls (SQLite: ``GROUP BY`` plus a read of
  the values sorted per group in Python; PostgreSQL: ``percentile_cont``). It keeps no
  rollup: it is what answering from the calls costs;
* **threadline** ``Store.usage`` (the store's override: the rollup, edges from the calls);
* **default path**: the core default (every session's ``list_api_calls``), timed on a
  smaller set (``--small`` calls) beside the override on the same set, for the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import random
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import environment, print_table, ratio

import threadline
from threadline import Session
from threadline.ids import new_id
from threadline.plugins.dispatch import Binding
from threadline.storekit.defaults import DEFAULTS
from threadline.usage import UsageQuery

DEFAULT_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1/test")
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
MODELS = ("gpt-4o", "gpt-4o-mini", "claude", "llama")
STATUSES = ("success",) * 16 + ("failed", "timeout", "rate_limited", "cancelled")
PRICES = {
    "gpt-4o": {"input_per_million": 2.5, "output_per_million": 10},
    "gpt-4o-mini": {"input_per_million": 0.15, "output_per_million": 0.6},
}
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
WORK: dict[str, dict[str, Any]] = {
    "by model": {"group_by": "model"},
    "by agent": {"group_by": "agent"},
    "by user": {"group_by": "user"},
    "by session": {"group_by": "session"},
    "by day": {"group_by": "day"},
    "by model, 7 days": {"group_by": "model", "since": NOW - timedelta(days=7)},
    "by user, 30 days noon-noon": {
        "group_by": "user",
        "since": NOW - timedelta(days=30, hours=12),
        "until": NOW - timedelta(hours=12),
    },
}
_LIMIT_KEYS = {"model": "model", "agent": "agent", "user": "usr", "session": "session"}


def calls(tenant: str, sessions: list[str], n: int, seed: int = 7) -> list[tuple[Any, ...]]:
    """``n`` calls: (id, tenant, session, user, agent, model, status, prompt, completion,
    total, latency ms, ttft ms, created_at), oldest first."""
    rnd = random.Random(seed)
    users = [new_id() for _ in range(100)]
    agents = [new_id() for _ in range(20)]
    span = 90 * 86400 * 1_000_000
    start = NOW - timedelta(days=90)
    out = []
    for i in range(n):
        prompt, completion = rnd.randint(50, 4000), rnd.randint(10, 1000)
        out.append((
            new_id(), tenant, sessions[i % len(sessions)], users[i % 100], agents[i % 20],
            MODELS[rnd.randrange(4)], STATUSES[rnd.randrange(20)], prompt, completion,
            prompt + completion, rnd.uniform(200, 9000), rnd.uniform(50, 900),
            start + timedelta(microseconds=i * span // n),
        ))  # fmt: skip
    return out


async def timed(fn: Callable[[], Awaitable[Any]], repeat: int) -> float:
    """Median seconds of ``repeat`` runs (after one warm-up)."""
    await fn()
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def _sync_median(fn: Callable[[], Any], repeat: int) -> float:
    fn()
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


async def default_path(store: threadline.Store, tenant: str, **query: Any) -> Any:
    """The core default on ``store``'s own hooks (what a store without an override runs)."""
    binding = Binding(store.pm, store.primary)
    q = UsageQuery(prices=PRICES, **query)
    return await DEFAULTS["threadline_summarize_usage"].function(binding, tenant, q)


async def sessions_of(store: threadline.Store, tenant: str, n: int) -> list[str]:
    return [(await store.create_session(Session(tenant_id=tenant))).id for _ in range(n)]


# -- SQLite ---------------------------------------------------------------------------------

_SQLITE_INSERT = (
    "INSERT INTO entity_api_call (id, tenant_id, session_id, user_id, agent_id, model, status, "
    "prompt_tokens, completion_tokens, total_tokens, latency_ms, time_to_first_token_ms, "
    "metadata, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '{}', ?)"
)
_LIMIT_SUMS = (
    "SELECT {key}, status, count(*), sum(prompt), sum(completion), sum(total) "
    "FROM call {where} GROUP BY 1, 2"
)
_LIMIT_VALUES = "SELECT {key}, latency, ttft FROM call {where}"


def _us(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def _sqlite_period(work: dict[str, Any]) -> str:
    bounds = []
    if work.get("since") is not None:
        bounds.append(f"created_at >= {_us(work['since'])}")
    if work.get("until") is not None:
        bounds.append(f"created_at < {_us(work['until'])}")
    return "WHERE " + " AND ".join(bounds) if bounds else ""


def sqlite_limit(path: Path, rows: list[tuple[Any, ...]], repeat: int) -> dict[str, float]:
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE call (created_at INTEGER, model TEXT, agent TEXT, usr TEXT, "
        "session TEXT, status TEXT, prompt INTEGER, completion INTEGER, total INTEGER, "
        "latency REAL, ttft REAL)"
    )
    db.executemany(
        "INSERT INTO call VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(_us(r[12]), r[5], r[4], r[3], r[2], r[6], r[7], r[8], r[9], r[10], r[11])
         for r in rows],
    )  # fmt: skip
    db.commit()
    out = {}
    day = "strftime('%Y-%m-%d', created_at / 1000000, 'unixepoch')"
    for name, work in WORK.items():
        key = _LIMIT_KEYS.get(work["group_by"], day)
        where = _sqlite_period(work)

        def run(key: str = key, where: str = where) -> None:
            db.execute(_LIMIT_SUMS.format(key=key, where=where)).fetchall()
            groups: dict[str, tuple[list[float], list[float]]] = {}
            for k, latency, ttft in db.execute(_LIMIT_VALUES.format(key=key, where=where)):
                group = groups.setdefault(k, ([], []))
                group[0].append(latency)
                group[1].append(ttft)
            for latencies, ttfts in groups.values():
                latencies.sort()
                ttfts.sort()

        out[name] = _sync_median(run, repeat)
    db.close()
    return out


ROLLUP = "0010_usage_rollup"


def _sqlite_before_rollup(path: Path) -> bool:
    """Create ``path`` at the migrations before the usage rollup (False: no rollup here)."""
    from threadline_sqlite import migrations

    names = migrations.MIGRATION_NAMES
    if ROLLUP not in names:
        return False
    from sqlite_utils import Database, Migrations

    connection = sqlite3.connect(path)
    older = Migrations(migrations.MIGRATION_SET)
    for name in names[: names.index(ROLLUP)]:
        older(name=name)(migrations._FUNCTIONS[name])
    older.apply(Database(connection))
    connection.close()
    return True


async def bench_sqlite(n: int, small: int, repeat: int, folder: Path) -> dict[str, Any]:
    tenant = new_id()
    path = folder / "usage.db"
    rollup = _sqlite_before_rollup(path)
    store = await threadline.connect(f"sqlite:///{path}", migrate=not rollup)
    sessions = await sessions_of(store, tenant, 1000)
    await store.close()
    rows = calls(tenant, sessions, n)
    db = sqlite3.connect(path)
    t0 = time.perf_counter()
    db.executemany(_SQLITE_INSERT, [(*r[:12], _us(r[12])) for r in rows])
    db.commit()
    db.execute("ANALYZE")
    db.close()
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    store = await threadline.connect(f"sqlite:///{path}")  # migrates: the rollup's back-fill
    backfill = time.perf_counter() - t0
    if rollup:
        db = sqlite3.connect(path)
        db.execute("ANALYZE")
        db.close()
    ours = {
        name: await timed(functools.partial(store.usage, tenant, prices=PRICES, **work), repeat)
        for name, work in WORK.items()
    }
    await store.close()
    limit = sqlite_limit(folder / "limit.db", rows, repeat)
    small_store = await threadline.connect(f"sqlite:///{folder / 'small.db'}")
    small_tenant = new_id()
    small_sessions = await sessions_of(small_store, small_tenant, 200)
    save = await save_all(small_store, calls(small_tenant, small_sessions, small))
    small_ours = await timed(
        lambda: small_store.usage(small_tenant, prices=PRICES, group_by="model"), repeat
    )
    small_default = await timed(lambda: default_path(small_store, small_tenant), repeat)
    await small_store.close()
    return {"load": load, "ours": ours, "limit": limit, "backfill": backfill if rollup else None,
            "small": (small_ours, small_default), "save": save}  # fmt: skip


async def save_all(store: threadline.Store, rows: list[tuple[Any, ...]]) -> float:
    """Save each call with ``save_api_call``; the median seconds of one save."""
    runs = []
    for r in rows:
        call = _api_call(r)
        t0 = time.perf_counter()
        await store.save_api_call(call)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def _api_call(r: tuple[Any, ...]) -> threadline.ApiCall:
    return threadline.ApiCall(
        id=r[0], tenant_id=r[1], session_id=r[2], user_id=r[3], agent_id=r[4], model=r[5],
        status=r[6], prompt_tokens=r[7], completion_tokens=r[8], total_tokens=r[9],
        latency_ms=r[10], time_to_first_token_ms=r[11], created_at=r[12],
    )  # fmt: skip


# -- PostgreSQL -----------------------------------------------------------------------------

_PG_COLUMNS = (
    "id", "tenant_id", "session_id", "user_id", "agent_id", "model", "status",
    "prompt_tokens", "completion_tokens", "total_tokens", "latency_ms",
    "time_to_first_token_ms", "created_at",
)  # fmt: skip
_PG_LIMIT = (
    "SELECT {key} AS k, status, count(*), sum(prompt), sum(completion), sum(total) "
    "FROM {schema}.call {where} GROUP BY 1, 2"
)
_PG_LIMIT_PCT = (
    "SELECT {key} AS k, percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY latency), "
    "percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY ttft) "
    "FROM {schema}.call {where} GROUP BY 1"
)


async def bench_postgres(url: str, n: int, small: int, repeat: int) -> dict[str, Any]:
    import asyncpg

    admin = await asyncpg.connect(url, timeout=5)
    version = await admin.fetchval("SHOW server_version")
    database = f"threadline_usage_{secrets.token_hex(4)}"
    await admin.execute(f'CREATE DATABASE "{database}"')
    base = url.split("?", 1)[0].rsplit("/", 1)[0] + "/" + database
    try:
        from threadline_postgres import parse_config
        from threadline_postgres.schema import MIGRATIONS, migrate

        tenant = new_id()
        conn = await asyncpg.connect(base)
        older = tuple(m for m in MIGRATIONS if m.name != ROLLUP)
        rollup = len(older) < len(MIGRATIONS)
        config = parse_config(f"{base}?schema=tl")
        await migrate(conn, config, older)
        store = await threadline.connect(f"{base}?schema=tl", migrate=False)
        sessions = await sessions_of(store, tenant, 1000)
        rows = calls(tenant, sessions, n)
        t0 = time.perf_counter()
        await conn.copy_records_to_table(
            "entity_api_call", schema_name="tl", columns=_PG_COLUMNS,
            records=[(*r[:12], r[12]) for r in rows],
        )  # fmt: skip
        await conn.execute("VACUUM ANALYZE tl.entity_api_call")
        load = time.perf_counter() - t0
        t0 = time.perf_counter()
        await migrate(conn, config)  # the rollup's back-fill (longer than command_timeout)
        backfill = time.perf_counter() - t0
        if rollup:
            await conn.execute("VACUUM ANALYZE tl.usage_rollup, tl.usage_histogram")
        ours = {
            name: await timed(functools.partial(store.usage, tenant, prices=PRICES, **work), repeat)
            for name, work in WORK.items()
        }
        await conn.execute(
            "CREATE SCHEMA lim; CREATE TABLE lim.call (created_at timestamptz, model text, "
            "agent uuid, usr uuid, session uuid, status text, prompt bigint, "
            "completion bigint, total bigint, latency float8, ttft float8)"
        )
        await conn.copy_records_to_table(
            "call", schema_name="lim",
            records=[(r[12], r[5], r[4], r[3], r[2], r[6], r[7], r[8], r[9], r[10], r[11])
                     for r in rows],
        )  # fmt: skip
        await conn.execute("CREATE INDEX ON lim.call (created_at)")
        await conn.execute("VACUUM ANALYZE lim.call")
        limit = {}
        day = "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        for name, work in WORK.items():
            key = _LIMIT_KEYS.get(work["group_by"], day)
            bounds = [(work.get("since"), ">="), (work.get("until"), "<")]
            args = tuple(b for b, _ in bounds if b is not None)
            where = " AND ".join(
                f"created_at {op} ${i + 1}"
                for i, (_, op) in enumerate((b, o) for b, o in bounds if b is not None)
            )
            where = f"WHERE {where}" if where else ""

            async def run(key: str = key, where: str = where, args: Any = args) -> None:
                for sql in (_PG_LIMIT, _PG_LIMIT_PCT):
                    await conn.fetch(sql.format(key=key, schema="lim", where=where), *args)

            limit[name] = await timed(run, repeat)
        small_tenant = new_id()
        small_sessions = await sessions_of(store, small_tenant, 200)
        save = await save_all(store, calls(small_tenant, small_sessions, small))
        small_ours = await timed(
            lambda: store.usage(small_tenant, prices=PRICES, group_by="model"), repeat
        )
        small_default = await timed(lambda: default_path(store, small_tenant), repeat)
        await conn.close()
        await store.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
    return {"load": load, "ours": ours, "limit": limit, "small": (small_ours, small_default),
            "version": version, "save": save,
            "backfill": backfill if rollup else None}  # fmt: skip


def report(name: str, n: int, small: int, found: dict[str, Any]) -> None:
    rows = [
        (work, f"{found['limit'][work] * 1000:.0f}", f"{found['ours'][work] * 1000:.0f}",
         ratio(found["ours"][work], found["limit"][work]))
        for work in WORK
    ]  # fmt: skip
    print_table(
        f"{name}: Store.usage on {n:,} API calls of one tenant (ms, median; loaded in "
        f"{found['load']:.1f} s)",
        ["query", "limit", "threadline", "ratio"],
        rows,
    )
    ours, default = found["small"]
    print_table(
        f"{name}: the override against the core default, {small:,} calls in 200 sessions (ms)",
        ["path", "by model", "ratio to the override"],
        [("override (index)", f"{ours * 1000:.1f}", "1.00x"),
         ("core default (list_api_calls per session)", f"{default * 1000:.1f}",
          ratio(default, ours))],
    )  # fmt: skip
    print(f"{name}: save_api_call, median of {small:,}: {found['save'] * 1e6:.0f} us")
    if found["backfill"] is not None:
        print(f"{name}: migration 0010 back-filling the rollup from {n:,} calls: "
              f"{found['backfill']:.1f} s")  # fmt: skip


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="PostgreSQL server")
    parser.add_argument("--quick", action="store_true", help="100,000 calls, not 1,000,000")
    parser.add_argument("--calls", type=int, help="how many calls (default 1,000,000)")
    parser.add_argument("--small", type=int, default=20_000, help="calls for the default path")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    n = args.calls or (100_000 if args.quick else 1_000_000)
    print(f"threadline usage benchmark; {environment()}")
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as folder:
            found = await bench_sqlite(n, args.small, args.repeat, Path(folder))
        report("SQLite", n, args.small, found)
    if not args.no_postgres:
        found = await bench_postgres(args.url, n, args.small, args.repeat)
        report(f"PostgreSQL {found['version']}", n, args.small, found)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
