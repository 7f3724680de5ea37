"""Regenerate, edit, fork and undo end to end on SQLite and PostgreSQL, with the real OpenAI
provider over HTTP on 127.0.0.1: what the model is sent, what the session and its branches
hold afterwards, read again through a new connection, and the CLI on the same store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

pytest.importorskip("threadline_sqlite", reason="needs threadline-sqlite (the e2e tox env)")
pytest.importorskip("threadline_openai", reason="needs threadline-openai (the e2e tox env)")

from reliability._servers import postgres_url

import threadline
from threadline import Message, PersistenceContext
from threadline.cli import cli
from threadline.ids import new_id
from threadline.runtime.editing import BRANCH_REASON
from threadline.store.branching import forked_from
from threadline_openai import OpenAIProvider

from .openai_server import ECHO_PREFIX, OpenAIServer

__all__ = ["postgres_url"]

TENANT = "019bda9f-0000-7000-8000-0000000000b1"
USER = "019bda9f-0000-7000-8000-0000000000b2"
SYSTEM = "You answer in echoes."


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'conversations.db'}"
    else:
        pytest.importorskip("threadline_postgres")
        yield request.getfixturevalue("postgres_url")


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer() as srv:
        yield srv


async def make_agent(
    store: threadline.Store, server: OpenAIServer, tools: list[object] = ()
) -> threadline.Agent:  # type: ignore[assignment]
    provider = OpenAIProvider(api_key="sk-e2e", base_url=server.base_url, model="mock-model")
    builder = (
        threadline.AgentBuilder(SYSTEM)
        .with_store(store)
        .with_tenant_id(TENANT)
        .with_user_id(USER)
        .with_provider(provider)
        .with_session_id(new_id())
        .with_tools(list(tools))  # type: ignore[arg-type]
    )
    return await builder.build()


async def invoke(*args: str) -> Result:
    """The CLI in a thread of its own (it runs its own event loop)."""
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args))


def texts(messages: list[Message]) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in messages]


def sent(server: OpenAIServer) -> list[tuple[str, str]]:
    """The roles and texts of the last request the model got."""
    return [(m["role"], m.get("content") or "") for m in server.requests[-1].messages]


async def test_regenerate_redoes_a_tool_round_and_keeps_the_old_one(
    url: str, server: OpenAIServer
) -> None:
    calls: list[str] = []

    def get_time(timezone: str) -> str:
        """The time in ``timezone``."""
        calls.append(timezone)
        return f"{len(calls)}:00 in {timezone}"

    store = await threadline.connect(url)
    agent = await make_agent(store, server, [get_time])
    await agent.chat("hello")
    await agent.chat('tool:get_time {"timezone": "UTC"}')
    before = await agent.history()
    assert before[-1].content == ECHO_PREFIX + "1:00 in UTC"
    reply = await agent.regenerate()
    await agent.close()
    await store.close()
    assert reply == ECHO_PREFIX + "2:00 in UTC" and calls == ["UTC", "UTC"]

    again = await threadline.connect(url)  # what a new connection reads
    try:
        sid = agent.session_id
        after = await again.get_messages(TENANT, sid)
        assert [m.id for m in after[:4]] == [m.id for m in before[:4]]  # up to the question
        assert [(m.role, m.status) for m in after[4:]] == [
            ("assistant", "complete"),
            ("tool", "complete"),
            ("assistant", "complete"),
        ]
        assert after[-1].content == reply
        assert min(m.seq or 0 for m in after[4:]) > (before[-1].seq or 0)
        [branch] = await again.list_branches(TENANT, sid)
        assert branch.metadata[BRANCH_REASON] == "regenerate"
        assert texts(await again.get_messages(TENANT, branch.id)) == texts(before)
        assert await again.count_messages(TENANT, sid) == len(after)
    finally:
        await again.close()


async def test_edit_answers_the_new_question_and_cli_lists_the_branch(
    url: str, server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await threadline.connect(url)
    agent = await make_agent(store, server)
    await agent.chat("what is two plus two")
    await agent.chat("and three plus three")
    before = await agent.history()
    question = before[1]
    reply = await agent.edit(agent.session_id, question.id, "what is two times two")
    after = await agent.history()
    await agent.close()
    await store.close()

    assert reply == ECHO_PREFIX + "what is two times two"
    assert sent(server) == [("system", SYSTEM), ("user", "what is two times two")]
    assert texts(after) == [
        ("system", SYSTEM),
        ("user", "what is two times two"),
        ("assistant", reply),
    ]
    monkeypatch.setenv("THREADLINE_STORE", url)
    monkeypatch.setenv("TENANT_ID", TENANT)
    listed = await invoke("sessions", "branches", agent.session_id, "--json")
    assert listed.exit_code == 0, listed.output
    [branch] = json.loads(listed.output)
    assert branch["metadata"][BRANCH_REASON] == "edit" and branch["messages"] == len(before)
    shown = await invoke("sessions", "show", branch["id"], "--json")
    assert [m["content"] for m in json.loads(shown.output)["messages"]] == [
        m.content for m in before
    ]


async def test_fork_continues_on_its_own_and_undo_keeps_seqs_going(
    url: str, server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await threadline.connect(url)
    agent = await make_agent(store, server)
    await agent.chat("first")
    await agent.chat("second")
    source = await agent.history()
    monkeypatch.setenv("THREADLINE_STORE", url)
    monkeypatch.setenv("TENANT_ID", TENANT)
    forked = await invoke("sessions", "fork", agent.session_id, "--at", source[2].id, "--json")
    assert forked.exit_code == 0, forked.output
    fork_id = json.loads(forked.output)["id"]  # written by the CLI's own connection
    try:
        [fork] = await store.list_branches(TENANT, agent.session_id)
        assert fork.id == fork_id and forked_from(fork)["seq"] == source[2].seq  # type: ignore[index]
        # the fork is a conversation of its own: the agent continues it
        assert (
            await agent.chat("another second", session_id=fork_id) == ECHO_PREFIX + "another second"
        )
        assert sent(server)[1:] == [
            ("user", "first"),
            ("assistant", ECHO_PREFIX + "first"),
            ("user", "another second"),
        ]
        assert texts(await store.get_messages(TENANT, agent.session_id)) == texts(source)
        # undo on the fork: a round, then a message; the next seq continues past them all
        ctx = await PersistenceContext.open(
            store, tenant_id=TENANT, user_id=USER, session_id=fork_id
        )
        highest = (await store.read_messages(TENANT, fork_id, limit=1, newest_first=True))[0].seq
        assert texts(await ctx.pop_last(round=True)) == [
            ("user", "another second"),
            ("assistant", ECHO_PREFIX + "another second"),
        ]
        assert texts(await ctx.pop_last()) == [("assistant", ECHO_PREFIX + "first")]
        saved = await ctx.save(ctx.message("assistant", "redone"))
        assert (saved.seq or 0) > (highest or 0)
        assert texts(await ctx.get_history()) == [
            ("system", SYSTEM),
            ("user", "first"),
            ("assistant", "redone"),
        ]
    finally:
        await agent.close()
        await store.close()
