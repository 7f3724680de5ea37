"""A 200-step chat (``StateGraph(MessagesState)``, one ``invoke`` per step) on SQLite files.

The messages come back exactly after a restart; storage grows linearly (LangGraph's own
``SqliteSaver`` stores the whole message list in every checkpoint: 455x the text for this
loop); the time per step stays flat from step 1 to step 200.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from _graphs import chat_graph, question
from conftest import require

from threadline_langgraph import ThreadlineSaver

STEPS = 100  # per phase; two phases


def _text(messages: list) -> int:
    return sum(len(m.content) for m in messages)


def _run(url: str, first: int, count: int) -> tuple[list, list[float]]:
    config = {"configurable": {"thread_id": "chat-1"}}
    times = []
    with ThreadlineSaver.from_conn_string(url) as saver:
        graph = chat_graph(saver)
        for i in range(first, first + count):
            started = time.perf_counter()
            result = graph.invoke({"messages": [question(i)]}, config)
            times.append(time.perf_counter() - started)
    return result["messages"], times


def test_chat_loop_stores_each_message_once_and_restores_exactly(tmp_path: Path) -> None:
    require("sqlite")
    db = tmp_path / "chat.db"
    url = f"sqlite:///{db}"
    half, _ = _run(url, 0, STEPS)
    size_half = db.stat().st_size
    full, _ = _run(url, STEPS, STEPS)  # a new process would do the same: the store is reopened
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


@pytest.mark.slow
def test_time_per_step_stays_flat(tmp_path: Path) -> None:
    require("sqlite")
    _, times = _run(f"sqlite:///{tmp_path / 'flat.db'}", 0, 2 * STEPS)
    # The fastest of 20 steps: what a step costs without the machine's other work.
    early, late = min(times[1:21]), min(times[-20:])
    assert late < 2 * early + 0.003, (
        f"steps 2-21: {early * 1e3:.1f} ms, 181-200: {late * 1e3:.1f} ms"
    )
