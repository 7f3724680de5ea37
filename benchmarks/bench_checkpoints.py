#!/usr/bin/env python
"""W5: what checkpointing an agent loop costs, in bytes and time, in every store.

    python benchmarks/bench_checkpoints.py                 # every store installed
    python benchmarks/bench_checkpoints.py --only sqlite   # some of them
    python benchmarks/bench_checkpoints.py --quick         # fewer repeats and restores

**W5** is a 200-step loop; each step adds a user and an assistant message of about
400 bytes (pseudo-English text, UTF-8) to the history and writes a checkpoint whose
parent is the previous one, as a graph agent's automatic checkpoints do. Printed for
each store:

* **bytes stored** by one loop: for SQLite the growth of the database file (after a
  WAL checkpoint, so the WAL is empty; page-granular, indexes included), for PostgreSQL
  the growth of ``pg_total_relation_size`` of the checkpoint table(s) (TOAST and
  indexes included), for ``file://`` the apparent size of the files written; and the
  ratio of that to the loop's message text (160,000 bytes). ``record bytes`` is the
  history records alone (SQLite ``history``, PostgreSQL ``pg_column_size(history_delta)``,
  the files' ``history`` objects as JSON).
* **ms per checkpoint** at steps 1-10 and 191-200: the median over the repeated loops
  of the ``create_checkpoint`` call alone (the ``Checkpoint`` is built beforehand), and
  their ratio.
* **restore p50 / p95**: ``get_latest_checkpoint`` of the loop's last checkpoint on a
  store object opened just before (empty caches; the first statement on its
  connections), over many opens; the history is checked against the loop's.

Stores: ``memory://``, ``sqlite://`` at the default ``synchronous=normal`` and at
``full``, ``postgresql://`` in a temporary database (skipped when the server cannot be
reached; ``THREADLINE_BENCH_POSTGRES`` or ``--postgres`` names the server) and
``file://``. Beside them, when installed (optional; never a dependency of threadline):
LangGraph's ``SqliteSaver`` and ``PostgresSaver`` running the same loop as a compiled
graph (``MessagesState``, one node appending the reply; one ``invoke`` per step, so the
time is per step, and LangGraph writes two checkpoints per ``invoke``). Restoring there
is ``graph.get_state(config)`` on a fresh connection and saver.

Targets (threadline): bytes <= 3x the message text; time at step 200 <= 1.2x step 1 and
<= 1 ms on SQLite; restore p50 <= 5 ms on SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault(
    "THREADLINE_LOAD_PLUGINS",
    "threadline-memory,threadline-sqlite,threadline-postgres,threadline-fsspec",
)

from _common import environment, percentile, print_table

import threadline
from threadline import Checkpoint, Message, Session
from threadline.ids import new_id
from threadline.storekit.delta import SNAPSHOT_EVERY

DEFAULT_POSTGRES = os.environ.get(
    "THREADLINE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
STEPS = 200
MESSAGE_BYTES = 400
VOCABULARY = (
    "the agent store message history checkpoint session window round tool call result "
    "user assistant model reply stream token context state node graph run resume restore "
    "after before during every each which would could should about there their other "
    "time year people way day man thing woman life child world school state family "
    "student group country problem hand part place case week company system program "
    "question work government number night point home water room mother area money "
    "story fact month lot right study book eye job word business issue side kind head "
    "house service friend father power hour game line end member law car city community "
    "name president team minute idea kid body information back parent face others level "
    "office door health person art war history party result change morning reason research"
)


def texts(steps: int, seed: int = 5) -> list[tuple[str, str]]:
    """``steps`` pairs of (user, assistant) texts of MESSAGE_BYTES bytes each."""
    rng = random.Random(seed)
    words_pool = VOCABULARY.split()

    def one() -> str:
        words: list[str] = []
        size = -1
        while size < MESSAGE_BYTES:
            word = rng.choice(words_pool)
            words.append(word)
            size += len(word) + 1
        text = " ".join(words)
        return text[: MESSAGE_BYTES - 1].rstrip() + "."

    return [(one(), one()) for _ in range(steps)]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def kb(size: float | None) -> str:
    return "-" if size is None else f"{size / 1000:,.1f} kB"


class Result:
    """One row of the W5 table."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.bytes: float | None = None
        self.record_bytes: float | None = None
        self.early: list[float] = []
        self.late: list[float] = []
        self.restores: list[float] = []
        self.note = ""

    def row(self, text_bytes: int) -> list[str]:
        early = statistics.median(self.early) if self.early else None
        late = statistics.median(self.late) if self.late else None
        return [
            self.name,
            kb(self.bytes),
            "-" if self.bytes is None else f"{self.bytes / text_bytes:.2f}x",
            kb(self.record_bytes),
            "-" if early is None else ms(early),
            "-" if late is None else ms(late),
            "-" if not early or late is None else f"{late / early:.2f}x",
            ms(percentile(self.restores, 50)) if self.restores else "-",
            ms(percentile(self.restores, 95)) if self.restores else "-",
        ]


