"""Benchmark ThreadlineSaver against LangGraph's own SqliteSaver and PostgresSaver.

Usage::

    python benchmarks/bench_langgraph.py [--steps 200] [--repeat 3] [--no-postgres]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]

The workload is the chat loop of issue #15: a compiled ``StateGraph(MessagesState)`` with a
deterministic model node (no network), one ``graph.invoke`` per step (LangGraph's default
durability), a ~400-character question and a ~400-character reply per step. For each
saver it prints:

* **step 1 / step N**: the median time of an ``invoke`` over steps 1-10 and over the last
  ten steps (the restore of the thread, the checkpoints and the pending writes included);
* **CPU at step N**: the median CPU time of this process (all its threads) over the last ten
  steps: the work, without the waits a loaded machine adds to every hand-off between
  threads (a PostgreSQL server's own work is not in it);
* **stored**: the bytes the saver's database grew by (SQLite: the file; PostgreSQL: the
  tables with their indexes and TOAST), and that size over the message text;
* **restore**: the median of 5 ``graph.get_state`` of the thread at step N by a new saver
  on the same database (a restart).

The reference rows are LangGraph's own savers (``SqliteSaver`` from
``langgraph-checkpoint-sqlite``, ``PostgresSaver`` from ``langgraph-checkpoint-postgres``,
skipped when not installed or no server answers), on the same database kinds, and a
**floor**: the same loop with a saver that costs nothing (:class:`FreeSaver`, LangGraph's
objects kept in a dict), what the graph itself costs per step. Ratios are the framework
saver's figure over ThreadlineSaver's (per-step time) and stored / text.

``--breakdown`` runs the loop once more on a ThreadlineSaver SQLite file and prints the
store calls a step makes (over the last ten steps, by name) and where its bytes are: per
record kind (input checkpoint, loop checkpoint, pending writes) the bytes of each column
per row, and the pages of each table and index (``dbstat``). ``--log-prototype`` prints
the bytes a design not built would store (histories referring to the session's message
log; a stand-in that stores the same records without their message text, and the
messages once in the log).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.graph import END, START, MessagesState, StateGraph

import threadline
from threadline_langgraph import ThreadlineSaver
from threadline_langgraph.loop import LoopThread

THREAD = {"configurable": {"thread_id": "bench-chat"}}


def model(state: MessagesState) -> dict[str, Any]:
    last = state["messages"][-1].content
    return {"messages": [AIMessage(content=f"reply to {last[:40]} " + "lorem ipsum " * 30)]}


def question(i: int) -> HumanMessage:
    words = " ".join(f"word{(i * 7 + k) % 97}" for k in range(60))
    return HumanMessage(content=f"question {i}: {words}"[:400])


def compiled(saver: Any) -> Any:
    builder = StateGraph(MessagesState)
    builder.add_node("model", model)
    builder.add_edge(START, "model")
    builder.add_edge("model", END)
    return builder.compile(checkpointer=saver)


class Row:
    def __init__(self, name: str, early: float, late: float, stored: int, text: int,
                 restore: float, cpu: float) -> None:  # fmt: skip
        self.name, self.early, self.late = name, early, late
        self.stored, self.text, self.restore, self.cpu = stored, text, restore, cpu


def median(rows: tuple[Row, ...]) -> Row:
    """The median figures of several runs of one saver (interleaved runs on a loaded
    machine: the median, not the best, is what a user sees)."""
    first, m = rows[0], statistics.median
    return Row(first.name, m(r.early for r in rows), m(r.late for r in rows),
               int(m(r.stored for r in rows)), first.text,
               m(r.restore for r in rows), m(r.cpu for r in rows))  # fmt: skip


def run(
    name: str,
    open_saver: Callable[[], AbstractContextManager[Any]],
    size: Callable[[], int],
    steps: int,
) -> Row:
    before = size()
    times: list[float] = []
    cpu: list[float] = []
    with open_saver() as saver:
        graph = compiled(saver)
        for i in range(steps):
            started, cpu_started = time.perf_counter(), time.process_time()
            result = graph.invoke({"messages": [question(i)]}, THREAD)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
    text = sum(len(m.content) for m in result["messages"])
    stored = size() - before
    restores = []
    for _ in range(5):
        with open_saver() as saver:
            graph = compiled(saver)
            started = time.perf_counter()
            state = graph.get_state(THREAD)
            restores.append(time.perf_counter() - started)
            assert state.values["messages"] == result["messages"]
    return Row(name, statistics.median(times[:10]), statistics.median(times[-10:]), stored, text,
               statistics.median(restores), statistics.median(cpu[-10:]))  # fmt: skip


class FreeSaver(BaseCheckpointSaver[int]):
    """A saver that costs nothing: it keeps LangGraph's checkpoint objects in a dict, no
    serializing, no copy. Its time per step is the graph's own (LangGraph's loop, the
    model node, ``add_messages``): the floor under every saver's figure."""

    def __init__(self) -> None:
        super().__init__()
        self.tuples: dict[tuple[str, str], list[CheckpointTuple]] = {}
        self.writes: dict[tuple[str, str, str], list[tuple[str, str, Any]]] = {}

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        c = config["configurable"]
        key = (c["thread_id"], c.get("checkpoint_ns", ""))
        found = self.tuples.get(key) or []
        wanted = c.get("checkpoint_id")
        for t in reversed(found):
            if wanted is None or t.checkpoint["id"] == wanted:
                pending = self.writes.get((*key, t.checkpoint["id"]), [])
                found_tuple: CheckpointTuple = t._replace(pending_writes=list(pending))
                return found_tuple
        return None

    def list(self, config: RunnableConfig | None, **kwargs: Any) -> Iterator[CheckpointTuple]:
        return iter(())

    def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: ChannelVersions) -> RunnableConfig:  # fmt: skip
        c = config["configurable"]
        key = (c["thread_id"], c.get("checkpoint_ns", ""))
        mine = {"configurable": {"thread_id": key[0], "checkpoint_ns": key[1],
                                 "checkpoint_id": checkpoint["id"]}}  # fmt: skip
        parent = config if c.get("checkpoint_id") else None
        self.tuples.setdefault(key, []).append(
            CheckpointTuple(mine, checkpoint, metadata, parent, [])  # type: ignore[arg-type]
        )
        return mine  # type: ignore[return-value]

    def put_writes(self, config: RunnableConfig, writes: Any, task_id: str,
                   task_path: str = "") -> None:  # fmt: skip
        c = config["configurable"]
        key = (c["thread_id"], c.get("checkpoint_ns", ""), c["checkpoint_id"])
        self.writes.setdefault(key, []).extend((task_id, ch, v) for ch, v in writes)


