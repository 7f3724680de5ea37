#!/usr/bin/env python
"""How fast is threadline-sqlite? Against raw ``sqlite3`` running the same statements.

    python benchmarks/bench_sqlite.py            # everything (builds a 1,000,000-message session)
    python benchmarks/bench_sqlite.py --quick    # skips the 1,000,000-message session

Workloads (each on a fresh file, in WAL mode, at ``synchronous=full`` and at the
store's default ``synchronous=normal``):

* **W1** append 2,000 messages one at a time, each its own durable transaction;
* **W2** append 10,000 messages in batches of 100;
* **W3** load the last 20 messages (10 rounds) of a 10,000-message session, p50/p95
  over many reads, and again on a 1,000,000-message session.

Beside the store: raw ``sqlite3`` executing the store's own SQL with the same
PRAGMAs and pre-built parameter tuples (what SQLite itself costs), the in-memory
store (what the threadline API costs with no I/O at all) and, when
``openai-agents`` is installed, its ``SQLiteSession`` (which always runs at
SQLite's default ``synchronous=full``). Also printed: the cost of one hand-off to
the store's worker thread, of the ``Store`` facade, and of ``import threadline``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("THREADLINE_LOAD_PLUGINS", "threadline-sqlite,threadline-memory")

from _common import environment, import_cost, percentile, print_table, ratio, us

import threadline
from threadline import Message, Session
from threadline.ids import new_id
from threadline_sqlite import SQLiteStore, migrations
from threadline_sqlite import rows as sqlite_rows
from threadline_sqlite.messages import INSERT_MESSAGE
from threadline_sqlite.sql import BUMP_SEQ
from threadline_sqlite.window import WINDOW

try:  # optional comparison
    from agents.memory import SQLiteSession  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    SQLiteSession = None

try:
    import threadline_memory  # noqa: F401

    HAVE_MEMORY = True
except ImportError:  # pragma: no cover
    HAVE_MEMORY = False

W1_COUNT = 2_000
W2_COUNT = 10_000
W2_BATCH = 100
W3_SMALL = 10_000
W3_LARGE = 1_000_000
W3_ROUNDS = 10  # user + assistant rounds: the last 20 messages
CONTENT = "The quick brown fox jumps over the lazy dog. " * 4
USER = new_id()
"""Every benchmark message carries this user id, as the agent runtime's messages do."""
BUMP = f"{BUMP_SEQ} RETURNING last_seq"
NEEDED = {"full": 0.8, "normal": 0.4}  # W1 targets: store rate / raw rate


# -- helpers ---------------------------------------------------------------------------------


class Workdir:
    """Fresh database paths under one temporary directory."""

    def __init__(self, root: str | None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="threadline-bench-", dir=root))
        self.count = 0

    def path(self, name: str) -> Path:
        self.count += 1
        return self.root / f"{self.count:02d}-{name}.db"

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def raw_connection(path: Path, synchronous: str) -> sqlite3.Connection:
    """A plain sqlite3 connection with the store's PRAGMAs, on the store's schema."""
    connection = sqlite3.connect(path, isolation_level=None, cached_statements=256)
    connection.execute("PRAGMA busy_timeout = 5000")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute(f"PRAGMA synchronous = {synchronous}")
    connection.execute("PRAGMA foreign_keys = ON")
    migrations.migrate(connection)
    return connection


def new_session_row(connection: sqlite3.Connection) -> tuple[str, str]:
    session = Session(tenant_id=new_id())
    connection.execute(
        f"INSERT INTO entity_session ({sqlite_rows.SESSION_COLUMNS}) VALUES ({','.join('?' * 8)})",
        sqlite_rows.session_row(session),
    )
    return session.id, session.tenant_id


def message_tuples(session_id: str, tenant_id: str, n: int, start: int = 0) -> list[list[Any]]:
    """Rows in MESSAGE_COLUMNS order (seq filled in later), alternating user/assistant."""
    now = time.time_ns() // 1000
    return [
        [new_id(), session_id, tenant_id, USER, None, None,
         "user" if (start + i) % 2 == 0 else "assistant", CONTENT, None, None, None,
         "complete", "{}", now]
        for i in range(n)
    ]  # fmt: skip


