"""Undo, regenerate and edit on the memory store: what is replaced stays as a branch."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

import threadline
from threadline import AgentBuilder, NotFoundError, PersistenceContext, ValidationError
from threadline.ids import new_id
from threadline.runtime.editing import BRANCH_REASON
from threadline.runtime.providers import ChatRequest, StreamEnd, TextDelta, Usage
from threadline.store.branching import forked_from

TENANT, USER = new_id(), new_id()


class CountingProvider:
    """Answers ``reply N to <last user text>``, N counting every request."""

    name = "counting"
    default_model = "counting-1"

    def __init__(self) -> None:
        self.count = itertools.count(1)
        self.requests: list[ChatRequest] = []

    async def stream(self, request: ChatRequest) -> AsyncIterator[TextDelta | StreamEnd]:
        self.requests.append(request)
        asked = [m for m in request.messages if m.role == "user"][-1].content
        yield TextDelta(f"reply {next(self.count)} ")
        yield TextDelta(f"to {asked}")
        yield StreamEnd(finish_reason="stop", usage=Usage(5, 3, 8), model="counting-1")

    async def aclose(self) -> None:
        return None


@pytest_asyncio.fixture
async def store() -> AsyncIterator[threadline.Store]:
    store = await threadline.connect("memory://")
    yield store
    await store.close()


async def agent_on(store: threadline.Store, provider: CountingProvider) -> threadline.Agent:
    builder = (
        AgentBuilder("You are terse.")
        .with_store(store)
        .with_tenant_id(TENANT)
        .with_user_id(USER)
        .with_provider(provider)  # type: ignore[arg-type]
    )
    return await builder.build()


def texts(messages: list[threadline.Message]) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in messages]


async def test_regenerate_replaces_the_last_reply_and_keeps_the_old_one(
    store: threadline.Store,
) -> None:
    provider = CountingProvider()
    agent = await agent_on(store, provider)
    await agent.chat("hi")
    await agent.chat("how are you")
    before = await agent.history()
    assert await agent.regenerate() == "reply 3 to how are you"
    after = await agent.history()
    assert texts(after) == [*texts(before[:-1]), ("assistant", "reply 3 to how are you")]
    assert after[:-1] == before[:-1]
    assert (after[-1].seq or 0) > (before[-1].seq or 0)  # seqs are never reused
    # the model saw the history up to the question, not the replaced reply
    assert texts(list(provider.requests[-1].messages)) == texts(before[:-1])
    [branch] = await store.list_branches(TENANT, agent.session_id)
    assert branch.metadata[BRANCH_REASON] == "regenerate"
    assert forked_from(branch) == {
        "session_id": agent.session_id,
        "at": before[-1].id,
        "kind": "message",
        "seq": before[-1].seq,
    }
    assert texts(await store.get_messages(TENANT, branch.id)) == texts(before)
    calls = await store.list_api_calls(TENANT, agent.session_id)
    assert [c.request_message_id for c in calls][-1] == before[-2].id
    assert calls[-1].response_message_id == after[-1].id


async def test_edit_replaces_a_question_and_answers_it_again(store: threadline.Store) -> None:
    agent = await agent_on(store, CountingProvider())
    sid = agent.session_id
    await agent.chat("first question", metadata={"lang": "en"})
    await agent.chat("second question")
    before = await agent.history()
    first = before[1]
    assert await agent.edit(sid, first.id, "better question") == "reply 3 to better question"
    after = await agent.history()
    assert texts(after) == [
        ("system", "You are terse."),
        ("user", "better question"),
        ("assistant", "reply 3 to better question"),
    ]
    assert after[1].metadata == {"lang": "en"} and after[1].id != first.id
    [branch] = await store.list_branches(TENANT, sid)
    assert branch.metadata[BRANCH_REASON] == "edit"
    assert texts(await store.get_messages(TENANT, branch.id)) == texts(before)
    # regenerating after the edit keeps a second branch, oldest first
    await agent.regenerate(sid)
    branches = await store.list_branches(TENANT, sid)
    assert len(branches) == 2 and branches[0].id == branch.id


async def test_editing_refuses_what_it_cannot_do(store: threadline.Store) -> None:
    agent = await agent_on(store, CountingProvider())
    with pytest.raises(NotFoundError):
        await agent.regenerate(new_id())  # no such session
    await agent.open_session()
    with pytest.raises(NotFoundError):
        await agent.regenerate()  # nothing asked yet
    await agent.chat("hi")
    reply = (await agent.history())[-1]
    with pytest.raises(ValidationError):
        await agent.edit(None, reply.id, "x")  # not the user's message
    with pytest.raises(NotFoundError):
        await agent.edit(None, new_id(), "x")
    with pytest.raises(ValidationError):
        await agent.edit(None, reply.id, 42)  # type: ignore[arg-type]
    assert await store.list_branches(TENANT, agent.session_id) == []
    assert len(await agent.history()) == 3  # nothing changed


async def test_regenerate_after_an_unanswered_question_just_answers(
    store: threadline.Store,
) -> None:
    agent = await agent_on(store, CountingProvider())
    await agent.open_session()
    ctx = await PersistenceContext.open(
        store, tenant_id=TENANT, user_id=USER, session_id=agent.session_id
    )
    await ctx.save_user_message("left unanswered")
    assert await agent.regenerate() == "reply 1 to left unanswered"
    assert await store.list_branches(TENANT, agent.session_id) == []


async def test_context_pop_last_undoes_an_item_or_a_round(store: threadline.Store) -> None:
    ctx = await PersistenceContext.open(store, tenant_id=TENANT, user_id=USER)
    await ctx.save_user_message("q1")
    await ctx.save_assistant_message("a1")
    await ctx.save_user_message("q2")
    last = await ctx.save_assistant_message("a2")
    assert [m.id for m in await ctx.pop_last()] == [last]
    assert texts(await ctx.pop_last(round=True)) == [("user", "q2")]
    assert texts(await ctx.get_history()) == [("user", "q1"), ("assistant", "a1")]
    await ctx.save_user_message("q3")
    history = await ctx.get_history()
    assert [m.seq for m in history] == [1, 2, 5]


async def test_regenerate_sends_the_agents_window(store: threadline.Store) -> None:
    provider = CountingProvider()
    agent = await (
        AgentBuilder("You are terse.")
        .with_store(store)
        .with_tenant_id(TENANT)
        .with_user_id(USER)
        .with_provider(provider)  # type: ignore[arg-type]
        .with_sliding_window(1)
        .build()
    )
    for text in ("one", "two", "three"):
        await agent.chat(text)
    await agent.regenerate()
    assert texts(list(provider.requests[-1].messages)) == [
        ("system", "You are terse."),
        ("user", "three"),
    ]
