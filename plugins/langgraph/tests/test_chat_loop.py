"""A 200-step chat (``StateGraph(MessagesState)``, one ``invoke`` per step) on SQLite files.

The messages come back exactly after a restart; storage grows linearly (LangGraph's own
``SqliteSaver`` stores the whole message list in every checkpoint: 455x the text for this
loop); what a step does stays flat from step 1 to step 200, checked by counting (the store
calls a step makes, the rows and bytes it writes), not by timing: the time per step is a
figure of ``benchmarks/bench_langgraph.py``.
"""

from __future__ import annotations

import sqlite3
import statistics
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _graphs import chat_graph, question
from conftest import require

import threadline
from threadline_langgraph import ThreadlineSaver
from threadline_langgraph.loop import LoopThread

STEPS = 100  # per phase; two phases


def _text(messages: list) -> int:
    return sum(len(m.content) for m in messages)


def _run(url: str, first: int, count: int) -> list:
    config = {"configurable": {"thread_id": "chat-1"}}
    with ThreadlineSaver.from_conn_string(url) as saver:
        graph = chat_graph(saver)
        for i in range(first, first + count):
            result = graph.invoke({"messages": [question(i)]}, config)
    return list(result["messages"])


def test_chat_loop_stores_each_message_once_and_restores_exactly(tmp_path: Path) -> None:
    require("sqlite")
    db = tmp_path / "chat.db"
    url = f"sqlite:///{db}"
    half = _run(url, 0, STEPS)
    size_half = db.stat().st_size
    full = _run(url, STEPS, STEPS)  # a new process would do the same: the store is reopened
    size_full = db.stat().st_size

    assert len(full) == 4 * STEPS
    assert full[: 2 * STEPS] == half
    with ThreadlineSaver.from_conn_string(url) as saver:
        restored = chat_graph(saver).get_state({"configurable": {"thread_id": "chat-1"}})
    assert restored.values["messages"] == full

    text = _text(full)
    # Linear: the second hundred steps cost about what the first did (a store that copies
    # the history into every checkpoint pays three times as much for them).
    assert size_full - size_half < 1.6 * size_half
    assert size_full < 15 * text, f"{size_full} bytes for {text} bytes of text"


# The store calls the saver makes (everything it does to the store goes through these).
_COUNTED = (
    "get_session", "create_session", "update_session", "create_checkpoint", "get_checkpoint",
    "get_latest_checkpoint", "list_checkpoints", "append_checkpoint_state", "prune_checkpoints",
)  # fmt: skip


def _count_calls(store: Any, calls: Counter[str]) -> None:
    """Count ``store``'s calls by name (the real store does the work)."""
    for name in _COUNTED:
        method = getattr(store, name)

        def counted(
            *args: Any, _name: str = name, _method: Callable[..., Any] = method, **kwargs: Any
        ) -> Any:
            calls[_name] += 1
            return _method(*args, **kwargs)

        setattr(store, name, counted)


def _stored(db: sqlite3.Connection, after: int) -> tuple[int, int, int]:
    """Rows of checkpoint records after rowid ``after``, their bytes (TEXT and BLOB
    columns), and the last rowid."""
    rows = db.execute("SELECT rowid, * FROM entity_checkpoint WHERE rowid > ?", (after,))
    count = size = 0
    last = after
    for row in rows:
        count += 1
        last = max(last, row[0])
        size += sum(len(v) for v in row[1:] if isinstance(v, (str, bytes)))
    return count, size, last


def test_each_step_does_the_same_work_at_step_1_and_200(tmp_path: Path) -> None:
    """Time per step flat from step 1 to 200, as counts: the store calls, rows and bytes of
    a step do not grow with the thread (but for the snapshot the delta chain writes once
    every ``SNAPSHOT_EVERY`` links, which is amortised: at most one step here)."""
    require("sqlite")
    db_path = tmp_path / "flat.db"
    config = {"configurable": {"thread_id": "flat"}}
    runner = LoopThread()
    calls: Counter[str] = Counter()
    per_step: list[tuple[int, int, int]] = []  # (store calls, rows, bytes)
    try:
        store = runner.run(threadline.connect(f"sqlite:///{db_path}"))
        _count_calls(store, calls)
        saver = ThreadlineSaver(store, loop=runner.loop)
        graph = chat_graph(saver)
        db = sqlite3.connect(db_path)
        last = 0
        for i in range(2 * STEPS):
            before = sum(calls.values())
            graph.invoke({"messages": [question(i)]}, config)
            rows, size, last = _stored(db, last)
            per_step.append((sum(calls.values()) - before, rows, size))
        db.close()
        runner.run(store.close())
    finally:
        runner.stop()

    early, late = per_step[1:21], per_step[-20:]  # step 1 creates the thread
    # The same store calls and rows a step. A task's writes that reach the saver before
    # its checkpoint's put has begun are a row of their own (a failed append, a lookup of
    # the record's writes, then a create; the next read looks them up too): up to one more
    # row and four more calls for each of a step's two writes that does, however long the
    # thread. Growth with the thread would show as hundreds.
    for field, slack in ((0, 8), (1, 2)):
        least = min(counts[field] for counts in early)
        assert min(counts[field] for counts in late) <= least, (early, late)
        assert max(counts[field] for counts in late) <= least + slack, (early, late)
    # The same bytes a step: the new messages and the checkpoints' bookkeeping, not the
    # history (medians: the snapshot step aside; longer step numbers cost a few bytes).
    early_bytes = statistics.median(b for _, _, b in early)
    late_bytes = statistics.median(b for _, _, b in late)
    assert late_bytes < 1.1 * early_bytes + 64, (early_bytes, late_bytes)
    text = 2 * 400  # a question and a reply a step
    snapshots = [b for _, _, b in per_step[1:] if b > 20 * text]
    assert len(snapshots) <= 1, snapshots