def messages(session: Session, n: int) -> list[Message]:
    return [
        Message(session_id=session.id, tenant_id=session.tenant_id, user_id=USER,
                role="user" if i % 2 == 0 else "assistant", content=CONTENT)
        for i in range(n)
    ]  # fmt: skip


def agent_items(n: int) -> list[dict[str, str]]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": CONTENT} for i in range(n)]


async def latencies(read: Callable[[], Awaitable[object]], count: int) -> list[float]:
    for _ in range(min(10, count)):
        await read()
    gc.collect()
    samples = []
    clock = time.perf_counter
    for _ in range(count):
        started = clock()
        await read()
        samples.append(clock() - started)
    return samples


# -- W1 / W2: appends ------------------------------------------------------------------------


class Appender:
    """One implementation appending to its own fresh file, a chunk of batches at a time.

    The driver alternates chunks of every implementation, so they all run under the
    same conditions (a shared machine's load drifts; back-to-back runs would not be fair).
    """

    name = ""

    def __init__(self, count: int, batch: int) -> None:
        self.count, self.batch, self.done, self.elapsed = count, batch, 0, 0.0

    async def open(self) -> None: ...

    async def append(self, start: int, stop: int) -> None: ...

    async def close(self) -> None: ...

    async def chunk(self, size: int) -> None:
        stop = min(self.count, self.done + size)
        started = time.perf_counter()
        await self.append(self.done, stop)
        self.elapsed += time.perf_counter() - started
        self.done = stop

    @property
    def rate(self) -> float:
        return self.done / self.elapsed


