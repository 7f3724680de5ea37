"""Pending writes kept in their checkpoint's record (SQLite, PostgreSQL) come back exactly as
in write records of their own: in a new saver, in order, whichever of put and put_writes
reached the store first, and a checkpoint put again after its writes is still stored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver

from threadline_langgraph import ThreadlineSaver


def _steps(saver: Any) -> list[Any]:
    """Three checkpoints of a thread with writes: after the put, two tasks; before it."""
    thread = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    first = empty_checkpoint()
    cfg1 = saver.put(thread, first, {"source": "input", "step": -1}, {})
    saver.put_writes(cfg1, [("a", 1), ("b", {"x": [1, 2]})], "task-1", "path-1")
    saver.put_writes(cfg1, [("a", 2), ("__error__", "boom")], "task-2")
    saver.put_writes(cfg1, [("a", 3)], "task-1", "path-1")  # same (task, idx): ignored
    again = saver.put(thread, first, {"source": "input", "step": -1}, {})  # a retry
    assert again == cfg1
    second = empty_checkpoint()
    early = {"configurable": {**cfg1["configurable"], "checkpoint_id": second["id"]}}
    saver.put_writes(early, [("c", "before its put")], "task-3")
    cfg2 = saver.put(cfg1, second, {"source": "loop", "step": 0}, {})
    saver.put_writes(cfg2, [("d", "after its put")], "task-4")
    return [cfg1, cfg2]


def _writes(saver: Any, configs: list[Any]) -> list[Any]:
    return [saver.get_tuple(c).pending_writes for c in configs]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_writes_in_the_record_read_as_langgraph_keeps_them(
    kind: str, store_url: Callable[[str], str]
) -> None:
    reference = InMemorySaver()
    expected = _writes(reference, _steps(reference))
    url = store_url(kind)
    with ThreadlineSaver.from_conn_string(url) as saver:
        configs = _steps(saver)
        assert saver.threads._append_state is not None  # this store keeps them in the record
        assert _writes(saver, configs) == expected
    with ThreadlineSaver.from_conn_string(url) as reopened:
        assert _writes(reopened, configs) == expected
        latest = reopened.get_tuple({"configurable": {"thread_id": "t"}})
        assert latest is not None and latest.pending_writes == expected[1]
        listed = list(reopened.list({"configurable": {"thread_id": "t"}}))
        assert [t.pending_writes for t in reversed(listed)] == expected
