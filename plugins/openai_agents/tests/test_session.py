"""The Agents SDK ``Session`` protocol on every store: what a Runner relies on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from agents import SQLiteSession
from agents.memory import Session as SessionProtocol
from agents_sample_items import EVERY_ITEM, user

from threadline import PersistenceContext, Store, connect
from threadline.errors import ConfigurationError, ConflictError, ValidationError
from threadline.ids import new_id
from threadline.models import ToolCall
from threadline_openai_agents import (
    MessageDeletionUnsupportedError,
    ThreadlineSession,
    thread_session_id,
)
from threadline_openai_agents.items import ROW_FIELDS, message_from_item


def session_of(store: Store, name: str = "conversation-1", **kwargs: Any) -> ThreadlineSession:
    return ThreadlineSession(name, store, **kwargs)


async def test_it_is_an_sdk_session(store: Store) -> None:
    session = session_of(store, session_settings={"limit": 3})
    assert isinstance(session, SessionProtocol)
    assert session.session_id == "conversation-1"
    assert session.session_settings is not None and session.session_settings.limit == 3


async def test_an_unknown_session_is_empty(store: Store, deletes: Callable[[], None]) -> None:
    session = session_of(store)
    assert await session.get_items() == []
    assert await session.get_items(5) == []
    deletes()
    assert await session.pop_item() is None
    await session.clear_session()
    assert await store.get_session(session.tenant_id, session.thread_session_id) is None


async def test_items_come_back_in_order_and_limit_takes_the_latest(store: Store) -> None:
    session = session_of(store)
    items = [user(f"message {i}") for i in range(7)]
    await session.add_items(items[:3])
    await session.add_items(items[3:])
    await session.add_items([])
    assert await session.get_items() == items
    assert await session.get_items(3) == items[-3:]
    assert await session.get_items(1) == items[-1:]
    assert await session.get_items(100) == items
    assert await session.get_items(0) == []


async def test_session_settings_limit_is_the_default(store: Store) -> None:
    await session_of(store).add_items([user(str(i)) for i in range(5)])
    limited = session_of(store, session_settings={"limit": 2})
    assert await limited.get_items() == [user("3"), user("4")]
    assert await limited.get_items(4) == [user(str(i)) for i in range(1, 5)]


async def test_every_item_type_round_trips_exactly(store: Store) -> None:
    session = session_of(store)
    await session.add_items(EVERY_ITEM)
    got = await session.get_items()
    assert got == EVERY_ITEM
    # byte for byte as json.dumps writes it: key order and number types kept too
    assert [json.dumps(i) for i in got] == [json.dumps(i) for i in EVERY_ITEM]
    assert await session.get_items(4) == EVERY_ITEM[-4:]
    stored = await store.get_messages(session.tenant_id, session.thread_session_id)
    forms = {type(m.metadata["openai_agents"]["item"]) for m in stored if m.metadata}
    assert forms == {str}  # one stored form on every store: the item's exact JSON text
    reopened = await connect(store.url) if store.url is not None else store
    try:
        assert await session_of(reopened).get_items() == EVERY_ITEM
    finally:
        if reopened is not store:
            await reopened.close()


@pytest.mark.parametrize("as_object", [False, True], ids=["text-form", "object-form"])
async def test_items_stored_in_either_form_read_back_the_same(
    store: Store, kind: str, as_object: bool
) -> None:
    """A session written in the text form (every store) or in the object form an earlier
    release wrote on SQLite (the item's JSON object in the metadata; or copied onto another
    store) reads back the items it holds."""
    session = session_of(store)
    await session.add_items([user("first")])  # creates the session
    messages = [
        message_from_item(
            item,
            session_id=session.thread_session_id,
            tenant_id=session.tenant_id,
            user_id=None,
            agent_id=None,
        )
        for item in EVERY_ITEM
    ]
    if as_object:  # the earlier release's layout: {"item": {...}, "text": [...]}
        for m in messages:
            if m.metadata:
                stored = m.metadata["openai_agents"]
                stored["item"] = json.loads(stored["item"])
    await store.save_messages(messages)
    expected = [user("first"), *EVERY_ITEM]
    got = await session.get_items()
    assert got == expected
    if not as_object or kind != "postgres":  # jsonb orders an object's keys its way
        assert [json.dumps(i) for i in got] == [json.dumps(i) for i in expected]
    assert await session.get_items(3) == expected[-3:]
    # what a caller does to the items it got never reaches the stored history
    for item in got:
        item.clear()
    assert await session.get_items() == expected
    for item in await session.get_items(2):
        item.clear()
    assert await session.get_items(2) == expected[-2:]
    assert await session_of(store).get_items() == expected  # a new object: read afresh
    assert await session.pop_item() == expected[-1]
    assert await session.get_items() == expected[:-1]


async def test_a_session_sees_what_other_processes_did_since_it_last_read(
    store: Store, deletes: Callable[[], None]
) -> None:
    """The items kept between reads never hide a change made through another connection
    (another process): appends, pops, clears, a deleted and recreated session, the newest
    message rewritten."""
    deletes()
    assert store.url is not None
    other = await connect(store.url)
    try:
        reader, writer = session_of(store), session_of(other)
        await writer.add_items([user("a"), user("b")])
        assert await reader.get_items() == [user("a"), user("b")]
        assert await reader.get_items(1) == [user("b")]
        await writer.add_items([EVERY_ITEM[4], EVERY_ITEM[5]])
        assert await reader.get_items() == [user("a"), user("b"), EVERY_ITEM[4], EVERY_ITEM[5]]
        assert await writer.pop_item() == EVERY_ITEM[5]
        assert await reader.get_items(2) == [user("b"), EVERY_ITEM[4]]
        await writer.pop_item()
        await writer.add_items([user("c")])  # as many items as before the pop, a new seq
        assert await session_of(store).get_items() == [user("a"), user("b"), user("c")]
        await writer.clear_session()
        await writer.add_items([user("x"), user("y"), user("z")])
        assert await reader.get_items() == [user("x"), user("y"), user("z")]
        assert await other.delete_session(reader.tenant_id, reader.thread_session_id)
        assert await reader.get_items(3) == []
        await writer.add_items([user("1"), user("2"), user("3")])  # seqs 1-3 again, new ids
        assert await reader.get_items() == [user("1"), user("2"), user("3")]
        newest = await other.read_messages(
            reader.tenant_id, reader.thread_session_id, limit=1, newest_first=True
        )
        await other.update_message(attrs.evolve(newest[0], content="3 (edited)"))
        assert await reader.get_items() == [user("1"), user("2"), user("3 (edited)")]
    finally:
        await other.close()


async def test_items_are_readable_threadline_messages(store: Store) -> None:
    """Roles, text and call ids land in the message fields the CLI, UI and windows use."""
    session = session_of(store)
    await session.add_items(EVERY_ITEM[:6])
    stored = await store.get_messages(session.tenant_id, session.thread_session_id)
    assert [(m.role, m.content, m.tool_call_id) for m in stored] == [
        ("user", "What is the weather in Paris?", None),
        ("system", "Answer in French.", None),
        ("user", "Et à Lyon ?", None),
        ("assistant", "Je regarde.", None),
        ("assistant", '{"city":"Paris"}', None),
        ("tool", "ensoleillé, 21°C", "call_weather_1"),
    ]
    row = await store.get_session(session.tenant_id, session.thread_session_id)
    assert row is not None and row.title == "conversation-1"


async def test_pop_item_removes_and_returns_the_newest(
    store: Store, deletes: Callable[[], None]
) -> None:
    deletes()
    session = session_of(store)
    await session.add_items([user("a"), user("b"), user("c")])
    assert await session.pop_item() == user("c")
    assert await session.pop_item() == user("b")
    assert await session.get_items() == [user("a")]
    await session.add_items([user("d")])
    assert await session.get_items() == [user("a"), user("d")]
    assert await session.get_items(1) == [user("d")]
    assert await session.pop_item() == user("d")
    assert await session.pop_item() == user("a")
    assert await session.pop_item() is None
    # the session row stays: its id, owner and title
    assert await store.get_session(session.tenant_id, session.thread_session_id) is not None


async def test_clear_session_keeps_the_session(store: Store, deletes: Callable[[], None]) -> None:
    deletes()
    session = session_of(store, user_id=new_id())
    other = session_of(store, "conversation-2")
    await session.add_items(EVERY_ITEM)
    await other.add_items([user("untouched")])
    await session.clear_session()
    assert await session.get_items() == []
    assert await session.pop_item() is None
    row = await store.get_session(session.tenant_id, session.thread_session_id)
    assert row is not None and row.user_id == session.user_id
    await session.add_items([user("again")])
    assert await session.get_items() == [user("again")]
    assert await other.get_items() == [user("untouched")]


async def test_concurrent_add_items_keep_each_batch_whole_and_in_order(store: Store) -> None:
    sessions = [session_of(store) for _ in range(4)]  # separate objects: no shared lock
    batches = [[user(f"{w}-{i}") for i in range(5)] for w in range(8)]
    await asyncio.gather(*(sessions[w % 4].add_items(b) for w, b in enumerate(batches)))
    got = await sessions[0].get_items()
    assert sorted(map(json.dumps, got)) == sorted(json.dumps(i) for b in batches for i in b)
    starts = [got.index(b[0]) for b in batches]
    for start, batch in zip(starts, batches):
        assert got[start : start + 5] == batch


async def test_sessions_and_tenants_are_apart(store: Store) -> None:
    tenant_a, tenant_b = new_id(), new_id()
    a = session_of(store, tenant_id=tenant_a)
    b = session_of(store, tenant_id=tenant_b)
    other = session_of(store, "conversation-2", tenant_id=tenant_a)
    await a.add_items([user("for a")])
    await b.add_items([user("for b")])
    assert await a.get_items() == [user("for a")]
    assert await b.get_items() == [user("for b")]
    assert await other.get_items() == []
    assert a.thread_session_id != b.thread_session_id
    assert a.thread_session_id == thread_session_id(tenant_a, "conversation-1")


async def test_a_uuid_session_id_is_the_threadline_session(store: Store) -> None:
    """An SDK session named by a threadline session's id reads what threadline's agent wrote."""
    ctx = await PersistenceContext.open(store, tenant_id=new_id(), user_id=new_id())
    await ctx.save_user_message("what time is it?")
    call = ToolCall(id="call_1", name="clock", arguments={"tz": "UTC"})
    await ctx.store.save_message(ctx.message("assistant", "", tool_calls=[call]))
    await ctx.store.save_message(ctx.message("tool", "12:00", tool_call_id="call_1"))
    await ctx.save_assistant_message("It is noon.")
    session = session_of(store, ctx.session_id, tenant_id=ctx.tenant_id, user_id=ctx.user_id)
    assert await session.get_items() == [
        {"role": "user", "content": "what time is it?"},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "clock",
            "arguments": '{"tz": "UTC"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "12:00"},
        {"role": "assistant", "content": "It is noon."},
    ]
    await session.add_items([user("and tomorrow?")])
    history = await ctx.get_history()
    assert [m.content for m in history][-1] == "and tomorrow?"


async def test_a_session_deleted_meanwhile_starts_again(store: Store) -> None:
    """``threadline sessions delete`` (or erase-user) under a live session object."""
    session = session_of(store, user_id=new_id())
    await session.add_items([user("before")])
    assert await store.delete_session(session.tenant_id, session.thread_session_id)
    assert await session.get_items() == []
    await session.add_items([user("after")])
    assert await session.get_items() == [user("after")]
    row = await store.get_session(session.tenant_id, session.thread_session_id)
    assert row is not None and row.user_id == session.user_id


async def test_another_users_session_is_refused(store: Store) -> None:
    await session_of(store, user_id=new_id()).add_items([user("mine")])
    intruder = session_of(store, user_id=new_id())
    with pytest.raises(ConflictError):
        await intruder.add_items([user("theirs")])
    assert await session_of(store).get_items() == [user("mine")]


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ("a string", "must be a dict"),
        ({"role": "user", "content": float("nan")}, "not JSON"),
        ({"role": "user", "content": "x", "blob": b"bytes"}, "not JSON"),
        ({"role": "user", "content": "\ud800"}, "Unicode"),
    ],
)
async def test_a_bad_item_is_refused_and_nothing_of_its_batch_is_stored(
    store: Store, bad: Any, words: str
) -> None:
    session = session_of(store)
    await session.add_items([user("kept")])
    with pytest.raises(ValidationError, match=words):
        await session.add_items([user("not stored"), bad])
    assert await session.get_items() == [user("kept")]


async def test_bad_arguments_are_typed_errors(store: Store) -> None:
    with pytest.raises(ValidationError):
        ThreadlineSession("", store)
    with pytest.raises(ValidationError):
        ThreadlineSession("x", store, tenant_id="not-a-uuid")
    with pytest.raises(ValidationError):
        ThreadlineSession("x", 42)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await session_of(store).get_items(-1)


class _ReadSpy(Store):
    """The facade, recording the reads a session asks for."""

    calls: list[tuple[str, dict[str, Any]]]

    async def read_messages(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(("read_messages", kwargs))
        return await super().read_messages(*args, **kwargs)

    async def get_messages(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(("get_messages", kwargs))
        return await super().get_messages(*args, **kwargs)

    async def read_message_rows(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(("read_message_rows", {"fields": args[2], **kwargs}))
        return await super().read_message_rows(*args, **kwargs)


async def test_get_items_with_a_limit_reads_only_that_many_newest_first(store: Store) -> None:
    spy = _ReadSpy(*store.plugins)
    spy.calls = []
    session = session_of(spy)
    await session.add_items([user(str(i)) for i in range(50)])
    assert await session.get_items(3) == [user("47"), user("48"), user("49")]
    # nothing kept: the store's rows of the item's fields, no Message built
    rows = {"fields": ROW_FIELDS, "limit": 3, "newest_first": True}
    assert spy.calls == [("read_message_rows", rows)]


async def test_a_read_after_a_read_fetches_only_the_new_messages(store: Store) -> None:
    """A Runner's read before each turn costs the new turn, not the whole history again."""
    spy = _ReadSpy(*store.plugins)
    spy.calls = []
    session = session_of(spy)
    await session.add_items([user(str(i)) for i in range(50)])
    assert len(await session.get_items()) == 50
    await session.add_items([user("50"), user("51")])
    spy.calls.clear()
    assert await session.get_items() == [user(str(i)) for i in range(52)]
    assert await session.get_items(3) == [user("49"), user("50"), user("51")]
    # each read: from the newest message already held on (it is checked, seqs 50 and 52)
    assert spy.calls == [("read_messages", {"after_seq": 49}), ("read_messages", {"after_seq": 51})]


