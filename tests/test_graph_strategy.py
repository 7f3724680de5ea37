"""threadline.graph: strategies, edges, the node context (history, state, model, tools)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

import threadline
from threadline.graph import (
    DuplicateNodeNameError,
    Feature,
    GraphAgent,
    GraphContext,
    GraphError,
    Persistency,
    Strategy,
    default_agent_id,
)
from threadline.ids import new_id


@pytest_asyncio.fixture
async def store() -> AsyncIterator[threadline.Store]:
    store = await threadline.connect("memory://")
    yield store
    await store.close()


def triage(calls: Counter[str]) -> Strategy:
    """classify -> (answer | escalate) -> finish, routed by the classifier's output."""
    s = Strategy("triage")

    @s.node("classify")
    async def classify(ctx: GraphContext, text: str) -> str:
        calls["classify"] += 1
        ctx.append("user", text)
        return "question" if text.endswith("?") else "complaint"

    @s.node("answer")
    async def answer(ctx: GraphContext, kind: str) -> str:
        calls["answer"] += 1
        return f"answered a {kind}"

    @s.node("escalate")
    async def escalate(ctx: GraphContext, ticket: dict[str, str]) -> str:
        calls["escalate"] += 1
        return f"escalated {ticket['kind']}"

    s.edge(s.start, classify)
    s.edge(classify, answer, when=lambda kind: kind == "question")
    s.edge(classify, escalate, transform=lambda kind: {"kind": kind})
    s.edge(answer, s.finish).edge(escalate, s.finish)
    return s


async def test_conditional_edges_route_start_to_finish() -> None:
    calls: Counter[str] = Counter()
    agent = GraphAgent(triage(calls), provider="echo")
    assert await agent.run("why?") == "answered a question"
    assert await agent.run("bad service") == "escalated complaint"
    assert calls == Counter(classify=2, answer=1, escalate=1)


async def test_async_conditions_and_sync_nodes() -> None:
    s = Strategy("sync")

    @s.node
    def double(ctx: GraphContext, n: int) -> int:  # a plain function works too
        return n * 2

    async def is_big(n: int) -> bool:
        await asyncio.sleep(0)
        return n > 10

    s.edge(s.start, double).edge(double, s.finish, when=is_big)
    s.edge(double, double)
    assert await GraphAgent(s, provider="echo").run(3) == 12


async def test_no_matching_edge_is_a_clear_error() -> None:
    s = Strategy("stuck")
    node = s.add_node("only", lambda ctx, x: x)
    s.edge(s.start, node).edge(node, s.finish, when=lambda x: x == "ok")
    with pytest.raises(GraphError, match=r"no edge from node 'only'.*int"):
        await GraphAgent(s, provider="echo").run(5)


def test_malformed_strategies_are_refused() -> None:
    s = Strategy("bad")
    with pytest.raises(GraphError, match="no edge from its start"):
        GraphAgent(s, provider="echo")
    node = s.add_node("a", lambda ctx, x: x)
    s.edge(s.start, node)
    with pytest.raises(GraphError, match=r"\['a'\] have no outgoing edge"):
        GraphAgent(s, provider="echo")
    with pytest.raises(GraphError, match="no edge can leave the finish"):
        s.edge(s.finish, node)
    with pytest.raises(GraphError, match="no edge can enter the start"):
        s.edge(node, s.start)
    with pytest.raises(GraphError, match="no node named 'ghost'"):
        s.edge(node, "ghost")
    with pytest.raises(GraphError, match="is not a node of strategy"):
        s.edge(node, Strategy("other").add_node("x", lambda ctx, x: x))
    with pytest.raises(threadline.ValidationError, match="reserved"):
        s.add_node("__finish__", lambda ctx, x: x)
    with pytest.raises(threadline.ValidationError):
        Strategy("")


def duplicated() -> Strategy:
    s = Strategy("dupes")
    first = s.add_node("step", lambda ctx, x: [*x, "first"])
    second = s.add_node("step", lambda ctx, x: [*x, "second"])
    third = s.add_node("other", lambda ctx, x: x)
    fourth = s.add_node("other", lambda ctx, x: x)
    s.edge(s.start, first).edge(first, second).edge(second, third)
    s.edge(third, fourth).edge(fourth, s.finish)
    return s


async def test_duplicate_names_run_without_persistency() -> None:
    # The graph is wired by Node objects, so it runs; only names given as strings are ambiguous.
    s = duplicated()
    assert await GraphAgent(s, provider="echo").run([]) == ["first", "second"]
    with pytest.raises(GraphError, match="2 nodes of strategy 'dupes' are named 'step'"):
        s.edge(s.start, "step")


def test_duplicate_names_are_refused_with_persistency() -> None:
    with pytest.raises(DuplicateNodeNameError) as caught:
        GraphAgent(duplicated(), provider="echo", features=[Persistency(None)])
    assert caught.value.duplicates == {"step": 2, "other": 2}
    assert "'other' (2 nodes), 'step' (2 nodes)" in str(caught.value)
    assert isinstance(caught.value, threadline.ValidationError)


