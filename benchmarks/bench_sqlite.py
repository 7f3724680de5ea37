#!/usr/bin/env python
"""How fast is threadline-sqlite? Against the physical limit and raw ``sqlite3``.

    python benchmarks/bench_sqlite.py            # everything (builds 1,000,000-message sessions)
    python benchmarks/bench_sqlite.py --quick    # skips the 1,000,000-message sessions
    python benchmarks/bench_sqlite.py --checkpoint-writes   # LangGraph-style checkpoint writes only

Workloads (each on a fresh file, in WAL mode, at ``synchronous=full`` and at the
store's default ``synchronous=normal``; messages are 400 bytes of distinct
pseudo-English each, built before timing):

* **W1** append 2,000 messages one at a time, each its own durable transaction;
* **W2** append 10,000 messages in batches of 100;
* **W3** load the last 20 messages (10 rounds) of a 10,000-message session, p50/p95
  over many reads, and again on a 1,000,000-message session.

Rows, in every table:

* **limit**: what the database itself costs for the same logical work, the reference
  of every ratio: a minimal table ``(session_id, seq, role, content)`` with one index
  on ``(session_id, seq)``, the same PRAGMAs, parameter tuples built before timing,
  one transaction per append or per batch, and ``SELECT role, content ... ORDER BY
  seq DESC LIMIT 20`` for the window;
* **raw (store's SQL)**: raw ``sqlite3`` running the store's own schema and
  statements with pre-built tuples (what SQLite costs for the store's layout);
* **threadline-sqlite** through ``threadline.connect(url)`` and the ``Store`` facade;
* the in-memory store (the threadline API with no I/O) and, when ``openai-agents`` is
  installed, its ``SQLiteSession`` (SQLite's default ``synchronous=full`` only).

``--checkpoint-writes`` measures only a LangGraph chat step's checkpoint writes (three
records, each a delta on the last, and two appends to a record's state) on two stores in
one process, interleaved: checkpoint writes on the loop (``InlineWriter``, the default at
``normal``) and the same store with them handed to the writer thread; wall and CPU per
step, each run's ratio and the median of the runs.

Also printed: bytes per stored message, the event loop's stalls while store calls
run (a loop-lag probe, warm and with a cold page cache), the cost of one hand-off to
the store's worker thread, of the ``Store`` facade, and of ``import threadline``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
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

from _common import LoopLag, environment, import_cost, percentile, print_table, ratio, us

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
CONTENT_BYTES = 400
USER = new_id()
"""Every benchmark message carries this user id, as the agent runtime's messages do."""
BUMP = f"{BUMP_SEQ} RETURNING last_seq, key"
KEY, SEQ = sqlite_rows.MESSAGE_KEY, sqlite_rows.MESSAGE_SEQ
GOALS = {("W1", "full"): 0.85, ("W1", "normal"): 0.4, ("W2", "full"): 0.7, ("W2", "normal"): 0.7}
"""Issue #13: the store's rate over the limit's, at least."""
W3_GOAL = 2.0  # store p50 / limit p50, at most
BYTES_GOAL = 1.3  # store bytes per message / limit's, at most
LIMIT_SCHEMA = (
    "CREATE TABLE message (session_id TEXT, seq INTEGER, role TEXT, content TEXT)",
    "CREATE INDEX message_session_seq ON message (session_id, seq)",
)
LIMIT_INSERT = "INSERT INTO message (session_id, seq, role, content) VALUES (?, ?, ?, ?)"
LIMIT_WINDOW = "SELECT role, content FROM message WHERE session_id = ? ORDER BY seq DESC LIMIT 20"
_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "this",
    "are",
    "or",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "they",
    "you",
    "were",
    "her",
    "she",
    "there",
    "been",
    "one",
    "all",
    "we",
    "their",
    "has",
    "would",
    "when",
    "if",
    "so",
    "what",
    "out",
    "up",
    "about",
    "who",
    "them",
    "some",
    "could",
    "him",
    "into",
    "its",
    "then",
    "two",
    "more",
    "these",
    "time",
    "very",
    "your",
    "may",
    "first",
    "well",
    "water",
    "like",
    "other",
    "how",
    "people",
    "over",
    "only",
    "little",
    "after",
    "words",
    "long",
    "called",
    "just",
    "where",
    "most",
    "know",
    "get",
    "through",
    "back",
    "much",
    "before",
    "good",
    "new",
    "write",
    "our",
    "used",
    "me",
    "man",
    "too",
    "any",
    "day",
    "same",
    "right",
    "look",
    "think",
    "also",
    "around",
    "another",
    "came",
    "come",
    "work",
    "three",
    "word",
    "must",
    "because",
    "does",
    "part",
    "even",
    "place",
    "old",
    "great",
    "tell",
    "following",
    "small",
    "set",
    "large",
]
_texts = random.Random(13)


