"""PersistenceContext: manual persistence of a conversation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

import threadline
from threadline import ConflictError, PersistenceContext, ToolCall, ValidationError
from threadline.ids import new_id


@pytest_asyncio.fixture
async def store() -> AsyncIterator[threadline.Store]:
    store = await threadline.connect("memory://")
    yield store
    await store.close()


async def test_save_and_read_history(store: threadline.Store) -> None:
    tenant, user, agent = new_id(), new_id(), new_id()
    ctx = await PersistenceContext.open(store, user_id=user, tenant_id=tenant, agent_id=agent)
    await ctx.save_system_message("be brief")
    ids = []
    for i in range(3):
        ids.append(await ctx.save_user_message(f"q{i}", metadata={"i": i}))
        ids.append(await ctx.save_assistant_message(f"a{i}", metadata={"model": "m"}))
    history = await ctx.get_history()
    assert [m.content for m in history] == ["be brief", "q0", "a0", "q1", "a1", "q2", "a2"]
    assert [m.id for m in history[1:]] == ids
    assert all(m.user_id == user and m.agent_id == agent for m in history)
    assert history[1].metadata == {"i": 0}
    last = await ctx.get_history(last_rounds=2)
    assert [m.content for m in last] == ["be brief", "q1", "a1", "q2", "a2"]


async def test_resume_by_session_id(store: threadline.Store) -> None:
    tenant, user = new_id(), new_id()
    first = await PersistenceContext.open(store, user_id=user, tenant_id=tenant)
    await first.save_user_message("remember me")
    call = ToolCall(id="c1", name="clock", arguments={})
    await first.save_assistant_message("", tool_calls=[call])
    await first.save_tool_message("c1", "12:00", name="clock")
    again = await PersistenceContext.open(
        store, user_id=user, tenant_id=tenant, session_id=first.session_id
    )
    assert again.session_id == first.session_id
    history = await again.get_history()
    assert [m.role for m in history] == ["user", "assistant", "tool"]
    assert history[1].tool_calls == (call,)


async def test_unknown_session_id_is_created_with_that_id(store: threadline.Store) -> None:
    sid = new_id()
    ctx = await PersistenceContext.open(store, tenant_id=new_id(), session_id=sid)
    assert ctx.session_id == sid


async def test_another_tenants_session_is_not_resumed(store: threadline.Store) -> None:
    owner = await PersistenceContext.open(store, tenant_id=new_id(), user_id=new_id())
    await owner.save_user_message("private")
    with pytest.raises(ConflictError):
        await PersistenceContext.open(store, tenant_id=new_id(), session_id=owner.session_id)
    with pytest.raises(ConflictError, match="another user"):
        await PersistenceContext.open(
            store, tenant_id=owner.tenant_id, user_id=new_id(), session_id=owner.session_id
        )
    assert [m.content for m in await owner.get_history()] == ["private"]


async def test_reopening_marks_crashed_replies_interrupted(store: threadline.Store) -> None:
    ctx = await PersistenceContext.open(store, tenant_id=new_id())
    await ctx.save_user_message("hi")
    await ctx.save_assistant_message("partial", status="streaming")
    again = await PersistenceContext.open(store, tenant_id=ctx.tenant_id, session_id=ctx.session_id)
    assert again.interrupted == 1
    assert (await again.get_history())[-1].status == "interrupted"


async def test_new_session_starts_empty(store: threadline.Store) -> None:
    ctx = await PersistenceContext.open(store, tenant_id=new_id(), user_id=new_id())
    await ctx.save_user_message("one")
    old = ctx.session_id
    new = await ctx.new_session(title="second")
    assert new != old and ctx.session_id == new
    assert await ctx.get_history() == []
    sessions = await store.list_sessions(ctx.tenant_id, user_id=ctx.user_id)
    assert {s.id for s in sessions} == {old, new}


async def test_bad_ids_are_refused(store: threadline.Store) -> None:
    with pytest.raises(ValidationError, match="tenant_id"):
        await PersistenceContext.open(store, tenant_id="acme")
    with pytest.raises(ValidationError, match="session_id"):
        await PersistenceContext.open(store, tenant_id=new_id(), session_id="../../x")