async def test_duplicates_added_after_the_agent_is_built_are_refused_at_run() -> None:
    s = Strategy("late")
    a = s.add_node("a", lambda ctx, x: x)
    s.edge(s.start, a).edge(a, s.finish)
    agent = GraphAgent(s, provider="echo", features=[Persistency(None)])
    s.add_node("a", lambda ctx, x: x)
    with pytest.raises(DuplicateNodeNameError, match="'a' \\(2 nodes\\)"):
        await agent.run(1)


def chat_strategy() -> Strategy:
    s = Strategy("chat")

    @s.node("ask")
    async def ask(ctx: GraphContext, text: str) -> str:
        ctx.state["asked"] = text
        return await ctx.llm(text)

    @s.node("stream")
    async def stream(ctx: GraphContext, reply: str) -> list[str]:
        return [piece async for piece in ctx.llm_stream("one two three")]

    s.edge(s.start, ask).edge(ask, stream).edge(stream, s.finish)
    return s


async def test_llm_calls_append_to_the_history(store: threadline.Store) -> None:
    seen: list[tuple[str, ...]] = []

    class Spy(Feature):
        async def after_node(self, ctx: GraphContext, node: str, output: Any) -> None:
            seen.append((node, *(f"{m.role}:{m.content}" for m in ctx.history)))

    agent = GraphAgent(
        chat_strategy(),
        provider="echo",
        system_prompt="be brief",
        features=[Spy(), Persistency(store)],
    )
    sid = new_id()
    pieces = await agent.run("hello", session_id=sid)
    assert pieces == ["Echo:", " one", " two", " three"]
    assert seen == [
        ("ask", "system:be brief", "user:hello", "assistant:Echo: hello"),
        (
            "stream",
            "system:be brief",
            "user:hello",
            "assistant:Echo: hello",
            "user:one two three",
            "assistant:Echo: one two three",
        ),
    ]
    tomb = await agent.persistency(sid).get_latest_checkpoint()
    assert tomb is not None and tomb.tombstone and tomb.state == {"asked": "hello"}
    assert all(
        m.session_id == sid and m.tenant_id == agent.tenant_id and m.agent_id == agent.agent_id
        for m in tomb.history
    )
    calls = await store.list_api_calls(agent.tenant_id, sid)
    assert [c.status for c in calls] == ["success", "success"]
    assert all(c.total_tokens and c.model == "echo" for c in calls)
    assert calls[0].response_message_id == tomb.history[2].id


async def test_model_tool_calls_and_direct_tool_calls() -> None:
    clock: list[str] = []

    def set_alarm(time: str) -> str:
        clock.append(time)
        return f"alarm at {time}"

    s = Strategy("tools")

    @s.node("plan")
    async def plan(ctx: GraphContext, text: str) -> str:
        reply = await ctx.llm('tool:set_alarm {"time": "07:00"}')
        direct = await ctx.call_tool("set_alarm", time="08:00")
        with pytest.raises(GraphError, match="no tool named 'nope'"):
            await ctx.call_tool("nope")
        return f"{reply} / {direct}"

    s.edge(s.start, plan).edge(plan, s.finish)
    agent = GraphAgent(s, provider="echo", tools=[set_alarm])
    assert await agent.run("x") == "Echo: alarm at 07:00 / alarm at 08:00"
    assert clock == ["07:00", "08:00"]


async def test_default_ids_and_parallel_sessions_do_not_mix() -> None:
    s = Strategy("counter")

    @s.node("count")
    async def count(ctx: GraphContext, n: int) -> int:
        ctx.state["n"] = ctx.state.get("n", 0) + n
        await asyncio.sleep(0.01)
        ctx.append("user", str(n))
        assert [m.content for m in ctx.history] == [str(n)]
        return int(ctx.state["n"])

    s.edge(s.start, count).edge(count, s.finish)
    agent = GraphAgent(s, provider="echo")
    assert agent.agent_id == default_agent_id("counter") == default_agent_id("counter")
    assert agent.tenant_id == threadline.runtime.agent.LOCAL_TENANT_ID
    assert await asyncio.gather(*(agent.run(i) for i in range(5))) == list(range(5))


async def test_persistency_needs_the_feature() -> None:
    calls: Counter[str] = Counter()
    agent = GraphAgent(triage(calls), provider="echo")
    with pytest.raises(threadline.ConfigurationError, match="Persistency is not installed"):
        agent.persistency(new_id())
    with pytest.raises(threadline.ConfigurationError, match="once"):
        GraphAgent(triage(calls), provider="echo", features=[Persistency(None), Persistency(None)])
    with pytest.raises(threadline.ConfigurationError, match="lacks get_checkpoints"):
        Persistency(object())
