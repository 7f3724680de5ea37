"""Conformance of ``threadline_read_message_rows``: rows of only the fields asked for.

Every store answers it, through its own implementation or the core's default (over
``read_messages``): the rows must hold exactly what the messages read the long way hold
(a fork's shared rows resolved), for every field, range and order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from threadline.errors import ValidationError
from threadline.ids import new_id
from threadline.models import Message, ToolCall
from threadline.plugins.dispatch import Binding
from threadline.queries import MessageRange
from threadline.store import Store
from threadline.storekit.message_rows import ROW_FIELDS
from threadline.testing._support import Conversation, new_conversation

__all__ = ["MessageRowConformance"]

_HOOK = "threadline_read_message_rows"


def _row(message: Message, fields: tuple[str, ...]) -> tuple[Any, ...]:
    """What the contract says a message's row of ``fields`` holds (the metadata decoded)."""
    return tuple(
        (message.metadata or None) if f == "metadata" else getattr(message, f) for f in fields
    )


def _decoded(rows: Sequence[tuple[Any, ...]], fields: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """``rows`` with the metadata's JSON text decoded (checked to be text or ``None``)."""
    if "metadata" not in fields:
        return list(rows)
    at = fields.index("metadata")
    out = []
    for row in rows:
        text = row[at]
        assert text is None or isinstance(text, str), f"metadata must be JSON text: {text!r}"
        value = None if text is None else json.loads(text)
        assert value != {}, "empty metadata must come as None"
        out.append((*row[:at], value, *row[at + 1 :]))
    return out


async def _history(conv: Conversation) -> list[Message]:
    """Every kind of value: text with NUL and the escape marks, tool calls, tool results,
    statuses, names, metadata (and none), a long text (a fork shares it)."""
    await conv.add("system", "be brief")
    meta = {"k": ["v\x00\x01", 1, None, 0.1]}
    await conv.add("user", "nul \x00 soh \x01 and ünïcode 🙂", metadata=meta)
    call = ToolCall(id="call_1", name="lookup", arguments={"q": "x\x00", "n": [1, 2.5]})
    await conv.add("assistant", "", tool_calls=[call], agent_id=new_id())
    await conv.add("tool", '{"ok": true}', tool_call_id="call_1", name="lookup")
    await conv.add("assistant", "long " * 100, status="cancelled", metadata={"m": {"a": True}})
    await conv.add("user", "last", metadata={})
    return await conv.messages()


@pytest.mark.asyncio
class MessageRowConformance:
    """``Store.read_message_rows``: a message range as tuples of some fields."""

    async def test_rows_hold_what_the_messages_hold(self, store: Store) -> None:
        conv = await new_conversation(store)
        messages = await _history(conv)
        t, s = conv.tenant_id, conv.id
        everything = await store.read_message_rows(t, s, ROW_FIELDS)
        assert _decoded(everything, ROW_FIELDS) == [_row(m, ROW_FIELDS) for m in messages]
        assert all(type(r) is tuple for r in everything)
        agents = ("seq", "role", "content", "tool_call_id", "tool_calls", "metadata")
        for fields in (("content",), ("metadata", "seq"), agents, ("created_at", "id")):
            rows = await store.read_message_rows(t, s, fields)
            assert _decoded(rows, fields) == [_row(m, fields) for m in messages], fields
        assert everything[-1][ROW_FIELDS.index("metadata")] is None  # empty: None

    async def test_ranges_and_order_are_read_messages_ones(self, store: Store) -> None:
        conv = await new_conversation(store)
        for i in range(12):
            await conv.add("user" if i % 2 == 0 else "assistant", f"m{i}")
        await store.delete_messages(conv.tenant_id, conv.id, after_seq=10)  # a gap after 10
        await conv.add("user", "after the gap")
        t, s, fields = conv.tenant_id, conv.id, ("seq", "content")
        ranges: list[dict[str, Any]] = [
            {},
            {"after_seq": 3},
            {"after_seq": 3, "limit": 4},
            {"before_seq": 6},
            {"after_seq": 2, "before_seq": 9, "limit": 3, "newest_first": True},
            {"limit": 2, "newest_first": True},
            {"after_seq": 13},
            {"limit": 0},
        ]
        for kwargs in ranges:
            expected = await store.read_messages(t, s, **kwargs)
            rows = await store.read_message_rows(t, s, fields, **kwargs)
            assert rows == [(m.seq, m.content) for m in expected], kwargs
        assert [r[0] for r in await store.read_message_rows(t, s, ("seq",))] == [
            *range(1, 11), 13
        ]  # fmt: skip

    async def test_a_role_range_through_the_hook(self, store: Store) -> None:
        conv = await new_conversation(store)
        messages = await _history(conv)
        hooks = Binding(store.pm, store.primary)
        query = MessageRange(after_seq=1, role="assistant", newest_first=True)
        rows = await hooks.call(
            _HOOK, tenant_id=conv.tenant_id, session_id=conv.id, query=query, fields=("seq",)
        )
        wanted = [(m.seq,) for m in reversed(messages) if m.role == "assistant"]
        assert list(rows) == wanted

    async def test_a_forks_rows_are_resolved(self, store: Store) -> None:
        conv = await new_conversation(store)
        source = await _history(conv)
        t, s = conv.tenant_id, conv.id
        fork = await store.fork_session(t, s, at=source[-2].id)
        copied = await store.get_messages(t, fork.id)
        second = await store.fork_session(t, fork.id, at=copied[-1].id)  # a fork of a fork
        fields = ("content", "tool_calls", "metadata", "role", "seq")
        for session_id in (fork.id, second.id):
            messages = await store.get_messages(t, session_id)
            assert len(messages) == len(source) - 1
            rows = await store.read_message_rows(t, session_id, fields)
            assert _decoded(rows, fields) == [_row(m, fields) for m in messages]
            assert _decoded(rows, fields) == [_row(m, fields) for m in source[:-1]]
        await store.delete_session(t, s)  # the source's bytes go into the sharing rows
        rows = await store.read_message_rows(t, second.id, fields)
        assert _decoded(rows, fields) == [_row(m, fields) for m in source[:-1]]

    async def test_unknown_sessions_and_other_tenants_read_nothing(self, store: Store) -> None:
        conv = await new_conversation(store)
        await conv.add("user", "hi")
        assert await store.read_message_rows(conv.tenant_id, new_id(), ("seq",)) == []
        assert await store.read_message_rows(new_id(), conv.id, ("seq",)) == []

    async def test_fields_are_checked(self, store: Store) -> None:
        conv = await new_conversation(store)
        t, s = conv.tenant_id, conv.id
        for bad in ((), ("seq", "seq"), ("session_id",), ("tenant_id",), ("nope",), "seq",
                    ("seq", 1), None):  # fmt: skip
            with pytest.raises(ValidationError):
                await store.read_message_rows(t, s, bad)  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            await store.read_message_rows(t, s, ("seq",), after_seq=-1)
