"""Benchmark ``Store.fork_session``: time and bytes of forking a long session.

Usage::

    python benchmarks/bench_fork.py [--messages 10000] [--forks 5] [--size 400]
        [--checkpoint-messages 2000] [--postgres postgresql://postgres@127.0.0.1:5432/test]
        [--skip-postgres]

A session of ``--messages`` messages (``--size`` bytes of pseudo-English each, a tenth of
them tool calls and results) is built once per store; then it is forked ``--forks`` times
at its last message. Printed per store: the median time of a fork and the bytes the
message tables grew by per fork (SQLite: ``dbstat`` pages of the message tables and their
indexes; PostgreSQL: ``pg_total_relation_size`` of the message tables), and, as the limit,
what the database itself costs for the same logical work on a minimal schema
``(session_id, seq, content)``: copying the rows with one ``INSERT ... SELECT`` (the
floor of any fork that copies) and recording one row that points at the shared range
(the floor of a fork that shares the bytes). PostgreSQL is ``ANALYZE``d after the session
is built, as a live database is by autovacuum.

The checkpoint rows: a graph session of ``--checkpoint-messages`` messages (a checkpoint
holding that history, the messages table brought to it by the graph runtime's
``MessageMirror``, as a graph run leaves it) forked ``--forks`` times at the checkpoint,
alternately as ``fork_session`` does it now (the message log begins with the history: the
fork is filled by ``threadline_fork_messages``, shared on SQLite and PostgreSQL) and as
it did before (the history copied through ``save_messages``; forced by reporting no
prefix). Printed: median wall time and this process's CPU time of a fork, and the bytes
the message tables grew by per fork (the fork's checkpoint is the same either way).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("THREADLINE_LOAD_PLUGINS", "threadline-sqlite,threadline-postgres")

from _common import environment, print_table, pseudo_english, ratio

import threadline
import threadline.store.branching as branching
from threadline import Checkpoint, Message, Session, ToolCall
from threadline.graph.messages import MessageMirror
from threadline.ids import new_id
from threadline.store import Store

DEFAULT_POSTGRES = os.environ.get(
    "THREADLINE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
SQLITE_TABLES = ("entity_message", "entity_message_tool_call", "entity_message_user")


def history(session: Session, texts: list[str]) -> list[Message]:
    out: list[Message] = []
    for i, text in enumerate(texts):
        common: dict[str, Any] = {"session_id": session.id, "tenant_id": session.tenant_id}
        if i % 10 == 8:
            call = ToolCall(id=f"call_{i}", name="lookup", arguments={"q": i})
            out.append(Message(**common, role="assistant", tool_calls=[call]))
        elif i % 10 == 9:
            out.append(Message(**common, role="tool", tool_call_id=f"call_{i - 1}", content=text))
        else:
            role = "user" if i % 2 == 0 else "assistant"
            out.append(Message(**common, role=role, content=text, user_id=session.user_id))
    return out


async def build(store: Store, texts: list[str]) -> tuple[Session, Message]:
    session = await store.create_session(Session(tenant_id=new_id(), user_id=new_id()))
    batch = history(session, texts)
    saved: list[Message] = []
    for i in range(0, len(batch), 1000):
        saved += await store.save_messages(batch[i : i + 1000])
    return session, saved[-1]


async def measure_forks(
    store: Store, session: Session, last: Message, forks: int, size: Any
) -> tuple[float, float]:
    """Median seconds of a fork, bytes the message tables grew by per fork."""
    times: list[float] = []
    before = await size()
    for _ in range(forks):
        started = time.perf_counter()
        fork = await store.fork_session(session.tenant_id, session.id, at=last.id)
        times.append(time.perf_counter() - started)
        assert await store.count_messages(session.tenant_id, fork.id) == len_of(last)
    grown = (await size()) - before
    return statistics.median(times), grown / forks


def len_of(last: Message) -> int:
    return last.seq or 0


async def build_graph_session(store: Store, texts: list[str]) -> Checkpoint:
    """A checkpoint holding ``texts`` as history, the messages table mirroring it."""
    session = await store.create_session(Session(tenant_id=new_id(), user_id=new_id()))
    checkpoint = await store.create_checkpoint(
        Checkpoint(
            tenant_id=session.tenant_id,
            session_id=session.id,
            node_id="answer",
            input="go on",
            history=history(session, texts),
        )
    )
    await MessageMirror(store).sync(checkpoint)
    return checkpoint


@contextlib.contextmanager
def copying() -> Iterator[None]:
    """``fork_session`` at a checkpoint as before: the log never begins with the history."""

    async def no_prefix(*args: Any, **kwargs: Any) -> None:
        return None

    shared = branching._prefix_seq
    branching._prefix_seq = no_prefix
    try:
        yield
    finally:
        branching._prefix_seq = shared


async def measure_checkpoint_forks(
    store: Store, checkpoint: Checkpoint, forks: int, size: Any
) -> dict[str, tuple[float, float, float]]:
    """Per mode (``shared``, ``copied``), interleaved: median wall seconds, median CPU
    seconds of this process, median bytes the message tables grew by, of a fork."""
    found: dict[str, list[tuple[float, float, float]]] = {"shared": [], "copied": []}
    tenant, sid = checkpoint.tenant_id, checkpoint.session_id
    for _ in range(forks):
        for mode in ("shared", "copied"):
            before = await size()
            wall, cpu = time.perf_counter(), time.process_time()
            with copying() if mode == "copied" else contextlib.nullcontext():
                fork = await store.fork_session(tenant, sid, at=checkpoint.id)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            grown = (await size()) - before
            assert await store.count_messages(tenant, fork.id) == len(checkpoint.history)
            found[mode].append((wall, cpu, grown))
    return {
        mode: tuple(statistics.median(v[i] for v in values) for i in range(3))  # type: ignore[misc]
        for mode, values in found.items()
    }


# -- SQLite ------------------------------------------------------------------------------------


def sqlite_bytes(path: Path, tables: tuple[str, ...]) -> int:
    connection = sqlite3.connect(path)
    try:
        names = [
            row[0]
            for row in connection.execute(
                f"SELECT name FROM sqlite_master WHERE tbl_name IN ({','.join('?' * len(tables))})",
                tables,
            )
        ]
        marks = ",".join("?" * len(names))
        row = connection.execute(
            f"SELECT SUM(pgsize) FROM dbstat WHERE name IN ({marks})", names
        ).fetchone()
        return int(row[0] or 0)
    finally:
        connection.close()


def sqlite_limit(path: Path, texts: list[str], forks: int) -> tuple[float, float, float, float]:
    """Copy: median seconds and bytes per INSERT ... SELECT of the session's rows; share:
    the same for one pointer row."""
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=NORMAL")
    c.execute(
        "CREATE TABLE m (session_id TEXT, seq INTEGER, content TEXT, "
        "PRIMARY KEY (session_id, seq)) WITHOUT ROWID"
    )
    c.execute("CREATE TABLE f (id TEXT PRIMARY KEY, parent TEXT, upto INTEGER)")
    c.execute("BEGIN")
    c.executemany("INSERT INTO m VALUES ('src', ?, ?)", enumerate(texts, 1))
    c.execute("COMMIT")
    c.close()
    copies, shares = [], []
    before = sqlite_bytes(path, ("m",))
    c = sqlite3.connect(path, isolation_level=None)
    for n in range(forks):
        started = time.perf_counter()
        c.execute("BEGIN IMMEDIATE")
        c.execute(f"INSERT INTO m SELECT 'fork{n}', seq, content FROM m WHERE session_id = 'src'")
        c.execute("COMMIT")
        copies.append(time.perf_counter() - started)
        started = time.perf_counter()
        c.execute("BEGIN IMMEDIATE")
        c.execute("INSERT INTO f VALUES (?, 'src', ?)", (f"fork{n}", len(texts)))
        c.execute("COMMIT")
        shares.append(time.perf_counter() - started)
    c.close()
    copy_bytes = (sqlite_bytes(path, ("m",)) - before) / forks
    share_bytes = sqlite_bytes(path, ("f",)) / forks
    return statistics.median(copies), copy_bytes, statistics.median(shares), share_bytes


# -- PostgreSQL --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def postgres_database(admin_url: str) -> AsyncIterator[str | None]:
    """A fresh database on the server (its URL), or None when the server is unreachable."""
    import asyncpg

    name = f"threadline_bench_fork_{secrets.token_hex(4)}"
    try:
        conn = await asyncpg.connect(admin_url, timeout=5)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
        print(f"postgres skipped: {type(exc).__name__}: {exc}")
        yield None
        return
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def postgres_bytes(url: str, tables: tuple[str, ...]) -> int:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        total = 0
        for table in tables:
            found = await conn.fetchval("SELECT to_regclass($1)", table)
            if found is not None:
                total += await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
        return total
    finally:
        await conn.close()


async def postgres_limit(
    url: str, texts: list[str], forks: int
) -> tuple[float, float, float, float]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "CREATE TABLE m (session_id text, seq bigint, content text, "
            "PRIMARY KEY (session_id, seq));"
            "CREATE TABLE f (id text PRIMARY KEY, parent text, upto bigint)"
        )
        await conn.copy_records_to_table(
            "m", records=[("src", i, t) for i, t in enumerate(texts, 1)]
        )
        await conn.execute("VACUUM ANALYZE m")
        before = await postgres_bytes(url, ("m",))
        empty = await postgres_bytes(url, ("f",))
        copies, shares = [], []
        for n in range(forks):
            started = time.perf_counter()
            await conn.execute(
                f"INSERT INTO m SELECT 'fork{n}', seq, content FROM m WHERE session_id = 'src'"
            )
            copies.append(time.perf_counter() - started)
            started = time.perf_counter()
            await conn.execute("INSERT INTO f VALUES ($1, 'src', $2)", f"fork{n}", len(texts))
            shares.append(time.perf_counter() - started)
        copy_bytes = (await postgres_bytes(url, ("m",)) - before) / forks
        share_bytes = (await postgres_bytes(url, ("f",)) - empty) / forks
        return statistics.median(copies), copy_bytes, statistics.median(shares), share_bytes
    finally:
        await conn.close()


# -- main --------------------------------------------------------------------------------------


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def fmt_bytes(n: float) -> str:
    return f"{n / 1e6:,.2f} MB" if n >= 1e5 else f"{n / 1e3:,.1f} kB"


async def run_store(
    label: str,
    url: str,
    texts: list[str],
    forks: int,
    size: Any,
    limit: Any,
    prepare: Any = None,
    checkpoint_texts: list[str] | None = None,
) -> list[tuple[str, ...]]:
    store = await threadline.connect(url)
    try:
        session, last = await build(store, texts)
        checkpoint = None
        if checkpoint_texts:
            checkpoint = await build_graph_session(store, checkpoint_texts)
        if prepare is not None:
            await prepare()
        seconds, grown = await measure_forks(store, session, last, forks, size)
        at_checkpoint = {}
        if checkpoint is not None:
            at_checkpoint = await measure_checkpoint_forks(store, checkpoint, forks, size)
    finally:
        await store.close()
    copy_s, copy_b, share_s, share_b = await limit()
    print(f"{label}: fork {fmt_ms(seconds)}, {fmt_bytes(grown)} per fork")
    checkpoint_rows: list[tuple[str, ...]] = []
    if at_checkpoint:
        (s_wall, s_cpu, s_bytes), (c_wall, c_cpu, c_bytes) = (
            at_checkpoint["shared"],
            at_checkpoint["copied"],
        )
        n = len(checkpoint_texts or ())
        for what, wall, cpu, grew in (
            ("at a checkpoint: now", s_wall, s_cpu, s_bytes),
            ("at a checkpoint: copying (before)", c_wall, c_cpu, c_bytes),
        ):
            print(
                f"{label}: fork of a {n:,}-message graph session {what}: {fmt_ms(wall)} "
                f"(CPU {fmt_ms(cpu)}), {fmt_bytes(grew)} per fork"
            )
        checkpoint_rows = [
            (
                label,
                f"at a checkpoint ({n:,} messages): now / copying",
                f"{fmt_ms(s_wall)} / {fmt_ms(c_wall)} (CPU {fmt_ms(s_cpu)} / {fmt_ms(c_cpu)})",
                f"{fmt_bytes(s_bytes)} / {fmt_bytes(c_bytes)}",
                ratio(s_wall, c_wall),
                ratio(s_bytes, c_bytes),
            )
        ]
    return [
        *checkpoint_rows,
        (label, "fork_session", fmt_ms(seconds), fmt_bytes(grown), "", ""),
        (
            label,
            "limit: INSERT ... SELECT",
            fmt_ms(copy_s),
            fmt_bytes(copy_b),
            ratio(seconds, copy_s),
            ratio(grown, copy_b),
        ),
        (
            label,
            "limit: one pointer row",
            fmt_ms(share_s),
            fmt_bytes(share_b),
            ratio(seconds, share_s),
            ratio(grown, share_b),
        ),
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--forks", type=int, default=5)
    parser.add_argument("--size", type=int, default=400)
    parser.add_argument("--checkpoint-messages", type=int, default=2_000)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    texts = pseudo_english(args.messages, args.size)
    graph_texts = texts[: args.checkpoint_messages]
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fork.db"
        limit_path = Path(tmp) / "limit.db"

        async def sqlite_size() -> int:
            return sqlite_bytes(path, SQLITE_TABLES)

        async def sqlite_floor() -> tuple[float, float, float, float]:
            return sqlite_limit(limit_path, texts, args.forks)

        rows += await run_store(
            "sqlite",
            f"sqlite:///{path}",
            texts,
            args.forks,
            sqlite_size,
            sqlite_floor,
            checkpoint_texts=graph_texts,
        )
    if not args.skip_postgres:
        async with postgres_database(args.postgres) as pg_url:
            if pg_url is not None:
                url: str = pg_url

                async def pg_size() -> int:
                    return await postgres_bytes(url, ("entity_message",))

                async def pg_floor() -> tuple[float, float, float, float]:
                    return await postgres_limit(url, texts, args.forks)

                async def pg_analyze() -> None:
                    # The statistics a live database has (autovacuum): without them the
                    # planner checks a batch's ids by reading the whole table, and each
                    # fork of a fresh bulk load takes longer than the last (3 s, 4.3 s,
                    # 5.3 s for the first three at 10,000 messages).
                    import asyncpg

                    conn = await asyncpg.connect(url)
                    try:
                        await conn.execute("ANALYZE")
                    finally:
                        await conn.close()

                rows += await run_store(
                    "postgres",
                    url,
                    texts,
                    args.forks,
                    pg_size,
                    pg_floor,
                    pg_analyze,
                    checkpoint_texts=graph_texts,
                )
    print_table(
        f"fork_session of a {args.messages:,}-message session at its last message "
        f"({args.size}-byte texts; median of {args.forks} forks)\n{environment()}",
        ["store", "what", "time", "bytes per fork", "time ratio", "bytes ratio"],
        rows,
    )


if __name__ == "__main__":
    asyncio.run(main())
