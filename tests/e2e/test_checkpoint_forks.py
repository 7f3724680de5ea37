"""Forks at a graph checkpoint end to end on SQLite and PostgreSQL: when the session's
message log begins with the checkpoint's history the fork shares the stored bytes, else
(after a rollback, a later run, an edited history) it copies; either way its messages and
its checkpoint hold the source checkpoint's history, a graph agent resumes in it, the
source changing afterwards leaves it as it was, and a retried fork adds nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import attrs
import pytest
import pytest_asyncio

pytest.importorskip("threadline_sqlite", reason="needs threadline-sqlite (the e2e tox env)")

from reliability._servers import postgres_url

import threadline
from threadline import Checkpoint, Message
from threadline.graph import GraphAgent, GraphContext, Persistency, Strategy
from threadline.ids import new_id
from threadline.storekit.forks import fork_message_id

__all__ = ["postgres_url"]

TENANT = new_id()
LONG = " and then some more words to be kept" * 6  # > 128 bytes: stores share, not copy


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'checkpoint-forks.db'}"
    else:
        pytest.importorskip("threadline_postgres")
        yield request.getfixturevalue("postgres_url")


@pytest_asyncio.fixture
async def store(url: str) -> AsyncIterator[threadline.Store]:
    store = await threadline.connect(url)
    yield store
    await store.close()


async def shared_rows(url: str, session_id: str) -> int:
    """How many of the session's stored rows point at another row's content."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            sql = (
                "SELECT count(*) FROM entity_message m JOIN entity_session s "
                "ON m.session_key = s.key WHERE s.id = ? AND m.shared_key IS NOT NULL"
            )
            found: int = conn.execute(sql, (session_id,)).fetchone()[0]
            return found
    import asyncpg

    from threadline_postgres.rows import SHARED_KEY

    conn = await asyncpg.connect(url, timeout=5)
    try:
        sql = "SELECT count(*) FROM entity_message WHERE session_id = $1 AND metadata ? $2"
        count: int = await conn.fetchval(sql, session_id, SHARED_KEY)
        return count
    finally:
        await conn.close()


def agent_on(store: threadline.Store) -> GraphAgent:
    """ask -> answer -> polish -> finish, each node adding one long message."""
    s = Strategy("chat")

    @s.node("ask")
    async def ask(ctx: GraphContext, text: str) -> str:
        ctx.append("user", text + LONG)
        return text

    @s.node("answer")
    async def answer(ctx: GraphContext, text: str) -> str:
        ctx.append("assistant", f"draft: {text}{LONG}")
        return text

    @s.node("polish")
    async def polish(ctx: GraphContext, text: str) -> str:
        ctx.append("assistant", f"final: {text}{LONG}")
        return text

    s.edge(s.start, ask).edge(ask, answer).edge(answer, polish).edge(polish, s.finish)
    return GraphAgent(
        s,
        provider="echo",
        system_prompt="be kind" + LONG,
        tenant_id=TENANT,
        features=[Persistency(store)],
    )


def kept(messages: list[Message] | tuple[Message, ...]) -> list[tuple[object, ...]]:
    return [(m.role, m.content, m.tool_calls, m.status, m.metadata) for m in messages]


async def at_node(agent: GraphAgent, sid: str, node: str) -> Checkpoint:
    """The session's checkpoint written before ``node`` runs (the newest such one)."""
    found = [c for c in await agent.persistency(sid).get_checkpoints() if c.node_id == node]
    return found[-1]


async def check_fork(
    store: threadline.Store, sid: str, point: Checkpoint, fork_id: str
) -> list[Message]:
    """The fork holds ``point``'s history, as messages and as its one checkpoint."""
    messages = await store.get_messages(TENANT, fork_id)
    assert kept(messages) == kept(point.history)
    assert [m.id for m in messages] == [fork_message_id(sid, fork_id, m.id) for m in point.history]
    checkpoints = await store.list_checkpoints(TENANT, session_id=fork_id)
    assert len(checkpoints) == 1
    copy = await store.get_checkpoint(TENANT, checkpoints[0].id)
    assert copy is not None and copy.node_id == point.node_id
    assert [m.id for m in copy.history] == [m.id for m in messages]
    assert kept(copy.history) == kept(point.history)
    return messages