def floor_row(steps: int) -> Row:
    """:class:`FreeSaver`: the graph's own cost per step, no storage at all."""
    from contextlib import nullcontext

    saver = FreeSaver()
    return run("floor: LangGraph with a free saver", lambda: nullcontext(saver), lambda: 0, steps)


_STORE_CALLS = (
    "get_session", "create_session", "update_session", "create_checkpoint", "get_checkpoint",
    "get_latest_checkpoint", "list_checkpoints", "append_checkpoint_state",
)  # fmt: skip


def _counted(method: Callable[..., Any], name: str, calls: Counter[str]) -> Callable[..., Any]:
    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return method(*args, **kwargs)

    return counted


def breakdown(steps: int, folder: Path) -> None:
    """Where a ThreadlineSaver SQLite file's bytes are, per record kind and column, and
    per table and index (``dbstat`` pages: payload and unused bytes)."""
    import json
    import sqlite3

    path = folder / "breakdown.db"
    with ThreadlineSaver.from_conn_string(f"sqlite:///{path}"):
        pass
    empty = sum(p.stat().st_size for p in folder.glob("breakdown.db*"))
    calls: Counter[str] = Counter()
    late: Counter[str] = Counter()  # the last ten steps' calls
    runner = LoopThread()
    try:
        store = runner.run(threadline.connect(f"sqlite:///{path}"))
        for name in _STORE_CALLS:  # counted by name; the real store does the work
            setattr(store, name, _counted(getattr(store, name), name, calls))
        graph = compiled(ThreadlineSaver(store, loop=runner.loop))
        for i in range(steps):
            if i == steps - 10:
                late.update(calls)
            result = graph.invoke({"messages": [question(i)]}, THREAD)
        runner.run(store.close())
    finally:
        runner.stop()
    text = sum(len(m.content) for m in result["messages"])
    late = calls - late
    print(
        f"\nstore calls a step over the last 10 steps: {sum(late.values()) / 10:.1f} ("
        + ", ".join(f"{name} {n / 10:.1f}" for name, n in late.most_common())
        + ")"
    )
    db = sqlite3.connect(path)
    columns = [r[1] for r in db.execute("PRAGMA table_info(entity_checkpoint)")]
    kinds: dict[str, dict[str, int]] = {}
    for row in db.execute("SELECT * FROM entity_checkpoint"):
        values = dict(zip(columns, row))
        info = json.loads(values["properties"] or "{}").get("langgraph", {})
        kind = info.get("kind", "?")
        if kind == "checkpoint":
            kind = f"checkpoint ({info.get('metadata', {}).get('source', '?')})"
        sums = kinds.setdefault(kind, {"rows": 0})
        sums["rows"] += 1
        for name, value in values.items():
            size = len(value) if isinstance(value, (str, bytes)) else 0
            sums[name] = sums.get(name, 0) + size
    print(f"\nbreakdown: {steps} steps, {text:,} bytes of text, bytes per step "
          "(TEXT and BLOB columns, as stored)\n")  # fmt: skip
    shown = [c for c in columns if any(k.get(c) for k in kinds.values())]
    print("| record kind | rows per step | " + " | ".join(shown) + " | all |")
    print("|---|---:|" + "---:|" * (len(shown) + 1))
    for kind, sums in kinds.items():
        cells = " | ".join(f"{sums.get(c, 0) / steps:,.0f}" for c in shown)
        total = sum(sums.get(c, 0) for c in shown) / steps
        print(f"| {kind} | {sums['rows'] / steps:.1f} | {cells} | {total:,.0f} |")
    print("\n| table or index | pages | bytes | payload | unused | / text |")
    print("|---|---:|---:|---:|---:|---:|")
    try:
        pages = db.execute(
            "SELECT name, count(*), sum(pgsize), sum(payload), sum(unused) FROM dbstat"
            " GROUP BY name ORDER BY 3 DESC LIMIT 6"
        ).fetchall()
    except sqlite3.OperationalError:  # SQLite built without dbstat
        pages = []
    for name, count, size, payload, unused in pages:
        print(f"| {name} | {count} | {size:,} | {payload:,} | {unused:,} | {size / text:.2f}x |")
    db.close()
    total = sum(p.stat().st_size for p in folder.glob("breakdown.db*"))
    print(f"\nfile: {total:,} bytes, {total / text:.2f}x the text; "
          f"less the empty store's {empty:,}: {(total - empty) / text:.2f}x")  # fmt: skip


