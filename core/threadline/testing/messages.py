"""Conformance: appending, reading and windowing messages."""

from __future__ import annotations

import asyncio

import attrs
import pytest

from threadline import (
    ApiCall,
    ConflictError,
    Message,
    NotFoundError,
    Store,
    ToolCall,
    ValidationError,
)
from threadline.ids import new_id
from threadline.testing._support import new_conversation, without_seq


@pytest.mark.asyncio
class MessageConformance:
    """Messages: append, batch, idempotent retry, order, window by rounds, count, update."""

    async def test_append_assigns_increasing_seq(self, store: Store) -> None:
        conv = await new_conversation(store)
        saved = [await conv.add("user", f"m{i}") for i in range(5)]
        assert [m.seq for m in saved] == [1, 2, 3, 4, 5]
        assert [m.content for m in await conv.messages()] == [f"m{i}" for i in range(5)]

    async def test_round_trip_is_exact(self, store: Store) -> None:
        conv = await new_conversation(store, agent_id=new_id())
        call = ToolCall(id="call_1", name="get_time", arguments={"tz": "UTC", "n": [1, 2.5]})
        original = conv.message(
            "assistant",
            "the time is",
            agent_id=new_id(),
            tool_calls=[call],
            name="bot",
            status="cancelled",
            metadata={"model": "m", "nested": {"a": [1, None, True]}, "f": 0.1},
        )
        stored = await store.save_message(original)
        assert stored.seq == 1
        assert without_seq(stored) == original
        [read] = await conv.messages()
        assert read == stored
        tool = await conv.add("tool", '{"ok": true}', tool_call_id="call_1", name="get_time")
        assert (await conv.messages())[1] == tool

    async def test_batch_append_keeps_order(self, store: Store) -> None:
        conv = await new_conversation(store)
        await conv.add("system", "be brief")
        batch = [conv.message("user" if i % 2 == 0 else "assistant", f"b{i}") for i in range(100)]
        stored = await store.save_messages(batch)
        assert [m.seq for m in stored] == list(range(2, 102))
        assert [without_seq(m) for m in stored] == batch
        assert await store.count_messages(conv.tenant_id, conv.id) == 101

    async def test_retrying_the_same_id_is_idempotent(self, store: Store) -> None:
        conv = await new_conversation(store)
        message = conv.message("user", "once")
        first = await store.save_message(message)
        again = await store.save_message(message)
        assert again == first
        batch = [conv.message("assistant", "a"), conv.message("user", "b")]
        stored = await store.save_messages(batch)
        assert await store.save_messages(batch) == stored
        after = await conv.add("assistant", "next")
        assert after.seq == 4  # no gap left by the retries
        assert await store.count_messages(conv.tenant_id, conv.id) == 4

    async def test_message_id_from_another_session_conflicts(self, store: Store) -> None:
        a = await new_conversation(store)
        b = await new_conversation(store, tenant_id=a.tenant_id)
        message = await a.add("user", "mine")
        with pytest.raises(ConflictError):
            await store.save_message(attrs.evolve(message, session_id=b.id, seq=None))
        assert await b.messages() == []
        assert await a.messages() == [message]

    async def test_save_to_missing_session_is_not_found(self, store: Store) -> None:
        message = Message(session_id=new_id(), tenant_id=new_id(), role="user", content="x")
        with pytest.raises(NotFoundError):
            await store.save_message(message)
        with pytest.raises(NotFoundError):
            await store.save_messages([message])

    async def test_get_messages_after_seq_and_limit(self, store: Store) -> None:
        conv = await new_conversation(store)
        for i in range(10):
            await conv.add("user", str(i))
        page = await store.get_messages(conv.tenant_id, conv.id, after_seq=3, limit=4)
        assert [m.seq for m in page] == [4, 5, 6, 7]
        assert await store.get_messages(conv.tenant_id, conv.id, after_seq=10) == []

    async def test_window_keeps_system_and_last_rounds_with_tool_pairs(self, store: Store) -> None:
        conv = await new_conversation(store)
        system = await conv.add("system", "you are terse")
        rounds = [await conv.add_round(n, tool=n % 2 == 1) for n in range(6)]
        window = await store.load_window(conv.tenant_id, conv.id, 2)
        assert window == [system, *rounds[4], *rounds[5]]
        window = await store.load_window(conv.tenant_id, conv.id, 3)
        assert window == [system, *rounds[3], *rounds[4], *rounds[5]]
        assert window[1].role == "user"
        tool_ids = {m.tool_call_id for m in window if m.role == "tool"}
        call_ids = {c.id for m in window for c in m.tool_calls}
        assert tool_ids == call_ids and tool_ids
        everything = await store.load_window(conv.tenant_id, conv.id, None)
        assert everything == await conv.messages()
        assert await store.load_window(conv.tenant_id, conv.id, 100) == everything
        assert await store.load_window(conv.tenant_id, conv.id, 0) == [system]

    async def test_window_never_orphans_a_tool_result(self, store: Store) -> None:
        conv = await new_conversation(store)
        await conv.add("user", "q1")
        call = ToolCall(id="slow-call", name="slow", arguments={})
        asked = await conv.add("assistant", "", tool_calls=[call])
        interrupting = await conv.add("user", "are you there?")
        result = await conv.add("tool", "done", tool_call_id="slow-call")
        reply = await conv.add("assistant", "yes")
        window = await store.load_window(conv.tenant_id, conv.id, 1)
        assert window == await conv.messages()  # grew back to the call's round
        assert asked in window and result in window
        assert window[-3:] == [interrupting, result, reply]

    async def test_window_of_unknown_session_is_empty(self, store: Store) -> None:
        assert await store.load_window(new_id(), new_id(), 2) == []
        assert await store.count_messages(new_id(), new_id()) == 0

    async def test_update_message_keeps_seq(self, store: Store) -> None:
        conv = await new_conversation(store)
        await conv.add("user", "hi")
        partial = await conv.add("assistant", "Hel", status="streaming")
        done = attrs.evolve(partial, content="Hello!", status="complete", metadata={"t": 1})
        updated = await store.update_message(done)
        assert updated == done
        assert (await conv.messages())[1] == done
        with pytest.raises(NotFoundError):
            await store.update_message(conv.message("assistant", "ghost"))

    async def test_interrupt_streaming_marks_leftovers(self, store: Store) -> None:
        conv = await new_conversation(store)
        await conv.add("user", "hi")
        left = await conv.add("assistant", "partial repl", status="streaming")
        assert await store.interrupt_streaming(conv.tenant_id, conv.id) == 1
        [_, read] = await conv.messages()
        assert read == attrs.evolve(left, status="interrupted")
        assert await store.interrupt_streaming(conv.tenant_id, conv.id) == 0

    async def test_concurrent_appends_never_share_a_seq(self, store: Store) -> None:
        conv = await new_conversation(store)

        async def writer(w: int) -> None:
            for i in range(10):
                await conv.add("user", f"{w}-{i}")

        await asyncio.gather(*(writer(w) for w in range(10)))
        messages = await conv.messages()
        assert [m.seq for m in messages] == list(range(1, 101))
        assert len({m.content for m in messages}) == 100

    async def test_api_calls_round_trip(self, store: Store) -> None:
        conv = await new_conversation(store)
        request = await conv.add("user", "hi")
        call = ApiCall(
            tenant_id=conv.tenant_id,
            session_id=conv.id,
            model="gpt-test",
            status="success",
            request_message_id=request.id,
            prompt_tokens=12,
            completion_tokens=30,
            total_tokens=42,
            latency_ms=812.5,
            time_to_first_token_ms=95.25,
            tokens_per_second=41.5,
            response_id="chatcmpl-1",
            user_id=conv.session.user_id,
        )
        assert await store.save_api_call(call) == call
        assert await store.save_api_call(call) == call
        failed = ApiCall(
            tenant_id=conv.tenant_id,
            session_id=conv.id,
            model="gpt-test",
            status="rate_limited",
            error_message="slow down",
            error_code="429",
        )
        await store.save_api_call(failed)
        assert await store.list_api_calls(conv.tenant_id, conv.id) == [call, failed]

    async def test_api_call_id_from_another_session_conflicts(self, store: Store) -> None:
        a = await new_conversation(store)
        b = await new_conversation(store, tenant_id=a.tenant_id)
        call = ApiCall(tenant_id=a.tenant_id, session_id=a.id, model="m", status="success")
        await store.save_api_call(call)
        with pytest.raises(ConflictError):
            await store.save_api_call(attrs.evolve(call, session_id=b.id))
        assert await store.list_api_calls(b.tenant_id, b.id) == []

    # -- duplicate ids: within one batch, and the same write racing itself ---------------

    async def test_a_batch_holding_an_id_twice_is_refused_whole(self, store: Store) -> None:
        conv = await new_conversation(store)
        kept = await conv.add("user", "before")
        twice = conv.message("assistant", "once")
        batch = [conv.message("user", "a"), twice, attrs.evolve(twice, content="twice")]
        with pytest.raises(ValidationError):
            await store.save_messages(batch)
        with pytest.raises(ValidationError):
            await store.save_messages([kept, conv.message("user", "b"), kept])
        assert await conv.messages() == [kept]
        assert await store.count_messages(conv.tenant_id, conv.id) == 1
        assert (await conv.add("user", "after")).seq == 2

    async def test_the_same_write_racing_itself_stores_one_row(self, store: Store) -> None:
        """Retries that overlap (a client timeout, then the retry) never duplicate a row."""
        conv = await new_conversation(store)
        message = conv.message("user", "once")
        results = await asyncio.gather(*(store.save_message(message) for _ in range(5)))
        assert {m.seq for m in results} == {1}
        batch = [conv.message("assistant", "a"), conv.message("user", "b")]
        batches = await asyncio.gather(*(store.save_messages(batch) for _ in range(5)))
        assert all(b == batches[0] for b in batches)
        assert [m.seq for m in await conv.messages()] == [1, 2, 3]
        call = ApiCall(tenant_id=conv.tenant_id, session_id=conv.id, model="m", status="success")
        calls = await asyncio.gather(*(store.save_api_call(call) for _ in range(5)))
        assert all(c == call for c in calls)
        assert await store.list_api_calls(conv.tenant_id, conv.id) == [call]