# -- threadline stores ---------------------------------------------------------------------


class Target:
    """A threadline store to run W5 on: how to open it and how to measure what it holds."""

    name = ""

    def url(self) -> str:
        raise NotImplementedError

    async def setup(self) -> None:
        """Create what the store lives in."""

    async def size(self, session: Session) -> tuple[float | None, float | None]:
        """(bytes stored so far, history record bytes of ``session``)."""
        return None, None

    async def teardown(self) -> None:
        """Remove what :meth:`setup` made."""


class MemoryTarget(Target):
    name = "threadline memory://"

    def __init__(self) -> None:
        self._url = f"memory://w5-{new_id()}"

    def url(self) -> str:
        return self._url


class SQLiteTarget(Target):
    def __init__(self, workdir: Path, synchronous: str) -> None:
        self.path = workdir / f"w5-{synchronous}.db"
        self.synchronous = synchronous
        suffix = " (default)" if synchronous == "normal" else ""
        self.name = f"threadline sqlite, synchronous={synchronous}{suffix}"

    def url(self) -> str:
        return f"sqlite:///{self.path}?synchronous={self.synchronous}"

    async def size(self, session: Session) -> tuple[float | None, float | None]:
        connection = sqlite3.connect(self.path)
        try:
            busy = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if busy:
                raise RuntimeError("the WAL could not be checkpointed")
            records = connection.execute(
                "SELECT sum(length(CAST(history AS BLOB))) FROM entity_checkpoint "
                "WHERE session_id = ?",
                (session.id,),
            ).fetchone()[0]
        finally:
            connection.close()
        return float(self.path.stat().st_size), float(records or 0)