def log_prototype(steps: int, folder: Path) -> None:
    """The bytes of a design not built: checkpoint histories referring to the session's
    message log. A stand-in, for its bytes only (what it reads back is wrong): the saver's
    records with empty histories and every message in a value or a pending write a short
    reference, and each step's question and reply appended to the thread's session."""
    from threadline.models import Message
    from threadline_langgraph.ids import DEFAULT_TENANT_ID, session_id_for
    from threadline_langgraph.messages import MessageCodec

    path = folder / "log.db"
    saved = MessageCodec.to_history, MessageCodec._message_value
    MessageCodec.to_history = lambda self, messages, **_: ()  # type: ignore[method-assign]
    MessageCodec._message_value = lambda self, m: {"r": ["l", 0]}  # type: ignore[method-assign]
    runner = LoopThread()
    try:
        store = runner.run(threadline.connect(f"sqlite:///{path}"))
        graph = compiled(ThreadlineSaver(store, loop=runner.loop))
        graph.invoke({"messages": [question(0)]}, THREAD)  # the thread's session made
        runner.run(store.close())  # sizes of closed files (no write-ahead log)
        before = sum(p.stat().st_size for p in folder.glob("log.db*"))
        store = runner.run(threadline.connect(f"sqlite:///{path}"))
        graph = compiled(ThreadlineSaver(store, loop=runner.loop))
        session_id = session_id_for(DEFAULT_TENANT_ID, THREAD["configurable"]["thread_id"])
        text = 0
        for i in range(1, steps + 1):
            new = graph.invoke({"messages": [question(i)]}, THREAD)["messages"][-2:]
            text += sum(len(m.content) for m in new)
            log = [
                Message(session_id=session_id, tenant_id=DEFAULT_TENANT_ID,
                        role="user" if m.type == "human" else "assistant",
                        content=m.content, metadata={"lc": {"id": m.id}})
                for m in new
            ]  # fmt: skip
            runner.run(store.save_messages(log))
        runner.run(store.close())
    finally:
        runner.stop()
        MessageCodec.to_history, MessageCodec._message_value = saved  # type: ignore[method-assign]
    grown = sum(p.stat().st_size for p in folder.glob("log.db*")) - before
    print(
        f"\nhistories in the message log (a stand-in, bytes only): {steps} steps, "
        f"{grown:,} bytes for {text:,} bytes of text: {grown / text:.2f}x"
    )


