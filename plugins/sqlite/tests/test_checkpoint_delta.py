"""The shared codec of incremental checkpoint histories (threadline.storekit.delta).

It lives in the core; it is tested here, beside its first user, directly (no store).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threadline.errors import StoreError, ValidationError
from threadline.ids import new_id
from threadline.models import Message, ToolCall
from threadline.storekit import delta as cd

T, S, U, A = new_id(), new_id(), new_id(), new_id()
IDS = {"tenant_id": T, "session_id": S}


def _msg(role: Any = "user", content: str = "hi", **fields: Any) -> Message:
    values: dict[str, Any] = {"session_id": S, "tenant_id": T, "user_id": U, "agent_id": A}
    values.update(fields)
    return Message(role=role, content=content, **values)


def _hostile() -> list[Message]:
    return [
        _msg("system", "be brief", user_id=None, agent_id=None),
        _msg("user", "NUL\x00, 🧵 and \u2028", created_at=datetime(1999, 12, 31, 23, 59, 59,
                                                                 999_999, tzinfo=timezone.utc)),
        _msg("assistant", "", tool_calls=[ToolCall(id="c1", name="f", arguments={"a": [1, None]})],
             status="streaming", metadata={"model": "m", "x": {"y": 1.5}}, seq=3),
        _msg("tool", "42", tool_call_id="c1", name="f", user_id=None),
        _msg("user", "from elsewhere", session_id=new_id(), tenant_id=new_id(), agent_id=None),
        _msg("assistant", "back", status="error", user_id=new_id()),
    ]  # fmt: skip


def _chain(steps: list[list[Message]], every: int = cd.SNAPSHOT_EVERY) -> list[cd.EncodedHistory]:
    """Encode each history as a checkpoint whose parent is the previous one."""
    out: list[cd.EncodedHistory] = []
    parent: list[Message] | None = None
    for history in steps:
        depth = out[-1].depth if out else 0
        out.append(cd.encode_history(history, **IDS, parent=parent, parent_depth=depth,
                                     snapshot_every=every))  # fmt: skip
        parent = history
    return out


def _restore(encoded: list[cd.EncodedHistory], index: int) -> tuple[Message, ...]:
    """Rebuild checkpoint ``index`` from the records of its chain only (as a store would)."""
    start = index
    while encoded[start].keep is not None:
        start -= 1
    records = [json.loads(e.text) for e in encoded[start : index + 1]]
    return cd.rebuild(records, **IDS)


# -- records ---------------------------------------------------------------------------------


def test_snapshot_round_trips_every_field() -> None:
    history = _hostile()
    encoded = cd.encode_history(history, **IDS)
    assert encoded.is_snapshot and encoded.depth == 0 and encoded.keep is None
    record = json.loads(encoded.text)
    assert record["v"] == cd.FORMAT_VERSION == 1 and record["kind"] == "snapshot"
    assert cd.rebuild([encoded.text], **IDS) == tuple(history)
    assert cd.rebuild([record], **IDS) == tuple(history)
    assert cd.rebuild([encoded.record], **IDS) == tuple(history)


def test_items_leave_out_defaults_and_repeated_ids() -> None:
    history = [_msg("user", "a"), _msg("assistant", "b"), _msg("user", "", agent_id=None)]
    items = json.loads(cd.encode_history(history, **IDS).text)["messages"]
    assert set(items[0]) == {"id", "role", "content", "at", "user_id", "agent_id"}
    assert set(items[1]) == {"id", "role", "content", "at"}  # ids as the previous message's
    assert set(items[2]) == {"id", "role", "at", "agent_id"} and items[2]["agent_id"] is None
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert items[0]["at"] == (history[0].created_at - epoch) // timedelta(microseconds=1)


def test_a_step_stores_only_the_new_messages() -> None:
    first = [_msg("user", "q1"), _msg("assistant", "a1")]
    second = [*first, _msg("user", "q2"), _msg("assistant", "a2")]
    encoded = _chain([first, second])
    assert encoded[1].keep == 2 and encoded[1].depth == 1
    record = json.loads(encoded[1].text)
    assert record["kind"] == "delta" and [m["content"] for m in record["messages"]] == ["q2", "a2"]
    assert all(set(m) == {"id", "role", "content", "at"} for m in record["messages"])
    assert _restore(encoded, 1) == tuple(second)


def test_rollback_copy_truncation_and_divergence() -> None:
    base = [_msg(content=str(i)) for i in range(6)]
    copy = _chain([base, list(base)])[1]  # a rollback copy: the parent's very history
    assert copy.keep == 6 and json.loads(copy.text)["messages"] == []
    cut = _chain([base, base[:3]])
    assert cut[1].keep == 3 and _restore(cut, 1) == tuple(base[:3])
    diverged = [*base[:4], _msg(content="other")]
    encoded = _chain([base, diverged])
    assert encoded[1].keep == 4 and _restore(encoded, 1) == tuple(diverged)
    fresh = [_msg(content="new")]  # nothing in common: a snapshot, its chain starts again
    encoded = _chain([base, base, fresh])
    assert encoded[2].is_snapshot and encoded[2].depth == 0


def test_equal_messages_are_shared_and_changed_ones_are_not() -> None:
    base = [_msg(content="a"), _msg(content="b")]
    rebuilt = [attrs.evolve(m) for m in base]  # equal, not identical (read back from a store)
    assert cd.common_prefix(rebuilt, base) == 2
    edited = [base[0], attrs.evolve(base[1], content="b, finished")]  # same id, new content
    encoded = _chain([base, edited])
    assert encoded[1].keep == 1 and _restore(encoded, 1) == tuple(edited)


def test_an_empty_parent_history_gives_a_snapshot() -> None:
    encoded = _chain([[], [_msg()]])
    assert encoded[1].is_snapshot


def test_chains_never_exceed_snapshot_every_records() -> None:
    every = 5
    histories: list[list[Message]] = []
    history: list[Message] = []
    for i in range(23):
        history = [*history, _msg(content=f"m{i}")]
        histories.append(history)
    encoded = _chain(histories, every=every)
    depths = [e.depth for e in encoded]
    assert depths == [0, 1, 2, 3, 4] * 4 + [0, 1, 2]
    for index, history in enumerate(histories):
        assert _restore(encoded, index) == tuple(history)
    stored = sum(len(json.loads(e.text)["messages"]) for e in encoded)
    assert stored == 23 + 5 + 10 + 15 + 20  # one message a step, and the snapshots' earlier ones


def test_parallel_children_of_one_parent() -> None:
    parent = [_msg(content="p")]
    parent_encoded = cd.encode_history(parent, **IDS)
    left = cd.encode_history([*parent, _msg(content="l")], **IDS, parent=parent, parent_depth=0)
    right = cd.encode_history([*parent, _msg(content="r")], **IDS, parent=parent, parent_depth=0)
    assert cd.rebuild([parent_encoded.text, left.text], **IDS)[-1].content == "l"
    assert cd.rebuild([parent_encoded.text, right.text], **IDS)[-1].content == "r"


def test_unserialisable_content_is_refused() -> None:
    bad = _msg(metadata={"x": object()})
    with pytest.raises(ValidationError):
        cd.encode_history([bad], **IDS)
    with pytest.raises(ValidationError):
        cd.encode_history([_msg(), bad], **IDS, parent=[_msg()], parent_depth=0)


# -- format versions and damage --------------------------------------------------------------


def test_a_newer_format_asks_for_an_upgrade() -> None:
    with pytest.raises(StoreError, match="upgrade"):
        cd.rebuild([{"v": 2, "kind": "snapshot", "messages": []}], **IDS)


@pytest.mark.parametrize(
    "record",
    [
        "not json",
        "[1, 2]",
        {"kind": "snapshot", "messages": []},
        {"v": 1, "kind": "snapshot"},
        {"v": 1, "kind": "delta", "messages": []},
        {"v": 1, "kind": "patch", "keep": 0, "messages": []},
        {"v": 1, "kind": "delta", "keep": -1, "messages": []},
        {"v": 1, "kind": "delta", "keep": 3, "messages": []},  # more than the parent has
    ],
)
def test_damaged_records_raise_store_errors(record: Any) -> None:
    with pytest.raises(StoreError):
        cd.rebuild([{"v": 1, "kind": "snapshot", "messages": []}, record], **IDS)


def test_rebuild_on_a_base_decoded_elsewhere() -> None:
    base = [_msg(content="legacy")]
    delta = cd.encode_history([*base, _msg(content="new")], **IDS, parent=base, parent_depth=0)
    assert [m.content for m in cd.rebuild([delta.text], **IDS, base=base)] == ["legacy", "new"]


# -- the cache -------------------------------------------------------------------------------


def test_history_cache_checks_tags_and_stays_bounded() -> None:
    cache = cd.HistoryCache(max_entries=3, max_messages=10)
    history = tuple(_msg() for _ in range(4))
    cache.put("a", 1, 0, history)
    assert cache.get("a") == cd.CachedHistory(1, 0, history)
    assert cache.get(None) is None and cache.get("missing") is None
    cache.put("old-format", None, None, history)  # no tag: never cached
    assert cache.get("old-format") is None
    cache.put("b", 2, 1, history)
    cache.put("c", 3, 2, history[:1])
    assert len(cache) == 3
    cache.put("d", 4, 0, history)  # 13 messages > 10: the least recently used go
    assert cache.get("a") is None and cache.get("d") is not None
    cache.put("huge", 5, 0, tuple(_msg() for _ in range(11)))
    assert cache.get("huge") is None
    cache.clear()
    assert len(cache) == 0
    assert 0 < cd.new_tag() < 2**63


# -- any sequence of edits rebuilds exactly -------------------------------------------------

_POOL = _hostile() + [_msg(content=f"pool {i}") for i in range(6)]
_edits = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, len(_POOL) - 1)),
        st.tuples(st.just("truncate"), st.integers(0, 8)),
        st.tuples(st.just("replace"), st.integers(0, len(_POOL) - 1)),
        st.tuples(st.just("restart"), st.integers(0, 0)),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(_edits, st.integers(1, 6))
def test_any_edit_sequence_rebuilds_every_checkpoint(edits: list[Any], every: int) -> None:
    histories: list[list[Message]] = []
    history: list[Message] = []
    for op, n in edits:
        if op == "append":
            history = [*history, _POOL[n]]
        elif op == "truncate":
            history = history[: max(0, len(history) - n)]
        elif op == "replace" and history:
            history = [*history[:-1], _POOL[n]]
        elif op == "restart":
            history = []
        histories.append(history)
    encoded = _chain(histories, every=every)
    for index, expected in enumerate(histories):
        assert encoded[index].depth < every
        assert _restore(encoded, index) == tuple(expected)