async def test_a_store_without_delete_messages_refuses_pop_and_clear() -> None:
    pytest.importorskip("threadline_memory")
    from threadline_memory.store import MemoryStore

    class MemoryWithoutDeletes(MemoryStore):
        threadline_delete_messages = None  # type: ignore[assignment]

    store = Store(MemoryWithoutDeletes())
    session = session_of(store)
    await session.add_items([user("a"), user("b")])
    for operation in (session.pop_item, session.clear_session):
        with pytest.raises(MessageDeletionUnsupportedError, match="delete_messages") as info:
            await operation()
        assert isinstance(info.value, ConfigurationError)
    assert await session.get_items() == [user("a"), user("b")]


async def test_a_url_session_opens_and_closes_its_own_store(store_url: str) -> None:
    async with ThreadlineSession("by-url", store_url) as session:
        await session.add_items([user("persisted")])
    again = ThreadlineSession("by-url", store_url)
    try:
        assert await again.get_items() == [user("persisted")]
    finally:
        await again.close()
    with pytest.raises(ConfigurationError):
        await session.get_items()  # closed with its store


async def test_it_behaves_like_the_sdks_sqlite_session(
    store: Store, deletes: Callable[[], None]
) -> None:
    """The same operations give the same answers as ``agents.SQLiteSession``."""
    deletes()
    ours, theirs = session_of(store), SQLiteSession("conversation-1")
    script: list[tuple[str, Any]] = [
        ("get", None),
        ("pop", None),
        ("add", EVERY_ITEM[:5]),
        ("get", 2),
        ("add", EVERY_ITEM[5:]),
        ("get", None),
        ("get", 0),
        ("get", 1),
        ("get", 1000),
        ("pop", None),
        ("pop", None),
        ("get", 3),
        ("clear", None),
        ("get", None),
        ("pop", None),
        ("add", [user("after clear")]),
        ("get", None),
    ]
    try:
        for op, arg in script:
            results = []
            for session in (ours, theirs):
                if op == "get":
                    results.append(await session.get_items(arg))
                elif op == "add":
                    results.append(await session.add_items(arg))
                elif op == "pop":
                    results.append(await session.pop_item())
                else:
                    results.append(await session.clear_session())
            assert results[0] == results[1], (op, arg)
    finally:
        theirs.close()


