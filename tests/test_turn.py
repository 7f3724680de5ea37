"""One chat turn, two callers: the chat agent and a graph node behave alike.

Every scenario runs through ``Agent.chat_stream`` and through ``ctx.llm_stream`` in a
graph node, on the memory store and on an SQLite file: API call statuses, partial
replies, open tool calls and the tool-round limit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs
import pytest
import pytest_asyncio

import threadline
from threadline import AgentBuilder, ApiCall, Message, ToolCall
from threadline.errors import ProviderTimeoutError, RateLimitError, StreamError
from threadline.graph import MAX_TOOL_ROUNDS as GRAPH_MAX_TOOL_ROUNDS
from threadline.graph import GraphAgent, GraphContext, Persistency, Strategy
from threadline.ids import new_id
from threadline.runtime.providers import ChatRequest, StreamEnd, TextDelta, Usage
from threadline.runtime.turn import MAX_TOOL_ROUNDS

TENANT, USER = new_id(), new_id()
PROMPT = "Be brief."


@attrs.frozen
class Reply:
    """What the scripted provider answers one request with."""

    pieces: tuple[str, ...] = ()
    calls: tuple[ToolCall, ...] = ()
    fail: Exception | None = None
    delay: float = 0.0


class ScriptedProvider:
    """A provider answering request ``n`` with ``script(n)``; remembers every request."""

    name = "scripted"
    default_model: str | None = "scripted-1"

    def __init__(self, script: Callable[[int], Reply]) -> None:
        self.script = script
        self.requests: list[ChatRequest] = []

    async def stream(self, request: ChatRequest) -> AsyncIterator[TextDelta | StreamEnd]:
        n = len(self.requests)
        self.requests.append(request)
        reply = self.script(n)
        for piece in reply.pieces:
            await asyncio.sleep(reply.delay)
            yield TextDelta(piece)
        if reply.fail is not None:
            raise reply.fail
        yield StreamEnd(
            finish_reason="tool_calls" if reply.calls else "stop",
            tool_calls=reply.calls,
            usage=Usage(7, len(reply.pieces), 7 + len(reply.pieces)),
            response_id=f"resp-{n}",
            model="scripted-1",
        )

    async def aclose(self) -> None:
        return None


@attrs.define
class Outcome:
    """What one turn left behind: what the caller saw, the history, the API calls."""

    pieces: list[str]
    error: BaseException | None
    history: list[Message]
    api_calls: list[ApiCall]


OPEN_CALL = ToolCall(id="call_left_open", name="clock")


class Driver(Protocol):
    async def __call__(
        self,
        store: threadline.Store,
        provider: ScriptedProvider,
        text: str,
        *,
        tools: Sequence[Callable[..., Any]] = (),
        stop_after: int | None = None,
        open_call: bool = False,
    ) -> Outcome: ...


async def _read(stream: AsyncIterator[str], pieces: list[str], stop_after: int | None) -> None:
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        async for piece in stream:
            pieces.append(piece)
            if stop_after is not None and len(pieces) == stop_after:
                break  # the caller stops reading: the turn is cancelled


async def chat_turn(
    store: threadline.Store,
    provider: ScriptedProvider,
    text: str,
    *,
    tools: Sequence[Callable[..., Any]] = (),
    stop_after: int | None = None,
    open_call: bool = False,
) -> Outcome:
    """One turn of ``Agent.chat_stream``; the history is what the store holds."""
    sid = new_id()
    if open_call:  # a crash between a tool call and its result, in an earlier turn
        ctx = await threadline.PersistenceContext.open(store, tenant_id=TENANT, session_id=sid)
        await ctx.save_user_message("what time is it?")
        await ctx.save_assistant_message("", tool_calls=[OPEN_CALL])
    agent = await (
        AgentBuilder(PROMPT)
        .with_store(store)
        .with_tenant_id(TENANT)
        .with_user_id(USER)
        .with_session_id(sid)
        .with_provider(provider)
        .with_tools(tools)
        .build()
    )
    pieces: list[str] = []
    error: BaseException | None = None
    try:
        await _read(agent.chat_stream(text), pieces, stop_after)
    except Exception as exc:
        error = exc
    history = await agent.history()
    return Outcome(pieces, error, history, await store.list_api_calls(TENANT, sid))


async def graph_turn(
    store: threadline.Store,
    provider: ScriptedProvider,
    text: str,
    *,
    tools: Sequence[Callable[..., Any]] = (),
    stop_after: int | None = None,
    open_call: bool = False,
) -> Outcome:
    """One ``ctx.llm_stream`` in a graph node; the history is the checkpointed run's."""
    strategy = Strategy("turn")
    seen: list[Message] = []
    pieces: list[str] = []

    @strategy.node("ask")
    async def ask(ctx: GraphContext, prompt: str) -> str:
        try:
            if open_call:  # e.g. a run resumed from a checkpoint taken between call and result
                ctx.append("user", "what time is it?")
                ctx.append("assistant", "", tool_calls=[OPEN_CALL])
            await _read(ctx.llm_stream(prompt), pieces, stop_after)
        finally:
            seen[:] = ctx.history
        return "".join(pieces)

    strategy.edge(strategy.start, ask).edge(ask, strategy.finish)
    agent = GraphAgent(
        strategy,
        provider=provider,
        tools=tools,
        features=[Persistency(store)],
        system_prompt=PROMPT,
        tenant_id=TENANT,
        user_id=USER,
    )
    sid = new_id()
    error: BaseException | None = None
    try:
        await agent.run(text, session_id=sid)
    except Exception as exc:
        error = exc
    history = seen
    if error is None:  # what the run's last checkpoint persisted
        latest = await agent.persistency(sid).get_latest_checkpoint()
        assert latest is not None
        history = list(latest.history)
        assert [m.id for m in history] == [m.id for m in seen]
    await agent.close()
    return Outcome(pieces, error, history, await store.list_api_calls(TENANT, sid))