class RawAppender(Appender):
    """The store's own statements on a plain sqlite3 connection, parameters pre-built."""

    name = "raw"

    def __init__(self, count: int, batch: int, path: Path, synchronous: str) -> None:
        super().__init__(count, batch)
        self.path, self.synchronous = path, synchronous

    async def open(self) -> None:
        self.connection = raw_connection(self.path, self.synchronous)
        self.session_id, self.tenant_id = new_session_row(self.connection)
        self.rows = message_tuples(self.session_id, self.tenant_id, self.count)

    async def append(self, start: int, stop: int) -> None:
        execute, executemany = self.connection.execute, self.connection.executemany
        session_id, tenant_id, rows = self.session_id, self.tenant_id, self.rows
        if self.batch == 1:
            for row in rows[start:stop]:
                execute("BEGIN IMMEDIATE")
                bumped = execute(BUMP, (1, time.time_ns() // 1000, session_id, tenant_id))
                row[5] = bumped.fetchone()[0]
                execute(INSERT_MESSAGE, row)
                execute("COMMIT")
            return
        for i in range(start, stop, self.batch):
            chunk = rows[i : min(stop, i + self.batch)]
            execute("BEGIN IMMEDIATE")
            last = execute(BUMP, (len(chunk), time.time_ns() // 1000, session_id, tenant_id))
            seq = last.fetchone()[0] - len(chunk)
            for row in chunk:
                seq += 1
                row[5] = seq
            executemany(INSERT_MESSAGE, chunk)
            execute("COMMIT")

    async def close(self) -> None:
        self.connection.close()


class StoreAppender(Appender):
    """``Store.save_message`` / ``save_messages`` through ``threadline.connect(url)``."""

    def __init__(self, count: int, batch: int, name: str, url: str) -> None:
        super().__init__(count, batch)
        self.name, self.url = name, url

    async def open(self) -> None:
        self.store = await threadline.connect(self.url)
        self.session = await self.store.create_session(Session(tenant_id=new_id()))
        self.todo = messages(self.session, self.count)

    async def append(self, start: int, stop: int) -> None:
        if self.batch == 1:
            save = self.store.save_message
            for message in self.todo[start:stop]:
                await save(message)
            return
        for i in range(start, stop, self.batch):
            await self.store.save_messages(self.todo[i : min(stop, i + self.batch)])

    async def close(self) -> None:
        total = await self.store.count_messages(self.session.tenant_id, self.session.id)
        assert total == self.done, (total, self.done)
        await self.store.close()


class AgentsAppender(Appender):
    """openai-agents' ``SQLiteSession.add_items`` (WAL, SQLite's default synchronous=full)."""

    name = "agents"

    def __init__(self, count: int, batch: int, path: Path) -> None:
        super().__init__(count, batch)
        self.path = path

    async def open(self) -> None:
        assert SQLiteSession is not None
        self.session = SQLiteSession(new_id(), self.path)
        self.items = agent_items(self.count)

    async def append(self, start: int, stop: int) -> None:
        for i in range(start, stop, self.batch):
            await self.session.add_items(self.items[i : min(stop, i + self.batch)])

    async def close(self) -> None:
        self.session.close()


async def append_rates(
    work: Workdir, workload: str, count: int, batch: int, rounds: int
) -> dict[tuple[str, str], float]:
    """Messages/s of every implementation, keyed by (name, synchronous)."""
    appenders: dict[tuple[str, str], Appender] = {}
    if HAVE_MEMORY:
        appenders[("memory", "")] = StoreAppender(count, batch, "memory", "memory://")
    for synchronous in ("full", "normal"):
        raw_path = work.path(f"raw-{workload}-{synchronous}")
        appenders[("raw", synchronous)] = RawAppender(count, batch, raw_path, synchronous)
        url = f"sqlite:///{work.path(f'store-{workload}-{synchronous}')}?synchronous={synchronous}"
        appenders[("sqlite", synchronous)] = StoreAppender(count, batch, "sqlite", url)
    if SQLiteSession is not None:
        agents_path = work.path(f"agents-{workload}")
        appenders[("agents", "full")] = AgentsAppender(count, batch, agents_path)
    for appender in appenders.values():
        await appender.open()
    try:
        size = max(batch, count // rounds // batch * batch)
        gc.collect()
        while any(a.done < a.count for a in appenders.values()):
            for appender in appenders.values():
                if appender.done < appender.count:
                    await appender.chunk(size)
    finally:
        for appender in appenders.values():
            await appender.close()
    return {key: appender.rate for key, appender in appenders.items()}


# -- W3: the window --------------------------------------------------------------------------


def build_session(path: Path, count: int) -> tuple[str, str]:
    """A session of ``count`` messages (system prompt, then user/assistant rounds), fast."""
    connection = raw_connection(path, "off")
    session_id, tenant_id = new_session_row(connection)
    connection.execute("BEGIN IMMEDIATE")
    step = 100_000
    for start in range(0, count, step):
        rows = message_tuples(session_id, tenant_id, min(step, count - start), start)
        for i, row in enumerate(rows):
            row[5] = start + i + 1
        if start == 0:
            rows[0][6], rows[0][7] = "system", "You are a helpful assistant."
        connection.executemany(INSERT_MESSAGE, rows)
    connection.execute("UPDATE entity_session SET last_seq = ? WHERE id = ?", (count, session_id))
    connection.execute("COMMIT")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return session_id, tenant_id


def build_agents_session(path: Path, count: int) -> str:
    assert SQLiteSession is not None
    session_id = new_id()
    SQLiteSession(session_id, path).close()  # creates its schema
    connection = sqlite3.connect(path)
    import json

    payload = json.dumps({"role": "user", "content": CONTENT})
    connection.execute("INSERT INTO agent_sessions (session_id) VALUES (?)", (session_id,))
    connection.executemany(
        "INSERT INTO agent_messages (session_id, message_data) VALUES (?, ?)",
        ((session_id, payload) for _ in range(count)),
    )
    connection.commit()
    connection.close()
    return session_id


Reader = Callable[[], Awaitable[object]]


async def window_readers(
    work: Workdir, count: int, closers: list[Callable[[], Awaitable[None]]], with_memory: bool
) -> dict[str, Reader]:
    """A read of the last 20 messages for every implementation, on a ``count``-message session."""
    path = work.path(f"window-{count}")
    session_id, tenant_id = build_session(path, count)
    readers: dict[str, Reader] = {}

    connection = raw_connection(path, "normal")
    params = {"session": session_id, "tenant": tenant_id, "skip": W3_ROUNDS - 1}
    window_sql = WINDOW
    assert len(connection.execute(window_sql, params).fetchall()) == 2 * W3_ROUNDS + 1

    async def raw_read() -> object:
        return connection.execute(window_sql, params).fetchall()

    async def close_raw() -> None:
        connection.close()

    readers["raw"] = raw_read
    closers.append(close_raw)

    store = await threadline.connect(f"sqlite:///{path}")
    closers.append(store.close)
    assert len(await store.load_window(tenant_id, session_id, W3_ROUNDS)) == 2 * W3_ROUNDS + 1
    readers["sqlite"] = lambda: store.load_window(tenant_id, session_id, W3_ROUNDS)

    if with_memory and HAVE_MEMORY:
        memory = await threadline.connect("memory://")
        closers.append(memory.close)
        session = await memory.create_session(Session(tenant_id=new_id()))
        todo = messages(session, count)
        todo[0] = Message(session_id=session.id, tenant_id=session.tenant_id, role="system",
                          content="You are a helpful assistant.")  # fmt: skip
        for i in range(0, count, 1000):
            await memory.save_messages(todo[i : i + 1000])
        readers["memory"] = lambda: memory.load_window(session.tenant_id, session.id, W3_ROUNDS)

    if SQLiteSession is not None:
        agents_path = work.path(f"agents-window-{count}")
        agents = SQLiteSession(build_agents_session(agents_path, count), agents_path)

        async def close_agents() -> None:
            agents.close()

        closers.append(close_agents)
        assert len(await agents.get_items(limit=20)) == 20
        readers["openai-agents"] = lambda: agents.get_items(limit=20)
    return readers


async def window_latencies(
    work: Workdir, sizes: list[int], reads: int, rounds: int
) -> dict[int, dict[str, list[float]]]:
    """Latency samples per session size and implementation, all read in alternation."""
    closers: list[Callable[[], Awaitable[None]]] = []
    try:
        readers = {
            size: await window_readers(work, size, closers, with_memory=size <= W3_SMALL)
            for size in sizes
        }
        for by_name in readers.values():  # warm every cache and code path first
            for read in by_name.values():
                await latencies(read, 200)
        results: dict[int, dict[str, list[float]]] = {
            size: {name: [] for name in by_name} for size, by_name in readers.items()
        }
        for _ in range(rounds):
            for size, by_name in readers.items():
                for name, read in by_name.items():
                    results[size][name].extend(await latencies(read, max(1, reads // rounds)))
        return results
    finally:
        for close in closers:
            await close()


# -- overheads ---------------------------------------------------------------------------------


def _noop(connection: sqlite3.Connection) -> None:
    return None


def _nothing() -> None:
    return None


async def overheads(work: Workdir, samples: int, repeat: int) -> dict[str, float]:
    store = await threadline.connect(f"sqlite:///{work.path('overheads')}")
    try:
        plugin = store.primary
        assert isinstance(plugin, SQLiteStore)
        session = await store.create_session(Session(tenant_id=new_id()))
        t, s = session.tenant_id, session.id
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "hop": lambda: plugin.run_read(_noop),
            "to_thread": lambda: asyncio.to_thread(_nothing),
            "direct": lambda: plugin.threadline_count_messages(t, s),
            "facade": lambda: store.count_messages(t, s),
        }
        found: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(repeat):
            for name, call in calls.items():
                found[name].extend(await latencies(call, max(1, samples // repeat)))
    finally:
        await store.close()
    return {name: percentile(values, 50) for name, values in found.items()}


# -- main --------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    work = Workdir(args.dir)
    print(f"threadline-sqlite benchmark: {environment()}")
    print(f"files in {work.root}" + ("" if args.keep else " (removed at the end)"))
    try:
        over = await overheads(work, 4000, args.rounds)
        print(
            f"\nhand-off to the worker thread and back: p50 {us(over['hop'])} µs "
            f"(asyncio.to_thread: {us(over['to_thread'])} µs); "
            f"count_messages through the Store facade {us(over['facade'])} µs vs the hook "
            f"called directly {us(over['direct'])} µs "
            f"(facade + dispatch: {us(over['facade'] - over['direct'])} µs)"
        )

        targets: list[tuple[str, bool]] = []
        append_rows: dict[str, list[list[object]]] = {"W1": [], "W2": []}
        for workload, count, batch in (("W1", args.w1, 1), ("W2", args.w2, W2_BATCH)):
            rate = await append_rates(work, workload, count, batch, args.rounds)
            for synchronous in ("full", "normal"):
                raw, ours = rate[("raw", synchronous)], rate[("sqlite", synchronous)]
                agents = rate.get(("agents", synchronous))
                memory = rate.get(("memory", ""))
                need = NEEDED[synchronous] if workload == "W1" else 0.7
                targets.append((f"{workload} {synchronous}: store/raw {ours / raw:.2f}x >= "
                                f"{need}x", ours / raw >= need))  # fmt: skip
                label = synchronous + (" (default)" if synchronous == "normal" else "")
                append_rows[workload].append([
                    label, f"{raw:,.0f}", f"{ours:,.0f}", ratio(ours, raw), f">= {need}x",
                    f"{memory:,.0f}" if memory else "-",
                    f"{agents:,.0f}" if agents else ("-" if SQLiteSession else "not installed"),
                ])  # fmt: skip
        headers = ["synchronous", "raw sqlite3", "threadline-sqlite", "store/raw", "target",
                   "memory store", "openai-agents SQLiteSession"]  # fmt: skip
        print_table(f"W1: append {args.w1:,} messages one per transaction (messages/s)",
                    headers, append_rows["W1"])  # fmt: skip
        print_table(f"W2: append {args.w2:,} messages in batches of {W2_BATCH} (messages/s)",
                    headers, append_rows["W2"])  # fmt: skip

        sizes = [W3_SMALL] if args.quick else [W3_SMALL, W3_LARGE]
        window_rows = []
        p50s: dict[int, float] = {}
        windows = await window_latencies(work, sizes, args.reads, args.rounds)
        for size in sizes:
            res = windows[size]
            raw_p50, ours_p50 = percentile(res["raw"], 50), percentile(res["sqlite"], 50)
            p50s[size] = ours_p50
            met = ours_p50 <= 2 * raw_p50
            targets.append((f"W3 {size:,}: store p50 {us(ours_p50)} µs <= 2x raw "
                            f"{us(raw_p50)} µs", met))  # fmt: skip

            def cell(name: str, res: dict[str, list[float]] = res) -> str:
                if name not in res:
                    return "-"
                return f"{us(percentile(res[name], 50))} / {us(percentile(res[name], 95))}"

            window_rows.append([f"{size:,}", cell("raw"), cell("sqlite"),
                                ratio(ours_p50, raw_p50), cell("memory"),
                                cell("openai-agents")])  # fmt: skip
        print_table(
            f"W3: load the last 20 messages ({W3_ROUNDS} rounds + system prompt), "
            f"p50 / p95 µs over {args.reads:,} reads",
            ["session size", "raw sqlite3", "threadline-sqlite", "store/raw p50",
             "memory store", "openai-agents get_items(20)"],
            window_rows,
        )  # fmt: skip
        if W3_LARGE in p50s:
            growth = p50s[W3_LARGE] / p50s[W3_SMALL]
            targets.append((f"W3 p50 at 1,000,000 / at 10,000 = {growth:.2f} <= 1.2",
                            growth <= 1.2))  # fmt: skip

        if not args.no_import:
            bare = import_cost("pass")
            core = import_cost("import threadline")
            aio = import_cost("import asyncio")
            store_mod = import_cost("import threadline, threadline_sqlite.store")
            print_table(
                "Import cost (median of 15 fresh interpreters, bytecode cached)",
                ["python -c ...", "wall ms", "over bare python"],
                [["pass", f"{bare * 1e3:.1f}", "-"],
                 ["import threadline", f"{core * 1e3:.1f}", f"+{(core - bare) * 1e3:.1f} ms"],
                 ["import asyncio (any async app has it)", f"{aio * 1e3:.1f}",
                  f"+{(aio - bare) * 1e3:.1f} ms"],
                 ["import threadline, threadline_sqlite.store", f"{store_mod * 1e3:.1f}",
                  f"+{(store_mod - bare) * 1e3:.1f} ms"]],
            )  # fmt: skip

        print("\nTargets:")
        for text, met in targets:
            print(f"  [{'met' if met else 'NOT MET'}] {text}")
        return 0
    finally:
        if not args.keep:
            work.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip the 1,000,000-message session")
    parser.add_argument("--w1", type=int, default=W1_COUNT, help="messages appended in W1")
    parser.add_argument("--w2", type=int, default=W2_COUNT, help="messages appended in W2")
    parser.add_argument("--reads", type=int, default=3000, help="window reads per implementation")
    parser.add_argument(
        "--rounds",
        type=int,
        default=20,
        help="chunks each workload is split into, alternating implementations",
    )
    parser.add_argument("--dir", help="where to put the database files (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the database files")
    parser.add_argument("--no-import", action="store_true", help="skip the import-cost lines")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