def text(n: int = CONTENT_BYTES) -> str:
    """``n`` bytes of pseudo-English, different every call (ASCII: bytes == characters)."""
    choice, words, size = _texts.choice, [], 0
    while size < n:
        word = choice(_WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)[:n].capitalize()


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


def raw_connection(path: Path, synchronous: str, *, limit: bool = False) -> sqlite3.Connection:
    """A plain sqlite3 connection with the store's PRAGMAs, on the store's schema (or the
    limit's minimal one)."""
    connection = sqlite3.connect(path, isolation_level=None, cached_statements=256)
    connection.execute("PRAGMA busy_timeout = 5000")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute(f"PRAGMA synchronous = {synchronous}")
    if limit:
        if connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
            for statement in LIMIT_SCHEMA:
                connection.execute(statement)
        return connection
    connection.execute("PRAGMA foreign_keys = ON")
    migrations.migrate(connection)
    return connection


def bytes_per_message(path: Path, count: int) -> float:
    """The file's used bytes (WAL checkpointed into it, free pages left out) per message."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        free = connection.execute("PRAGMA freelist_count").fetchone()[0]
        size = connection.execute("PRAGMA page_size").fetchone()[0]
    finally:
        connection.close()
    return (pages - free) * size / count


def new_session_row(connection: sqlite3.Connection) -> tuple[str, str]:
    session = Session(tenant_id=new_id())
    connection.execute(
        f"INSERT INTO entity_session ({sqlite_rows.SESSION_COLUMNS}) VALUES ({','.join('?' * 8)})",
        sqlite_rows.session_row(session),
    )
    return session.id, session.tenant_id


def role(i: int) -> str:
    return "user" if i % 2 == 0 else "assistant"


def message_tuples(n: int, start: int = 0) -> list[list[Any]]:
    """Rows in STORED_COLUMNS order (session key and seq filled in later), alternating
    user/assistant."""
    now = time.time_ns() // 1000
    return [
        [None, new_id(), USER, None, None, role(start + i), text(), None, None, None,
         "complete", "{}", now]
        for i in range(n)
    ]  # fmt: skip


def limit_tuples(session_id: str, n: int, start: int = 0) -> list[tuple[str, int, str, str]]:
    """The limit's rows: ``(session_id, seq, role, content)``."""
    return [(session_id, start + i + 1, role(start + i), text()) for i in range(n)]


def messages(session: Session, n: int) -> list[Message]:
    return [
        Message(session_id=session.id, tenant_id=session.tenant_id, user_id=USER,
                role=role(i), content=text())
        for i in range(n)
    ]  # fmt: skip


