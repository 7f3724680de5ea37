"""A graph run's conversation in the messages table, consistent with its checkpoints after
resume, rollback (in this agent or another) and further runs, on memory, SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from reliability._servers import postgres_url

import threadline
from threadline.graph import GraphAgent, GraphContext, Persistency, Strategy
from threadline.ids import new_id

__all__ = ["postgres_url"]


class Crash(Exception):
    """Stands in for a process dying in a node."""


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        pytest.importorskip("threadline_sqlite")
        return f"sqlite:///{tmp_path / 'graph.db'}"
    if request.param == "postgres":
        pytest.importorskip("threadline_postgres")
        found: str = request.getfixturevalue("postgres_url")
        return found
    return "memory://"


@pytest_asyncio.fixture
async def store(url: str) -> AsyncIterator[threadline.Store]:
    store = await threadline.connect(url)
    yield store
    await store.close()


def agent_on(store: threadline.Store, crash: dict[str, bool]) -> GraphAgent:
    """ask -> answer -> polish -> finish; ``answer`` edits nothing, ``polish`` may crash."""
    s = Strategy("chat")

    @s.node("ask")
    async def ask(ctx: GraphContext, text: str) -> str:
        ctx.append("user", text)
        return text

    @s.node("answer")
    async def answer(ctx: GraphContext, text: str) -> str:
        ctx.append("assistant", f"draft: {text}")
        return text

    @s.node("polish")
    async def polish(ctx: GraphContext, text: str) -> str:
        if crash.get("polish"):
            raise Crash("polish")
        ctx.append("assistant", f"final: {text}")
        return text

    s.edge(s.start, ask).edge(ask, answer).edge(answer, polish).edge(polish, s.finish)
    return GraphAgent(
        s, provider="echo", system_prompt="be kind", tenant_id=TENANT, features=[Persistency(store)]
    )


TENANT = new_id()


async def stored(store: threadline.Store, sid: str) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in await store.get_messages(TENANT, sid)]


async def test_a_run_writes_its_messages_and_the_next_run_follows(store: threadline.Store) -> None:
    agent, sid = agent_on(store, {}), new_id()
    await agent.run("hello", session_id=sid)
    first = [("system", "be kind"), ("user", "hello"), ("assistant", "draft: hello"),
             ("assistant", "final: hello")]  # fmt: skip
    assert await stored(store, sid) == first
    latest = await agent.persistency(sid).get_latest_checkpoint()
    assert latest is not None
    assert [m.id for m in await store.get_messages(TENANT, sid)] == [m.id for m in latest.history]
    await agent.run("again", session_id=sid)
    assert (await stored(store, sid))[:4] == first
    assert (await stored(store, sid))[4:] == [("system", "be kind"), ("user", "again"),
                                              ("assistant", "draft: again"),
                                              ("assistant", "final: again")]  # fmt: skip


async def test_a_crash_then_resume_stores_each_message_once(store: threadline.Store) -> None:
    crash = {"polish": True}
    agent, sid = agent_on(store, crash), new_id()
    with pytest.raises(Crash):
        await agent.run("hello", session_id=sid)
    assert await stored(store, sid) == [("system", "be kind"), ("user", "hello"),
                                        ("assistant", "draft: hello")]  # fmt: skip
    crash["polish"] = False
    again = agent_on(store, crash)  # another agent object, as after a restart
    await again.run("ignored", session_id=sid)
    assert [c for r, c in await stored(store, sid)] == ["be kind", "hello", "draft: hello",
                                                        "final: hello"]  # fmt: skip


async def test_rollback_removes_the_messages_after_the_point(store: threadline.Store) -> None:
    agent, sid = agent_on(store, {}), new_id()
    await agent.run("hello", session_id=sid)
    checkpoints = await agent.persistency(sid).get_checkpoints()
    after_ask = checkpoints[0]  # written after `ask`: system prompt + the question
    assert [m.content for m in after_ask.history] == ["be kind", "hello"]
    before = await store.get_messages(TENANT, sid)
    # rolled back from another agent object: this one's view of the table is stale then
    other = agent_on(store, {})
    await other.persistency(sid).rollback_to_checkpoint(after_ask.id)
    assert await stored(store, sid) == [("system", "be kind"), ("user", "hello")]
    # the run resumes at `answer`: its new messages continue after every seq given
    await agent.run("ignored", session_id=sid)
    now = await store.get_messages(TENANT, sid)
    assert [m.content for m in now] == ["be kind", "hello", "draft: hello", "final: hello"]
    assert [m.id for m in now[:2]] == [m.id for m in before[:2]]
    assert (now[2].seq or 0) > (before[-1].seq or 0)
    latest = await agent.persistency(sid).get_latest_checkpoint()
    assert latest is not None and [m.id for m in latest.history] == [m.id for m in now]