def sqlite_rows(steps: int, folder: Path) -> Iterator[Row]:
    def file_size(path: Path) -> Callable[[], int]:
        return lambda: sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))

    try:
        from langgraph.checkpoint.sqlite import SqliteSaver
    except ImportError:
        print("SqliteSaver: langgraph-checkpoint-sqlite is not installed, skipped", file=sys.stderr)
    else:
        path = folder / "sqlitesaver.db"
        with SqliteSaver.from_conn_string(str(path)) as saver:
            saver.setup()  # the schema first: its pages are not the thread's data
        yield run("SqliteSaver (SQLite)", lambda: SqliteSaver.from_conn_string(str(path)),
                  file_size(path), steps)  # fmt: skip
    limit = folder / "limit.db"
    yield sqlite_limit(limit, steps, file_size(limit))
    ours = folder / "threadline.db"
    url = f"sqlite:///{ours}"
    with ThreadlineSaver.from_conn_string(url):
        pass  # migrate first (176 kB of empty tables): as the other rows, data only
    yield run("ThreadlineSaver (SQLite)", lambda: ThreadlineSaver.from_conn_string(url),
              file_size(ours), steps)  # fmt: skip


_LIMIT_SCHEMA = """
CREATE TABLE message (thread TEXT, seq INTEGER, id TEXT NOT NULL, role TEXT NOT NULL,
                      content TEXT NOT NULL, PRIMARY KEY (thread, seq)) WITHOUT ROWID;
CREATE TABLE checkpoint (thread TEXT, n INTEGER, messages INTEGER NOT NULL, state TEXT NOT NULL,
                         PRIMARY KEY (thread, n)) WITHOUT ROWID;
"""


def sqlite_limit(path: Path, steps: int, size: Callable[[], int]) -> Row:
    """The limit: what SQLite itself costs for a step's logical content on a minimal schema,
    no framework: one transaction writing the step's two messages (id, role, text) and its
    three checkpoints (LangGraph's channel versions as JSON, and how many messages each
    holds, so the history is a prefix of the thread's messages), after reading the latest
    checkpoint. WAL and ``synchronous=NORMAL``, as the threadline store runs."""
    import json
    import sqlite3
    import uuid

    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(_LIMIT_SCHEMA)
    db.close()  # the schema's pages out of the WAL: the size before counts them
    before = size()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=NORMAL")
    times: list[float] = []
    cpu: list[float] = []
    text = 0
    seq = n = 0
    for i in range(steps):
        q = question(i).content
        a = f"reply to {q[:40]} " + "lorem ipsum " * 30
        text += len(q) + len(a)
        started, cpu_started = time.perf_counter(), time.process_time()
        db.execute("BEGIN IMMEDIATE")
        db.execute("SELECT state FROM checkpoint WHERE thread = 't' ORDER BY n DESC LIMIT 1")
        for role, content in (("user", q), ("assistant", a)):
            db.execute("INSERT INTO message VALUES ('t', ?, ?, ?, ?)",
                       (seq, str(uuid.uuid4()), role, content))  # fmt: skip
            seq += 1
        for k in range(3):
            state = {"v": 4, "ts": "2026-01-01T00:00:00.000000+00:00", "id": str(uuid.uuid4()),
                     "channel_versions": {"__start__": 3 * n + k, "messages": 3 * n + k},
                     "versions_seen": {"model": {"branch:to:model": 3 * n + k}}}  # fmt: skip
            db.execute("INSERT INTO checkpoint VALUES ('t', ?, ?, ?)",
                       (n, seq - (2 - k) if k < 2 else seq, json.dumps(state)))  # fmt: skip
            n += 1
        db.execute("COMMIT")
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    db.close()
    stored = size() - before
    restores = []
    for _ in range(6):  # a new connection each: the latest checkpoint, then the history
        started = time.perf_counter()
        db = sqlite3.connect(path)
        db.execute(
            "SELECT state FROM checkpoint WHERE thread = 't' ORDER BY n DESC LIMIT 1"
        ).fetchone()
        history = "SELECT id, role, content FROM message WHERE thread = 't' ORDER BY seq"
        db.execute(history).fetchall()
        restores.append(time.perf_counter() - started)
        db.close()
    return Row("limit: SQLite, minimal schema, no framework", statistics.median(times[:10]),
               statistics.median(times[-10:]), stored, text,
               statistics.median(restores[1:]), statistics.median(cpu[-10:]))  # fmt: skip