def agent_items(n: int) -> list[dict[str, str]]:
    return [{"role": role(i), "content": text()} for i in range(n)]


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
        self.rows = message_tuples(self.count)

    async def append(self, start: int, stop: int) -> None:
        execute, executemany = self.connection.execute, self.connection.executemany
        session_id, tenant_id, rows = self.session_id, self.tenant_id, self.rows
        if self.batch == 1:
            for row in rows[start:stop]:
                execute("BEGIN IMMEDIATE")
                bumped = execute(BUMP, (1, time.time_ns() // 1000, session_id, tenant_id))
                row[SEQ], row[KEY] = bumped.fetchone()
                execute(INSERT_MESSAGE, row)
                execute("COMMIT")
            return
        for i in range(start, stop, self.batch):
            chunk = rows[i : min(stop, i + self.batch)]
            execute("BEGIN IMMEDIATE")
            last = execute(BUMP, (len(chunk), time.time_ns() // 1000, session_id, tenant_id))
            seq, key = last.fetchone()
            seq -= len(chunk)
            for row in chunk:
                seq += 1
                row[SEQ], row[KEY] = seq, key
            executemany(INSERT_MESSAGE, chunk)
            execute("COMMIT")

    async def close(self) -> None:
        self.connection.close()


class LimitAppender(Appender):
    """The limit: the minimal table, one transaction per append or per batch."""

    name = "limit"

    def __init__(self, count: int, batch: int, path: Path, synchronous: str) -> None:
        super().__init__(count, batch)
        self.path, self.synchronous = path, synchronous

    async def open(self) -> None:
        self.connection = raw_connection(self.path, self.synchronous, limit=True)
        self.rows = limit_tuples(new_id(), self.count)

    async def append(self, start: int, stop: int) -> None:
        execute, executemany, rows = self.connection.execute, self.connection.executemany, self.rows
        if self.batch == 1:
            for row in rows[start:stop]:
                execute("BEGIN IMMEDIATE")
                execute(LIMIT_INSERT, row)
                execute("COMMIT")
            return
        for i in range(start, stop, self.batch):
            execute("BEGIN IMMEDIATE")
            executemany(LIMIT_INSERT, rows[i : min(stop, i + self.batch)])
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
) -> tuple[dict[tuple[str, str], float], dict[str, float]]:
    """Messages/s of every implementation, keyed by (name, synchronous), and the bytes
    per message of the limit's, the raw and the store's files (at ``normal``)."""
    appenders: dict[tuple[str, str], Appender] = {}
    paths: dict[str, Path] = {}
    if HAVE_MEMORY:
        appenders[("memory", "")] = StoreAppender(count, batch, "memory", "memory://")
    for synchronous in ("full", "normal"):
        limit_path = paths[f"limit-{synchronous}"] = work.path(f"limit-{workload}-{synchronous}")
        appenders[("limit", synchronous)] = LimitAppender(count, batch, limit_path, synchronous)
        raw_path = paths[f"raw-{synchronous}"] = work.path(f"raw-{workload}-{synchronous}")
        appenders[("raw", synchronous)] = RawAppender(count, batch, raw_path, synchronous)
        store_path = paths[f"sqlite-{synchronous}"] = work.path(f"store-{workload}-{synchronous}")
        url = f"sqlite:///{store_path}?synchronous={synchronous}"
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
    sizes = {name: bytes_per_message(paths[f"{name}-normal"], count)
             for name in ("limit", "raw", "sqlite")}  # fmt: skip
    return {key: appender.rate for key, appender in appenders.items()}, sizes


# -- W3: the window --------------------------------------------------------------------------


def build_session(path: Path, count: int) -> tuple[str, str]:
    """A session of ``count`` messages (system prompt, then user/assistant rounds), fast."""
    connection = raw_connection(path, "off")
    session_id, tenant_id = new_session_row(connection)
    key = connection.execute("SELECT key FROM entity_session WHERE id = ?", (session_id,))
    key = key.fetchone()[0]
    connection.execute("BEGIN IMMEDIATE")
    step = 100_000
    for start in range(0, count, step):
        rows = message_tuples(min(step, count - start), start)
        for i, row in enumerate(rows):
            row[SEQ], row[KEY] = start + i + 1, key
        if start == 0:
            rows[0][SEQ + 1], rows[0][SEQ + 2] = "system", "You are a helpful assistant."
        connection.executemany(INSERT_MESSAGE, rows)
    connection.execute("UPDATE entity_session SET last_seq = ? WHERE id = ?", (count, session_id))
    connection.execute("COMMIT")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return session_id, tenant_id


def build_limit_session(path: Path, count: int) -> str:
    """The limit's session of ``count`` messages."""
    connection = raw_connection(path, "off", limit=True)
    session_id = new_id()
    connection.execute("BEGIN IMMEDIATE")
    step = 100_000
    for start in range(0, count, step):
        connection.executemany(
            LIMIT_INSERT, limit_tuples(session_id, min(step, count - start), start)
        )
    connection.execute("COMMIT")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return session_id


def build_agents_session(path: Path, count: int) -> str:
    assert SQLiteSession is not None
    session_id = new_id()
    SQLiteSession(session_id, path).close()  # creates its schema
    connection = sqlite3.connect(path)
    import json

    connection.execute("INSERT INTO agent_sessions (session_id) VALUES (?)", (session_id,))
    connection.executemany(
        "INSERT INTO agent_messages (session_id, message_data) VALUES (?, ?)",
        ((session_id, json.dumps({"role": role(i), "content": text()})) for i in range(count)),
    )
    connection.commit()
    connection.close()
    return session_id


Reader = Callable[[], Awaitable[object]]


SessionFile = tuple[Path, str, str]  # the file, its tenant and session


async def window_readers(
    work: Workdir,
    count: int,
    closers: list[Callable[[], Awaitable[None]]],
    with_memory: bool,
    files: dict[int, SessionFile],
) -> dict[str, Reader]:
    """A read of the last 20 messages for every implementation, on a ``count``-message session."""
    path = work.path(f"window-{count}")
    session_id, tenant_id = build_session(path, count)
    files[count] = (path, tenant_id, session_id)
    readers: dict[str, Reader] = {}

    limit_path = work.path(f"limit-window-{count}")
    limit_session = build_limit_session(limit_path, count)
    limit = raw_connection(limit_path, "normal", limit=True)
    assert len(limit.execute(LIMIT_WINDOW, (limit_session,)).fetchall()) == 2 * W3_ROUNDS

    async def limit_read() -> object:
        return limit.execute(LIMIT_WINDOW, (limit_session,)).fetchall()

    async def close_limit() -> None:
        limit.close()

    readers["limit"] = limit_read
    closers.append(close_limit)

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
    work: Workdir, sizes: list[int], reads: int, rounds: int, files: dict[int, SessionFile]
) -> dict[int, dict[str, list[float]]]:
    """Latency samples per session size and implementation, all read in alternation."""
    closers: list[Callable[[], Awaitable[None]]] = []
    try:
        readers = {
            size: await window_readers(work, size, closers, size <= W3_SMALL, files)
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


# -- loop lag ----------------------------------------------------------------------------------


def evict(path: Path) -> None:
    """Drop the database's pages from the OS page cache (what a cold start reads)."""
    for name in (path, Path(f"{path}-wal")):
        if name.exists():
            fd = os.open(name, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


async def loop_stalls(file: SessionFile, calls: int, cold: int) -> dict[str, list[float]]:
    """The loop's longest stall during each store call, per kind of call, on the session
    of ``file`` (warm), and during the first window read after a cold start (``cold``
    times: the OS page cache dropped for the file, a new store opened)."""
    path, tenant, session_id = file
    found: dict[str, list[float]] = {}
    store = await threadline.connect(f"sqlite:///{path}")
    try:
        other = await store.create_session(Session(tenant_id=tenant))
        one = iter(messages(other, calls))
        batches = iter([messages(other, W2_BATCH) for _ in range(max(1, calls // 20))])
        turns = iter([messages(other, 10) for _ in range(calls)])
        kinds: dict[str, Callable[[], Awaitable[object]]] = {
            "load_window(10 rounds)": lambda: store.load_window(tenant, session_id, W3_ROUNDS),
            "count_messages": lambda: store.count_messages(tenant, session_id),
            "get_session": lambda: store.get_session(tenant, session_id),
            "save_message": lambda: store.save_message(next(one)),
            "save_messages(10)": lambda: store.save_messages(next(turns)),
            "save_messages(100)": lambda: store.save_messages(next(batches)),
        }
        async with LoopLag() as lag:
            idle = []
            for _ in range(200):
                await asyncio.sleep(0)
                lag.worst()
                await asyncio.sleep(0)
                idle.append(lag.worst())
            found["(no store call)"] = idle
            for name, call in kinds.items():
                n = max(1, calls // 20) if name == "save_messages(100)" else calls
                stalls = found.setdefault(name, [])
                for _ in range(n):
                    await asyncio.sleep(0)
                    lag.worst()
                    await call()  # an inline read returns without letting the ticker run:
                    await asyncio.sleep(0)  # its turn after the call records the stall
                    stalls.append(lag.worst())
    finally:
        await store.close()
    stalls = found.setdefault("load_window, cold start", [])
    for _ in range(cold):
        evict(path)
        store = await threadline.connect(f"sqlite:///{path}")
        try:
            async with LoopLag() as lag:
                await asyncio.sleep(0)
                lag.worst()
                await store.load_window(tenant, session_id, W3_ROUNDS)
                await asyncio.sleep(0)
                stalls.append(lag.worst())
        finally:
            await store.close()
    return found


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


# -- checkpoint writes (--checkpoint-writes) ---------------------------------------------------


async def _checkpoint_store(path: Path, inline: bool) -> tuple[threadline.Store, Session]:
    store = await threadline.connect(f"sqlite:///{path}")
    plugin = store.primary
    assert isinstance(plugin, SQLiteStore)
    if not inline:  # the same store, its checkpoint writes handed to the writer thread

        async def to_thread(writer: Any, hook: str, operation: Any, args: Any) -> Any:
            return await plugin._writer.submit(operation, *args)

        plugin._write_checkpoint = to_thread  # type: ignore[method-assign]
    session = await store.create_session(Session(tenant_id=new_id()))
    return store, session


async def _checkpoint_step(store: threadline.Store, session: Session, kept: dict[str, Any],
                           i: int) -> None:  # fmt: skip
    """What a LangGraph chat step writes: three records (input, model, end), each a delta
    on the last, and two appends of pending writes to a record's state."""
    from threadline import Checkpoint

    def message(role: str) -> Message:
        return Message(session_id=session.id, tenant_id=session.tenant_id, role=role,  # type: ignore[arg-type]
                       content=f"{role} {i} " + text(360))  # fmt: skip

    t, s = session.tenant_id, session.id
    history = (*kept["history"], message("user"))
    parent = kept["last"]
    for n, state in enumerate(({"v": i, "s": text(300)}, {"v": i, "s": text(300)})):
        made = await store.create_checkpoint(Checkpoint(
            tenant_id=t, session_id=s, history=history, parent_id=parent,
            state={"pw": [], "c": state},
        ))  # fmt: skip
        await store.append_checkpoint_state(t, made.id, "pw", [f"channel {n}", {"k": i}])
        parent = made.id
    history = (*history, message("assistant"))
    last = await store.create_checkpoint(Checkpoint(
        tenant_id=t, session_id=s, history=history, parent_id=parent, state={"pw": []},
    ))  # fmt: skip
    kept["history"], kept["last"] = history, last.id


async def checkpoint_writes(work: Workdir, steps: int, runs: int) -> None:
    """Inline against the writer thread, interleaved in chunks of 10 steps, ``runs`` times."""
    ratios: dict[str, list[float]] = {"wall": [], "cpu": []}
    for run_no in range(runs):
        systems = {}
        for name, inline in (("inline", True), ("writer thread", False)):
            store, session = await _checkpoint_store(work.path(f"ckpt-{run_no}-{name[:6]}"), inline)
            systems[name] = (store, session, {"history": (), "last": None})
        spent = {name: [0.0, 0.0] for name in systems}
        names = list(systems)
        for chunk in range(steps // 10):
            for name in names if chunk % 2 else names[::-1]:
                store, session, kept = systems[name]
                wall, cpu = time.perf_counter(), time.process_time()
                for k in range(10):
                    await _checkpoint_step(store, session, kept, chunk * 10 + k)
                if chunk >= 2:  # the first chunks warm both
                    spent[name][0] += time.perf_counter() - wall
                    spent[name][1] += time.process_time() - cpu
        counted = (steps // 10 - 2) * 10
        for store, _, _ in systems.values():
            await store.close()
        (iw, ic), (tw, tc) = spent["inline"], spent["writer thread"]
        ratios["wall"].append(tw / iw)
        ratios["cpu"].append(tc / ic)
        print(f"run {run_no + 1} (load {os.getloadavg()[0]:.1f}): inline {iw / counted * 1e3:.2f} "
              f"ms wall / {ic / counted * 1e3:.2f} ms CPU a step, writer thread "
              f"{tw / counted * 1e3:.2f} / {tc / counted * 1e3:.2f} ms")  # fmt: skip
    for kind, values in ratios.items():
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(f"writer thread / inline, {kind}: median {sorted(values)[len(values) // 2]:.2f}x "
              f"(runs {shown})")  # fmt: skip


# -- main --------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    work = Workdir(args.dir)
    print(f"threadline-sqlite benchmark: {environment()}")
    print(f"files in {work.root}" + ("" if args.keep else " (removed at the end)"))
    if args.checkpoint_writes:
        try:
            await checkpoint_writes(work, args.steps, 3)
        finally:
            if not args.keep:
                work.cleanup()
        return 0
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
        figures: dict[str, dict[str, float | str]] = {}  # --json: issue #13's rows
        append_rows: dict[str, list[list[object]]] = {"W1": [], "W2": []}
        sizes_of: dict[str, float] = {}
        for workload, count, batch in (("W1", args.w1, 1), ("W2", args.w2, W2_BATCH)):
            rate, sizes_of = await append_rates(work, workload, count, batch, args.rounds)
            for synchronous in ("full", "normal"):
                limit, raw = rate[("limit", synchronous)], rate[("raw", synchronous)]
                ours = rate[("sqlite", synchronous)]
                agents = rate.get(("agents", synchronous))
                memory = rate.get(("memory", ""))
                need = GOALS[(workload, synchronous)]
                figures[f"{workload} {synchronous}"] = {
                    "limit": limit, "store": ours, "ratio": ours / limit, "goal": f">= {need}"
                }  # fmt: skip
                targets.append((f"{workload} {synchronous}: store/limit {ours / limit:.2f}x >= "
                                f"{need}x", ours / limit >= need))  # fmt: skip
                label = synchronous + (" (default)" if synchronous == "normal" else "")
                append_rows[workload].append([
                    label, f"{limit:,.0f}", f"{raw:,.0f}", ratio(raw, limit), f"{ours:,.0f}",
                    ratio(ours, limit), f">= {need}x", ratio(ours, raw),
                    f"{memory:,.0f}" if memory else "-",
                    f"{agents:,.0f}" if agents else ("-" if SQLiteSession else "not installed"),
                ])  # fmt: skip
        headers = ["synchronous", "limit", "raw (store's SQL)", "raw/limit", "threadline-sqlite",
                   "store/limit", "goal", "store/raw", "memory store",
                   "openai-agents SQLiteSession"]  # fmt: skip
        print_table(f"W1: append {args.w1:,} messages one per transaction (messages/s)",
                    headers, append_rows["W1"])  # fmt: skip
        print_table(f"W2: append {args.w2:,} messages in batches of {W2_BATCH} (messages/s)",
                    headers, append_rows["W2"])  # fmt: skip
        limit_b, raw_b, ours_b = sizes_of["limit"], sizes_of["raw"], sizes_of["sqlite"]
        print_table(
            f"Bytes per stored message ({args.w2:,} messages of {CONTENT_BYTES} bytes, "
            "file after a WAL checkpoint, free pages left out)",
            ["limit", "raw (store's SQL)", "threadline-sqlite", "store/limit", "goal"],
            [[f"{limit_b:,.0f}", f"{raw_b:,.0f}", f"{ours_b:,.0f}", ratio(ours_b, limit_b),
              f"<= {BYTES_GOAL}x"]],
        )  # fmt: skip
        figures["bytes"] = {"limit": limit_b, "store": ours_b, "ratio": ours_b / limit_b,
                            "goal": f"<= {BYTES_GOAL}"}  # fmt: skip
        targets.append((f"bytes per message: store/limit {ours_b / limit_b:.2f}x <= "
                        f"{BYTES_GOAL}x", ours_b / limit_b <= BYTES_GOAL))  # fmt: skip

        sizes = [W3_SMALL] if args.quick else [W3_SMALL, W3_LARGE]
        window_rows = []
        files: dict[int, SessionFile] = {}
        windows = await window_latencies(work, sizes, args.reads, args.rounds, files)
        for size in sizes:
            res = windows[size]
            limit_p50, ours_p50 = percentile(res["limit"], 50), percentile(res["sqlite"], 50)
            met = ours_p50 <= W3_GOAL * limit_p50
            figures[f"W3 {size}"] = {"limit": limit_p50, "store": ours_p50,
                                     "ratio": ours_p50 / limit_p50,
                                     "goal": f"<= {W3_GOAL}"}  # fmt: skip
            targets.append((f"W3 {size:,}: store p50 {us(ours_p50)} µs = "
                            f"{ours_p50 / limit_p50:.2f}x limit {us(limit_p50)} µs "
                            f"<= {W3_GOAL}x", met))  # fmt: skip

            def cell(name: str, res: dict[str, list[float]] = res) -> str:
                if name not in res:
                    return "-"
                return f"{us(percentile(res[name], 50))} / {us(percentile(res[name], 95))}"

            window_rows.append([f"{size:,}", cell("limit"), cell("raw"), cell("sqlite"),
                                ratio(ours_p50, limit_p50), f"<= {W3_GOAL}x",
                                ratio(ours_p50, percentile(res["raw"], 50)), cell("memory"),
                                cell("openai-agents")])  # fmt: skip
        print_table(
            f"W3: load the last 20 messages ({W3_ROUNDS} rounds + system prompt; the limit: "
            f"20 rows), p50 / p95 µs over {args.reads:,} reads",
            ["session size", "limit", "raw (store's SQL)", "threadline-sqlite", "store/limit p50",
             "goal", "store/raw p50", "memory store", "openai-agents get_items(20)"],
            window_rows,
        )  # fmt: skip

        probe = files[max(files)]
        stalls = await loop_stalls(probe, args.lag_calls, args.cold)
        lag_rows = []
        for name, values in stalls.items():
            p99 = percentile(values, 99)
            lag_rows.append([name, f"{len(values):,}", us(percentile(values, 50)), us(p99),
                             us(max(values))])  # fmt: skip
            if not name.startswith("("):
                targets.append((f"loop stall p99 during {name} {us(p99)} µs < 1,000 µs",
                                p99 < 1e-3))  # fmt: skip
        print_table(
            f"Loop lag: the event loop's longest stall during each call, on the "
            f"{max(files):,}-message session (µs)",
            ["call", "calls", "p50", "p99", "max"],
            lag_rows,
        )  # fmt: skip

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
        if args.json:
            await asyncio.to_thread(Path(args.json).write_text, json.dumps(figures, indent=1))
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
    parser.add_argument("--lag-calls", type=int, default=1000, help="calls per kind, loop lag")
    parser.add_argument("--cold", type=int, default=20, help="cold starts in the loop-lag probe")
    parser.add_argument("--dir", help="where to put the database files (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the database files")
    parser.add_argument("--no-import", action="store_true", help="skip the import-cost lines")
    parser.add_argument("--json", help="also write the goal rows (limit, store, ratio) here")
    parser.add_argument(
        "--checkpoint-writes",
        action="store_true",
        help="only LangGraph-style checkpoint writes: inline vs writer thread",
    )
    parser.add_argument("--steps", type=int, default=300, help="steps of --checkpoint-writes")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
