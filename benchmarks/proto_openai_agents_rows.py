#!/usr/bin/env python
"""Prototype for issue #15: what a row-level message read would save ``ThreadlineSession``.

    python benchmarks/proto_openai_agents_rows.py          # 200 and 2,000 items, SQLite

``get_items()`` with nothing kept (a new process's first read) costs the store's
``get_messages``: 12 columns a row, a ``Message`` model each, the metadata JSON decoded,
on the reader thread. The hook this measures (not in threadline; see the #15 section of
``benchmarks/README.md``) would return only the fields asked for, as tuples:

    store.read_message_rows(tenant_id, session_id, fields=("seq", "id", "role", "content",
                            "tool_call_id", "metadata"), after_seq=0, limit=None)

Here it is imitated with ``sqlite3`` on the store's own file and table (the same SQL the
store's ``read_messages`` runs, fewer columns, no model), inline and on a worker thread;
``agents.SQLiteSession`` and ``ThreadlineSession`` (nothing kept, and kept) beside. Medians
over interleaved rounds. A measurement only: plugins must not read a store's tables.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("THREADLINE_LOAD_PLUGINS", "threadline-sqlite")
os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")

from _common import environment
from agents import SQLiteSession
from bench_openai_agents import items

import threadline
from threadline.ids import new_id
from threadline_openai_agents import ThreadlineSession
from threadline_openai_agents import session as session_module
from threadline_openai_agents.items import _scan, message_from_item

ROWS = (
    "SELECT seq, role, content, tool_call_id, nullif(metadata, '{}') FROM entity_message "
    "WHERE session_key = (SELECT key FROM entity_session WHERE id = ? AND tenant_id = ?) "
    "AND seq > ? ORDER BY seq LIMIT -1"
)


def items_from_rows(rows: list[tuple[Any, ...]]) -> list[Any]:
    """``items_from_messages`` on (seq, role, content, tool_call_id, metadata) tuples."""
    out: list[Any] = []
    append, loads, scan = out.append, json.loads, _scan
    for _seq, role, content, _call_id, meta in rows:
        stored = loads(meta)["openai_agents"] if meta else None
        if stored is None:
            append({"content": content, "role": role})
            continue
        item = stored["item"]
        if item.__class__ is str:
            item = scan(item, 0)[0]
        path = stored.get("text")
        if path:
            if len(path) == 1:
                item[path[0]] = content
            else:
                item[path[0]][path[1]][path[2]] = content
        append(item)
    return out


async def main(n: int, rounds: int, reads: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = await threadline.connect(f"sqlite:///{tmp}/ours.db")
        ours = ThreadlineSession(new_id(), store)
        theirs = SQLiteSession(new_id(), Path(tmp) / "sdk.db")
        data = items(n)
        for start in range(0, n, 500):
            await ours.add_items(data[start : start + 500])
            await theirs.add_items(data[start : start + 500])
        # the same items in the object form (the item's JSON object in the metadata: one
        # decode; what a store that keeps key order could declare it takes)
        objects = ThreadlineSession(new_id(), store)
        await objects.add_items(data[:1])
        messages = [
            message_from_item(
                item,
                session_id=objects.thread_session_id,
                tenant_id=objects.tenant_id,
                user_id=None,
                agent_id=None,
            )
            for item in data[1:]
        ]
        for m in messages:
            if m.metadata:
                stored = m.metadata["openai_agents"]
                stored["item"] = json.loads(stored["item"])
        for start in range(0, len(messages), 500):
            await store.save_messages(messages[start : start + 500])
        db = sqlite3.connect(f"file:{tmp}/ours.db?mode=ro", uri=True, check_same_thread=False)
        args = (ours.thread_session_id, ours.tenant_id, 0)

        def rows() -> list[Any]:
            return items_from_rows(db.execute(ROWS, args).fetchall())

        object_args = (objects.thread_session_id, objects.tenant_id, 0)

        async def object_rows() -> Any:
            return items_from_rows(db.execute(ROWS, object_args).fetchall())

        async def nothing_kept() -> Any:
            session_module._TAILS.clear()
            return await ThreadlineSession(ours.session_id, store).get_items()

        async def kept() -> Any:
            return await ThreadlineSession(ours.session_id, store).get_items()

        async def rows_inline() -> Any:
            return rows()

        async def rows_thread() -> Any:
            return await asyncio.to_thread(rows)

        variants = {
            "agents SQLiteSession": theirs.get_items,
            "ThreadlineSession, nothing kept (first read)": nothing_kept,
            "ThreadlineSession, kept (new object)": kept,
            "row read prototype, inline": rows_inline,
            "row read prototype, worker thread": rows_thread,
            "row read prototype + object form, inline": object_rows,
        }
        for read in variants.values():
            assert await read() == data
        medians: dict[str, list[float]] = {name: [] for name in variants}
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(rounds):
            for name, read in variants.items():
                samples = []
                cpu_began = time.process_time()
                for _ in range(reads):
                    began = time.perf_counter()
                    await read()
                    samples.append(time.perf_counter() - began)
                cpu[name].append((time.process_time() - cpu_began) / reads)
                medians[name].append(statistics.median(samples))
        base = statistics.median(medians["agents SQLiteSession"])
        base_cpu = statistics.median(cpu["agents SQLiteSession"])
        print(f"\nget_items() of {n:,} items (median of {rounds} rounds x {reads} reads;")
        print("  wall p50, then CPU of the process per read: steadier on a loaded machine)")
        for name, got in medians.items():
            value, used = statistics.median(got), statistics.median(cpu[name])
            print(
                f"  {name:46} {value * 1e6:8,.0f} us {base / value:5.2f}x"
                f"   CPU {used * 1e6:8,.0f} us {base_cpu / used:5.2f}x SQLiteSession"
            )
        db.close()
        theirs.close()
        await store.close()


if __name__ == "__main__":
    print(environment())
    for size, count in ((200, 40), (2000, 8)):
        asyncio.run(main(size, 5, count))
    print(f"load: {os.getloadavg()}")