async def test_a_fork_at_a_checkpoint_shares_bytes_resumes_and_outlives_its_source(
    store: threadline.Store, url: str
) -> None:
    agent, sid = agent_on(store), new_id()
    await agent.run("hello", session_id=sid)
    point = await at_node(agent, sid, "polish")  # system prompt, question, draft
    source = await store.get_messages(TENANT, sid)
    assert [m.id for m in source[:3]] == [m.id for m in point.history]

    fork = await store.fork_session(TENANT, sid, at=point.id)
    before = await check_fork(store, sid, point, fork.id)
    assert await shared_rows(url, fork.id) == 3  # the bytes are the source's
    assert [m.seq for m in before] == [m.seq for m in source[:3]]

    # retried: nothing is added
    again = await store.fork_session(TENANT, sid, at=point.id, new_session_id=fork.id)
    assert again.id == fork.id
    assert await store.get_messages(TENANT, fork.id) == before
    assert len(await store.list_checkpoints(TENANT, session_id=fork.id)) == 1

    # the source is rolled back, rewritten and deleted: the fork keeps what it had
    handle = agent.persistency(sid)
    await handle.rollback_to_checkpoint((await at_node(agent, sid, "answer")).id)
    first = (await store.get_messages(TENANT, sid))[0]
    await store.update_message(attrs.evolve(first, content="be rude" + LONG))
    assert await store.get_messages(TENANT, fork.id) == before
    assert await store.delete_session(TENANT, sid)
    assert await store.get_messages(TENANT, fork.id) == before
    assert await shared_rows(url, fork.id) == 0  # copied into the fork before they went

    # a graph agent resumes in the fork: `polish` runs there, its message follows
    fresh = agent_on(store)
    assert await fresh.run("ignored", session_id=fork.id) == "hello"
    after = await store.get_messages(TENANT, fork.id)
    assert after[:3] == before
    assert [m.content for m in after[3:]] == ["final: hello" + LONG]
    latest = [c for c in await store.list_checkpoints(TENANT, session_id=fork.id)]
    newest = await store.get_checkpoint(TENANT, latest[-1].id)
    assert newest is not None and [m.id for m in newest.history] == [m.id for m in after]


async def test_checkpoints_the_message_log_does_not_begin_with_are_copied(
    store: threadline.Store, url: str
) -> None:
    agent, sid = agent_on(store), new_id()
    await agent.run("hello", session_id=sid)
    old_polish = await at_node(agent, sid, "polish")
    await agent.persistency(sid).rollback_to_checkpoint((await at_node(agent, sid, "answer")).id)
    await agent.run("ignored", session_id=sid)  # the resumed run stores new messages
    await agent.run("second", session_id=sid)  # a later run: its history starts anew
    second = await at_node(agent, sid, "polish")
    stored = await store.get_messages(TENANT, sid)
    # one edited by hand: the stored system prompt says something else
    edited = await store.create_checkpoint(
        attrs.evolve(
            old_polish,
            id=new_id(),
            parent_id=None,
            version=None,
            history=(attrs.evolve(stored[0], content="be rude" + LONG), *stored[1:3]),
        )
    )
    for point in (old_polish, second, edited):
        fork = await store.fork_session(TENANT, sid, at=point.id)
        copied = await check_fork(store, sid, point, fork.id)
        assert await shared_rows(url, fork.id) == 0
        assert [m.seq for m in copied] == [1, 2, 3]
        again = await store.fork_session(TENANT, sid, at=point.id, new_session_id=fork.id)
        assert await store.get_messages(TENANT, again.id) == copied
        resumed = await agent_on(store).run("ignored", session_id=fork.id)
        assert resumed == ("hello" if point is not second else "second")
        assert [m.content for m in (await store.get_messages(TENANT, fork.id))[3:]] == [
            f"final: {resumed}{LONG}"
        ]
    assert await store.get_messages(TENANT, sid) == stored  # the source is untouched