class PostgresTarget(Target):
    name = "threadline postgresql://"

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.database = f"threadline_bench_w5_{secrets.token_hex(4)}"

    def url(self) -> str:
        return database_url(self.admin_url, self.database)

    async def setup(self) -> None:
        await _admin(self.admin_url, f'CREATE DATABASE "{self.database}"')

    async def size(self, session: Session) -> tuple[float | None, float | None]:
        import asyncpg

        conn = await asyncpg.connect(self.url())
        try:
            total = await conn.fetchval("SELECT pg_total_relation_size('entity_checkpoint')")
            records = await conn.fetchval(
                "SELECT sum(pg_column_size(history_delta)) FROM entity_checkpoint "
                "WHERE session_id = $1",
                session.id,
            )
        finally:
            await conn.close()
        return float(total), float(records or 0)

    async def teardown(self) -> None:
        await _admin(self.admin_url, f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


class FsspecTarget(Target):
    name = "threadline file://"

    def __init__(self, workdir: Path) -> None:
        self.root = workdir / "w5-files"

    def url(self) -> str:
        return f"file://{self.root}"

    async def size(self, session: Session) -> tuple[float | None, float | None]:
        import json

        total = sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
        folder = self.root / "tenants" / session.tenant_id / "sessions" / session.id
        records = 0
        for path in (folder / "checkpoints").glob("*.json"):
            doc = json.loads(path.read_bytes())
            records += len(json.dumps(doc["history"], ensure_ascii=False,
                                      separators=(",", ":")).encode())  # fmt: skip
        return float(total), float(records)


def database_url(admin_url: str, database: str) -> str:
    """``admin_url`` pointing at ``database``."""
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{database}"


async def _admin(admin_url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def w5_loop(
    store: threadline.Store, session: Session, agent_id: str, pairs: list[tuple[str, str]]
) -> tuple[list[float], Checkpoint, tuple[Message, ...]]:
    """The loop: two messages and a checkpoint per step; times of the store calls."""
    history: list[Message] = []
    parent: str | None = None
    times: list[float] = []
    stored: Checkpoint | None = None
    for step, (question, answer) in enumerate(pairs):
        for role, text in (("user", question), ("assistant", answer)):
            history.append(
                Message(
                    session_id=session.id,
                    tenant_id=session.tenant_id,
                    user_id=session.user_id,
                    agent_id=agent_id,
                    role=role,  # type: ignore[arg-type]
                    content=text,
                )  # fmt: skip
            )
        checkpoint = Checkpoint(
            tenant_id=session.tenant_id, session_id=session.id, agent_id=agent_id,
            node_id="chat", input=None, history=history, state={"step": step},
            properties={"kind": "auto", "after": "chat", "strategy": "w5"}, parent_id=parent,
        )  # fmt: skip
        started = time.perf_counter()
        stored = await store.create_checkpoint(checkpoint)
        times.append(time.perf_counter() - started)
        parent = stored.id
    assert stored is not None
    return times, stored, tuple(history)


async def run_target(
    target: Target, pairs: list[tuple[str, str]], repeats: int, restores: int
) -> Result:
    result = Result(target.name)
    await target.setup()
    try:
        store = await threadline.connect(target.url())
        try:
            tenant, user, agent = new_id(), new_id(), new_id()
            last: tuple[Session, Checkpoint, tuple[Message, ...]] | None = None
            for rep in range(repeats + 1):  # the first loop warms the store up, untimed
                session = await store.create_session(
                    Session(tenant_id=tenant, user_id=user, agent_id=agent)
                )
                before, _ = await target.size(session)
                times, latest, history = await w5_loop(store, session, agent, pairs)
                after, records = await target.size(session)
                if rep == 0:
                    continue
                result.early += times[:10]
                result.late += times[-10:]
                if result.bytes is None and before is not None and after is not None:
                    result.bytes, result.record_bytes = after - before, records
                last = (session, latest, history)
        finally:
            await store.close()
        assert last is not None
        session, latest, history = last
        for _ in range(restores):  # (memory://NAME reopens the same in-process store)
            fresh = await threadline.connect(target.url())
            try:
                gc.collect()
                started = time.perf_counter()
                found = await fresh.get_latest_checkpoint(session.tenant_id, session.id)
                result.restores.append(time.perf_counter() - started)
            finally:
                await fresh.close()
            assert found == latest and found is not None and found.history == history
    finally:
        await target.teardown()
    return result


# -- LangGraph (optional) ------------------------------------------------------------------


def _langgraph_graph(saver: Any, replies: dict[int, str]) -> Any:
    from langchain_core.messages import AIMessage
    from langgraph.graph import END, START, MessagesState, StateGraph

    def chat(state: MessagesState) -> dict[str, Any]:
        step = (len(state["messages"]) - 1) // 2
        return {"messages": [AIMessage(content=replies[step])]}

    builder = StateGraph(MessagesState)
    builder.add_node("chat", chat)
    builder.add_edge(START, "chat")
    builder.add_edge("chat", END)
    return builder.compile(checkpointer=saver)


def _langgraph_loop(graph: Any, thread: str, pairs: list[tuple[str, str]]) -> list[float]:
    from langchain_core.messages import HumanMessage

    config = {"configurable": {"thread_id": thread}}
    times = []
    for question, _ in pairs:
        started = time.perf_counter()
        graph.invoke({"messages": [HumanMessage(content=question)]}, config)
        times.append(time.perf_counter() - started)
    return times


def _langgraph_restore(graph: Any, thread: str, pairs: list[tuple[str, str]]) -> float:
    gc.collect()
    started = time.perf_counter()
    state = graph.get_state({"configurable": {"thread_id": thread}})
    elapsed = time.perf_counter() - started
    messages = state.values["messages"]
    assert [m.content for m in messages] == [t for pair in pairs for t in pair]
    return elapsed


def run_langgraph_sqlite(
    workdir: Path, pairs: list[tuple[str, str]], repeats: int, restores: int
) -> Result | None:
    try:
        from langgraph.checkpoint.sqlite import SqliteSaver
    except ImportError:
        return None
    result = Result("LangGraph SqliteSaver")
    path = workdir / "langgraph.db"
    replies = dict(enumerate(answer for _, answer in pairs))

    def size() -> float:
        connection = sqlite3.connect(path)
        try:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            connection.close()
        return float(os.path.getsize(path))

    connection = sqlite3.connect(path, check_same_thread=False)
    saver = SqliteSaver(connection)
    saver.setup()
    graph = _langgraph_graph(saver, replies)
    thread = ""
    for rep in range(repeats + 1):
        thread = new_id()
        before = size()
        times = _langgraph_loop(graph, thread, pairs)
        after = size()
        if rep == 0:
            continue
        result.early += times[:10]
        result.late += times[-10:]
        if result.bytes is None:
            result.bytes = after - before
    connection.close()
    for _ in range(restores):
        connection = sqlite3.connect(path, check_same_thread=False)
        try:
            graph = _langgraph_graph(SqliteSaver(connection), replies)
            result.restores.append(_langgraph_restore(graph, thread, pairs))
        finally:
            connection.close()
    result.note = "time per step = one invoke (two checkpoints)"
    return result


def run_langgraph_postgres(
    admin_url: str, pairs: list[tuple[str, str]], repeats: int, restores: int
) -> Result | None:
    try:
        from langgraph.checkpoint.postgres import PostgresSaver
    except ImportError:
        return None
    result = Result("LangGraph PostgresSaver")
    database = f"threadline_bench_w5lg_{secrets.token_hex(4)}"
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{database}"'))
    url = database_url(admin_url, database)
    replies = dict(enumerate(answer for _, answer in pairs))
    tables = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
    try:
        with PostgresSaver.from_conn_string(url) as saver:
            saver.setup()

            def size() -> float:
                with saver.conn.cursor() as cursor:
                    total = 0
                    for table in tables:
                        cursor.execute("SELECT pg_total_relation_size(%s)", (table,))
                        row = cursor.fetchone()
                        total += next(iter(row.values())) if isinstance(row, dict) else row[0]
                return float(total)

            graph = _langgraph_graph(saver, replies)
            thread = ""
            for rep in range(repeats + 1):
                thread = new_id()
                before = size()
                times = _langgraph_loop(graph, thread, pairs)
                after = size()
                if rep == 0:
                    continue
                result.early += times[:10]
                result.late += times[-10:]
                if result.bytes is None:
                    result.bytes = after - before
        for _ in range(restores):
            with PostgresSaver.from_conn_string(url) as fresh:
                graph = _langgraph_graph(fresh, replies)
                result.restores.append(_langgraph_restore(graph, thread, pairs))
    finally:
        asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    result.note = "time per step = one invoke (two checkpoints)"
    return result


# -- main ------------------------------------------------------------------------------------


async def _postgres_reachable(admin_url: str) -> str | None:
    try:
        import asyncpg

        conn = await asyncpg.connect(admin_url, timeout=3)
        await conn.close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated: memory,sqlite,postgres,file,langgraph")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="server for temp databases")
    parser.add_argument("--repeats", type=int, default=8, help="timed loops per store")
    parser.add_argument("--restores", type=int, default=50, help="restores per store")
    parser.add_argument("--quick", action="store_true", help="2 repeats, 15 restores")
    args = parser.parse_args()
    repeats, restores = (2, 15) if args.quick else (args.repeats, args.restores)
    wanted = set((args.only or "memory,sqlite,postgres,file,langgraph").split(","))
    pairs = texts(STEPS)
    text_bytes = sum(len(q.encode()) + len(a.encode()) for q, a in pairs)
    print(environment())
    print(f"W5: {STEPS} steps, {text_bytes:,} bytes of message text; "
          f"SNAPSHOT_EVERY = {SNAPSHOT_EVERY}; {repeats} timed loops (after a warm-up), "
          f"{restores} restores per store")  # fmt: skip

    workdir = Path(tempfile.mkdtemp(prefix="threadline-bench-w5-"))
    postgres_problem = asyncio.run(_postgres_reachable(args.postgres))
    if postgres_problem and ("postgres" in wanted or "langgraph" in wanted):
        print(f"PostgreSQL skipped: {postgres_problem}")
    targets: list[Target] = []
    if "memory" in wanted:
        targets.append(MemoryTarget())
    if "sqlite" in wanted:
        targets += [SQLiteTarget(workdir, "normal"), SQLiteTarget(workdir, "full")]
    if "postgres" in wanted and not postgres_problem:
        targets.append(PostgresTarget(args.postgres))
    if "file" in wanted:
        targets.append(FsspecTarget(workdir))
    results: list[Result] = []
    try:
        for target in targets:
            print(f"  running {target.name} ...", flush=True)
            try:
                results.append(asyncio.run(run_target(target, pairs, repeats, restores)))
            except Exception as exc:  # one system failing leaves the others' figures
                print(f"  {target.name} failed: {type(exc).__name__}: {exc}")
        if "langgraph" in wanted:
            runs: list[Callable[[], Result | None]] = [
                lambda: run_langgraph_sqlite(workdir, pairs, repeats, restores)
            ]
            if not postgres_problem:
                runs.append(lambda: run_langgraph_postgres(args.postgres, pairs, repeats,
                                                           restores))  # fmt: skip
            for run in runs:
                try:
                    found = run()
                except Exception as exc:
                    print(f"  LangGraph failed: {type(exc).__name__}: {exc}")
                    continue
                if found is None:
                    print("  LangGraph checkpointers not installed: skipped")
                    break
                print(f"  ran {found.name}", flush=True)
                results.append(found)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print_table(
        f"W5: {STEPS}-step loop, 2 x {MESSAGE_BYTES}-byte messages and one checkpoint per step",
        [
            "store",
            "bytes stored",
            "/ text",
            "record bytes",
            "ms/ckpt 1-10",
            "ms/ckpt 191-200",
            "191-200 / 1-10",
            "restore p50 ms",
            "restore p95 ms",
        ],  # fmt: skip
        [r.row(text_bytes) for r in results],
    )
    notes = [f"{r.name}: {r.note}" for r in results if r.note]
    for note in notes:
        print(f"- {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