@pytest_asyncio.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[threadline.Store]:
    if request.param == "sqlite":
        pytest.importorskip("threadline_sqlite")  # the core-only envs have the memory store
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'turn.db'}"
    store = await threadline.connect(url)
    yield store
    await store.close()


@pytest.fixture(params=["chat", "graph"])
def turn(request: pytest.FixtureRequest) -> Driver:
    return chat_turn if request.param == "chat" else graph_turn


def test_the_limit_and_the_tool_runner_exist_once() -> None:
    import threadline.graph.context
    import threadline.runtime.agent

    assert GRAPH_MAX_TOOL_ROUNDS is MAX_TOOL_ROUNDS
    assert not hasattr(threadline.runtime.agent.Agent, "_run_tool")
    assert not hasattr(threadline.graph.context.GraphContext, "_run_tool")


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (RateLimitError("429: slow down", retry_after=3.0), "rate_limited"),
        (ProviderTimeoutError("read timed out after 5 s"), "timeout"),
        (StreamError("connection dropped"), "failed"),
    ],
)
async def test_a_failed_request_records_its_status_and_keeps_the_partial_reply(
    store: threadline.Store, turn: Driver, failure: Exception, status: str
) -> None:
    provider = ScriptedProvider(lambda n: Reply(("par", "tial"), fail=failure))
    outcome = await turn(store, provider, "hello")
    assert outcome.error is failure  # the caller gets the provider's error as it is
    assert outcome.pieces == ["par", "tial"]
    reply = outcome.history[-1]
    assert (reply.role, reply.content, reply.status) == ("assistant", "partial", "error")
    [call] = outcome.api_calls
    assert call.status == status
    assert call.error_message == str(failure)
    assert call.error_code == type(failure).__name__
    assert call.response_message_id == reply.id
    assert call.request_message_id == outcome.history[-2].id  # the user message
    assert call.time_to_first_token_ms is not None and call.latency_ms is not None


async def test_a_stream_the_caller_stops_records_cancelled_and_keeps_the_partial_reply(
    store: threadline.Store, turn: Driver
) -> None:
    provider = ScriptedProvider(lambda n: Reply(("one ", "two ", "three"), delay=0.01))
    outcome = await turn(store, provider, "count", stop_after=1)
    assert outcome.error is None and outcome.pieces == ["one "]
    assert [(m.role, m.content, m.status) for m in outcome.history] == [
        ("system", PROMPT, "complete"),
        ("user", "count", "complete"),
        ("assistant", "one ", "cancelled"),
    ]
    [call] = outcome.api_calls
    assert call.status == "cancelled"
    assert call.response_message_id == outcome.history[-1].id
    assert call.time_to_first_token_ms is not None and call.latency_ms is not None
    assert call.latency_ms >= call.time_to_first_token_ms