async def test_a_first_read_of_a_fork_gives_its_items_then_keeps_them(store: Store) -> None:
    """The first read takes rows (a fork's shared rows resolved by the store); the next
    read finds the newest row it kept still stored and reads only what came after."""
    session = session_of(store)
    long_items = [user("long " * 100), {**EVERY_ITEM[1], "content": "x" * 500}]
    await session.add_items([*EVERY_ITEM, *long_items])
    t = session.tenant_id
    stored = await store.get_messages(t, session.thread_session_id)
    fork = await store.fork_session(t, session.thread_session_id, at=stored[-1].id)
    spy = _ReadSpy(*store.plugins)
    spy.calls = []
    forked = session_of(spy, fork.id, tenant_id=t)
    assert forked.thread_session_id == fork.id
    assert await forked.get_items() == [*EVERY_ITEM, *long_items]
    assert await forked.get_items(2) == long_items
    assert [name for name, _ in spy.calls] == ["read_message_rows", "read_messages"]


async def test_the_caller_may_change_what_a_read_returned(store: Store) -> None:
    """A first read hands out the items it built (the kept ones are a snapshot) and later
    reads hand out copies: changing either changes nothing kept."""
    session = session_of(store)
    await session.add_items(EVERY_ITEM)
    for limit in (None, 3, None, 2):
        got = await session_of(store).get_items(limit)
        assert got == EVERY_ITEM[-(limit or len(EVERY_ITEM)) :]
        for item in got:
            item["role"] = "changed"
            item.pop("content", None)
        got.clear()
    await session.add_items([user("new")])
    assert await session.get_items() == [*EVERY_ITEM, user("new")]
    assert await session.get_items(2) == [EVERY_ITEM[-1], user("new")]