def postgres_rows(steps: int, admin_url: str) -> Iterator[Row]:
    try:
        import asyncpg
    except ImportError:
        print("PostgreSQL: asyncpg is not installed, skipped", file=sys.stderr)
        return

    async def admin(sql: str, url: str = admin_url) -> Any:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    base = admin_url.rsplit("/", 1)[0]
    name = f"bench_lg_{secrets.token_hex(4)}"
    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"PostgreSQL: {admin_url} does not answer ({exc}), skipped", file=sys.stderr)
        return
    url = f"{base}/{name}"

    def schema_size(schema: str) -> Callable[[], int]:
        sql = (
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            f" WHERE n.nspname = '{schema}' AND c.relkind = 'r'"
        )
        return lambda: int(asyncio.run(admin(sql, url)))

    try:
        try:
            from langgraph.checkpoint.postgres import PostgresSaver
        except ImportError:
            print("PostgresSaver: langgraph-checkpoint-postgres is not installed, skipped",
                  file=sys.stderr)  # fmt: skip
        else:
            with PostgresSaver.from_conn_string(url) as saver:
                saver.setup()
            yield run("PostgresSaver (PostgreSQL)", lambda: PostgresSaver.from_conn_string(url),
                      schema_size("public"), steps)  # fmt: skip
        tl_url = f"{url}?schema=threadline_bench"
        with ThreadlineSaver.from_conn_string(tl_url):
            pass  # migrate first: the schema's tables are not counted as the saver's data
        yield run("ThreadlineSaver (PostgreSQL)", lambda: ThreadlineSaver.from_conn_string(tl_url),
                  schema_size("threadline_bench"), steps)  # fmt: skip
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("THREADLINE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"),
        help="an admin URL: the benchmark creates (and drops) a database of its own",
    )  # fmt: skip
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="runs; the median of each kept")
    parser.add_argument("--breakdown", action="store_true", help="where the bytes are, only")
    parser.add_argument(
        "--log-prototype", action="store_true",
        help="only the bytes of histories kept in the message log (a stand-in, not a saver)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.breakdown or args.log_prototype:
        with tempfile.TemporaryDirectory() as folder:
            (breakdown if args.breakdown else log_prototype)(args.steps, Path(folder))
        return
    runs: list[list[Row]] = []
    for _ in range(args.repeat):  # interleaved: each run has every saver once
        rows = [floor_row(args.steps)]
        with tempfile.TemporaryDirectory() as folder:
            rows.extend(sqlite_rows(args.steps, Path(folder)))
        if not args.no_postgres:
            rows.extend(postgres_rows(args.steps, args.postgres))
        runs.append(rows)
    rows = [median(same) for same in zip(*runs)]
    n = args.steps
    print(f"\nchat loop, {n} steps (one invoke each), {rows[0].text:,} bytes of message text\n")
    print(f"| saver | step 1 | step {n} | CPU at step {n} | stored | stored / text "
          f"| restore at step {n} |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        times = f"{r.early * 1e3:.1f} ms | {r.late * 1e3:.1f} ms | {r.cpu * 1e3:.1f} ms"
        stored = f"{r.stored / 1e6:.2f} MB | {r.stored / r.text:.1f}x"
        print(f"| {r.name} | {times} | {stored} | {r.restore * 1e3:.1f} ms |")
    by_name = {r.name: r for r in rows}
    floor = by_name.get("floor: LangGraph with a free saver")
    for db in ("SQLite", "PostgreSQL"):
        ours = by_name.get(f"ThreadlineSaver ({db})")
        theirs = [r for r in rows if r.name.endswith(f"({db})") and r is not ours]
        limit = by_name.get(f"limit: {db}, minimal schema, no framework")
        if ours and limit and limit.stored and limit.late:
            print(f"\n{db}: ThreadlineSaver / limit: stored {ours.stored / limit.stored:.1f}x, "
                  f"per step at step {n} (a whole invoke / the limit's transaction): "
                  f"{ours.late / limit.late:.1f}x")  # fmt: skip
        if ours and theirs:
            t = theirs[0]
            print(f"\n{db}: {t.name.split()[0]} / ThreadlineSaver per step at step {n}: "
                  f"{t.late / ours.late:.1f}x (CPU {t.cpu / ours.cpu:.1f}x); "
                  f"at step 1: {t.early / ours.early:.1f}x; "
                  f"stored: {t.stored / ours.stored:.1f}x; "
                  f"restore: {t.restore / ours.restore:.1f}x")  # fmt: skip
            if floor:
                print(f"{db}: {t.name.split()[0]} / floor per step at step {n} "
                      f"(the most any saver can gain on it): {t.late / floor.late:.1f}x; "
                      f"ThreadlineSaver - floor: "
                      f"{(ours.late - floor.late) * 1e3:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