async def test_open_tool_calls_are_answered_before_the_next_request(
    store: threadline.Store, turn: Driver
) -> None:
    provider = ScriptedProvider(lambda n: Reply(("recovered",)))
    outcome = await turn(store, provider, "hello?", open_call=True)
    assert outcome.pieces == ["recovered"]
    [request] = provider.requests
    sent = [(m.role, m.tool_call_id) for m in request.messages]
    assert sent == [
        ("system", None),
        ("user", None),
        ("assistant", None),
        ("tool", OPEN_CALL.id),  # answered right after its call, before the new question
        ("user", None),
    ]
    assert "did not complete" in request.messages[3].content
    # the placeholder is for the request only: the history keeps what happened
    kept = [m.role for m in outcome.history if m.role != "system"]
    assert kept == ["user", "assistant", "user", "assistant"]
    assert outcome.api_calls[0].status == "success"


async def test_tool_rounds_stop_at_max_tool_rounds_with_every_call_answered(
    store: threadline.Store, turn: Driver
) -> None:
    ticks: list[int] = []

    def tick() -> str:
        """Count one more tick."""
        ticks.append(1)
        return f"tick {len(ticks)}"

    provider = ScriptedProvider(lambda n: Reply(calls=(ToolCall(id=f"call_{n}", name="tick"),)))
    outcome = await turn(store, provider, "tick forever", tools=[tick])
    assert outcome.error is None and outcome.pieces == []
    assert len(ticks) == MAX_TOOL_ROUNDS  # the tool ran this many rounds, no more
    assert len(provider.requests) == MAX_TOOL_ROUNDS + 1
    assert [t.name for t in provider.requests[0].tools] == ["tick"]
    rounds = outcome.history[2:]
    assert [m.role for m in rounds] == ["assistant", "tool"] * (MAX_TOOL_ROUNDS + 1)
    assert [m.content for m in rounds[1:-1:2]] == [f"tick {i}" for i in range(1, 9)]
    last = rounds[-1]  # the call the turn did not run says so, and why
    assert last.content.startswith("error: not run: the turn reached its limit of 8 rounds")
    assert (last.tool_call_id, last.metadata) == (
        f"call_{MAX_TOOL_ROUNDS}",
        {"error": "max_tool_rounds"},
    )
    called = [c.id for m in rounds for c in m.tool_calls]
    assert called == [m.tool_call_id for m in rounds if m.role == "tool"]  # none left open
    assert [c.status for c in outcome.api_calls] == ["success"] * (MAX_TOOL_ROUNDS + 1)
    asked = {c.request_message_id for c in outcome.api_calls}
    assert None not in asked


async def test_a_failing_tool_is_a_result_the_model_reads(
    store: threadline.Store, turn: Driver
) -> None:
    def book(room: str) -> str:
        """Book a room."""
        raise RuntimeError(f"{room} is taken")

    call = ToolCall(id="call_book", name="book", arguments={"room": "Ada"})
    provider = ScriptedProvider(
        lambda n: Reply(calls=(call,)) if n == 0 else Reply(("sorry, ", "taken"))
    )
    outcome = await turn(store, provider, "book Ada", tools=[book])
    assert outcome.error is None and "".join(outcome.pieces) == "sorry, taken"
    result = outcome.history[3]
    assert (result.role, result.tool_call_id) == ("tool", "call_book")
    assert result.content == "error: RuntimeError: Ada is taken"
    assert result.metadata == {"error": "RuntimeError"}
    assert provider.requests[1].messages[-1].content == result.content


async def test_a_graph_node_without_tools_answers_the_calls_it_does_not_run(
    store: threadline.Store,
) -> None:
    ran: list[str] = []

    def clock() -> str:
        """The time."""
        ran.append("clock")
        return "12:00"

    strategy = Strategy("plain")

    @strategy.node("ask")
    async def ask(ctx: GraphContext, prompt: str) -> str:
        return await ctx.llm(prompt, tools=False)

    strategy.edge(strategy.start, ask).edge(ask, strategy.finish)
    provider = ScriptedProvider(lambda n: Reply(("let me check",), calls=(OPEN_CALL,)))
    agent = GraphAgent(strategy, provider=provider, tools=[clock], features=[Persistency(store)])
    sid = new_id()
    assert await agent.run("time?", session_id=sid) == "let me check"
    assert ran == [] and provider.requests[0].tools == []
    latest = await agent.persistency(sid).get_latest_checkpoint()
    assert latest is not None
    *_, reply, result = latest.history
    assert reply.tool_calls == (OPEN_CALL,)
    assert (result.tool_call_id, result.metadata) == (OPEN_CALL.id, {"error": "tools_not_offered"})
    assert result.content.startswith("error: not run")
