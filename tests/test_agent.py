"""The agent runtime: streaming chat that persists itself, on the memory store."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

import threadline
from threadline import AgentBuilder, AgentConfig, AgentRecord, ConfigurationError
from threadline.errors import StreamError
from threadline.ids import new_id
from threadline.runtime.providers import ChatRequest, EchoProvider, StreamEnd, TextDelta, Usage

TENANT, USER = new_id(), new_id()


class ScriptedProvider:
    """Streams the given pieces with a pause between them, then ends or fails."""

    name = "scripted"
    default_model = "scripted-1"

    def __init__(self, pieces: list[str], *, delay: float = 0.0, fail: Exception | None = None):
        self.pieces, self.delay, self.fail = pieces, delay, fail
        self.requests: list[ChatRequest] = []

    async def stream(self, request: ChatRequest) -> AsyncIterator[TextDelta | StreamEnd]:
        self.requests.append(request)
        for piece in self.pieces:
            await asyncio.sleep(self.delay)
            yield TextDelta(piece)
        if self.fail is not None:
            raise self.fail
        yield StreamEnd(
            finish_reason="stop",
            usage=Usage(10, len(self.pieces), 10 + len(self.pieces)),
            response_id="resp-1",
            model="scripted-1",
        )

    async def aclose(self) -> None:
        return None


@pytest_asyncio.fixture
async def store() -> AsyncIterator[threadline.Store]:
    store = await threadline.connect("memory://")
    yield store
    await store.close()


def builder(store: threadline.Store, provider: object, **kw: object) -> AgentBuilder:
    return (
        AgentBuilder("You are terse.")
        .with_store(store)
        .with_tenant_id(TENANT)
        .with_user_id(USER)
        .with_provider(provider)  # type: ignore[arg-type]
    )


async def test_a_turn_is_persisted_with_its_api_call(store: threadline.Store) -> None:
    provider = ScriptedProvider(["Hel", "lo", "!"])
    agent = await builder(store, provider).build()
    assert "".join([t async for t in agent.chat_stream("hi")]) == "Hello!"
    history = await agent.history()
    assert [(m.role, m.content, m.status) for m in history] == [
        ("system", "You are terse.", "complete"),
        ("user", "hi", "complete"),
        ("assistant", "Hello!", "complete"),
    ]
    [call] = await store.list_api_calls(TENANT, agent.session_id)
    assert call.status == "success"
    assert (call.prompt_tokens, call.completion_tokens, call.total_tokens) == (10, 3, 13)
    assert call.request_message_id == history[1].id
    assert call.response_message_id == history[2].id
    assert call.response_id == "resp-1"
    assert call.latency_ms is not None and call.time_to_first_token_ms is not None
    assert call.latency_ms >= call.time_to_first_token_ms


async def test_user_message_is_durable_before_the_first_token(store: threadline.Store) -> None:
    agent = await builder(store, ScriptedProvider(["a", "b"])).build()
    async for _ in agent.chat_stream("remember this"):
        stored = await store.get_messages(TENANT, agent.session_id)
        assert [m.content for m in stored if m.role == "user"] == ["remember this"]
        break


async def test_stopping_early_keeps_the_partial_reply_as_cancelled(store: threadline.Store) -> None:
    agent = await builder(store, ScriptedProvider(["one ", "two ", "three"])).build()
    stream = agent.chat_stream("count")
    async with contextlib.aclosing(stream):
        async for piece in stream:
            assert piece == "one "
            break
    reply = (await agent.history())[-1]
    assert (reply.role, reply.content, reply.status) == ("assistant", "one ", "cancelled")
    [call] = await store.list_api_calls(TENANT, agent.session_id)
    assert call.status == "cancelled"


async def test_a_cancelled_task_keeps_the_partial_reply(store: threadline.Store) -> None:
    agent = await builder(store, ScriptedProvider(["a", "b", "c", "d"], delay=0.05)).build()
    seen: list[str] = []

    async def consume() -> None:
        async for piece in agent.chat_stream("go"):
            seen.append(piece)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.12)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    reply = (await agent.history())[-1]
    assert reply.status == "cancelled"
    assert reply.content == "".join(seen) and seen


async def test_a_failed_stream_keeps_the_partial_reply_as_error(store: threadline.Store) -> None:
    provider = ScriptedProvider(["par", "tial"], fail=StreamError("connection dropped"))
    agent = await builder(store, provider).build()
    got: list[str] = []
    with pytest.raises(StreamError):
        async for piece in agent.chat_stream("hello"):
            got.append(piece)
    reply = (await agent.history())[-1]
    assert (reply.content, reply.status) == ("partial", "error")
    [call] = await store.list_api_calls(TENANT, agent.session_id)
    assert call.status == "failed"
    assert call.error_message == "connection dropped"


async def test_streaming_text_is_flushed_while_it_streams(store: threadline.Store) -> None:
    provider = ScriptedProvider([f"w{i} " for i in range(12)], delay=0.02)
    agent = await builder(store, provider).with_flush_interval(0.05).build()
    seen_in_store: list[str] = []
    async for _ in agent.chat_stream("talk"):
        stored = await store.get_messages(TENANT, agent.session_id)
        if stored[-1].role == "assistant":
            assert stored[-1].status == "streaming"
            seen_in_store.append(stored[-1].content)
    assert len(set(seen_in_store)) >= 3  # rewritten several times, growing
    assert all(b.startswith(a) for a, b in itertools.pairwise(seen_in_store))
    assert (await agent.history())[-1].status == "complete"


async def test_reopening_after_a_crash_marks_the_reply_interrupted(
    store: threadline.Store,
) -> None:
    sid = new_id()
    crashed = await builder(store, ScriptedProvider(["x"])).with_session_id(sid).build()
    await crashed.open_session()
    ctx = await threadline.PersistenceContext.open(store, tenant_id=TENANT, session_id=sid)
    await ctx.save_user_message("q")
    await ctx.save_assistant_message("half a rep", status="streaming")
    again = await builder(store, ScriptedProvider(["ok"])).with_session_id(sid).build()
    assert await again.chat("continue") == "ok"
    statuses = [m.status for m in await again.history() if m.role == "assistant"]
    assert statuses == ["interrupted", "complete"]


async def test_sliding_window_sends_system_and_last_rounds(store: threadline.Store) -> None:
    provider = ScriptedProvider(["ok"])
    agent = await builder(store, provider).with_sliding_window(2).build()
    for i in range(5):
        await agent.chat(f"q{i}")
    sent = provider.requests[-1].messages
    assert [(m.role, m.content) for m in sent] == [
        ("system", "You are terse."),
        ("user", "q3"),
        ("assistant", "ok"),
        ("user", "q4"),
    ]
    assert len(await agent.history()) == 11  # everything is still stored


async def test_one_agent_serves_many_sessions_without_crosstalk(store: threadline.Store) -> None:
    agent = await builder(store, EchoProvider(delay=0.001)).build()
    sessions = [new_id() for _ in range(20)]

    async def talk(sid: str) -> str:
        return await agent.chat(f"I am {sid}", session_id=sid)

    replies = await asyncio.gather(*(talk(s) for s in sessions))
    for sid, reply in zip(sessions, replies):
        assert reply == f"Echo: I am {sid}"
        history = await agent.history(sid)
        assert [m.content for m in history[1:]] == [f"I am {sid}", f"Echo: I am {sid}"]


async def test_tools_are_called_persisted_and_restored(store: threadline.Store) -> None:
    calls: list[str] = []

    def get_time(zone: str = "UTC") -> str:
        """The current time in a zone."""
        calls.append(zone)
        return f"12:00 {zone}"

    sid = new_id()
    agent = await builder(store, EchoProvider()).with_tools([get_time]).with_session_id(sid).build()
    reply = await agent.chat('tool:get_time {"zone": "CET"}')
    assert calls == ["CET"]
    assert reply == "Echo: 12:00 CET"
    resumed = await builder(store, EchoProvider()).with_session_id(sid).build()
    history = await resumed.history()
    assert [m.role for m in history] == ["system", "user", "assistant", "tool", "assistant"]
    assert history[2].tool_calls[0].name == "get_time"
    assert history[2].tool_calls[0].arguments == {"zone": "CET"}
    assert (history[3].tool_call_id, history[3].content) == (
        history[2].tool_calls[0].id,
        "12:00 CET",
    )
    assert len(await store.list_api_calls(TENANT, sid)) == 2  # one per model request


async def test_from_agent_config_applies_fields_and_refuses_disabled(
    store: threadline.Store,
) -> None:
    agent_row = AgentRecord(
        tenant_id=TENANT,
        code="helper",
        name="Helper",
        system_prompt="Be kind.",
        model="echo-large",
        temperature=0.2,
        max_tokens=64,
        window=3,
        response_format={"type": "text"},
        custom_params={"seed": 7},
    )
    config = AgentConfig(agent=agent_row)
    provider = ScriptedProvider(["fine"])
    agent = await (
        AgentBuilder.from_agent_config(config).with_provider(provider).with_store(store).build()
    )
    assert await agent.chat("hello") == "fine"
    request = provider.requests[0]
    assert (request.model, request.temperature, request.max_tokens) == ("echo-large", 0.2, 64)
    assert request.response_format == {"type": "text"}
    assert request.extra == {"seed": 7}
    assert request.messages[0].content == "Be kind."
    assert agent.settings.window == 3
    assert (agent.persistence.tenant_id, agent.persistence.agent_id) == (TENANT, agent_row.id)
    import attrs

    with pytest.raises(ConfigurationError, match="disabled"):
        AgentBuilder.from_agent_config(AgentConfig(agent=attrs.evolve(agent_row, enabled=False)))


async def test_quick_agent_reads_ids_and_store_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant = new_id()
    monkeypatch.setenv("TENANT_ID", tenant)
    monkeypatch.setenv("THREADLINE_STORE", "memory://quick-agent-test")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    agent = await threadline.quick_agent("hi there").build()
    try:
        assert agent.persistence.tenant_id == tenant
        assert agent.settings.provider.name == "echo"
        assert await agent.chat("ping") == "Echo: ping"
    finally:
        await agent.close()


async def test_builder_without_a_store_or_tenant_refuses(store: threadline.Store) -> None:
    with pytest.raises(ConfigurationError, match="no store"):
        await AgentBuilder("x").with_provider(EchoProvider()).with_tenant_id(TENANT).build()
    with pytest.raises(ConfigurationError, match="no tenant"):
        await AgentBuilder("x").with_provider(EchoProvider()).with_store(store).build()


async def test_a_tool_call_left_open_by_a_crash_does_not_break_the_session(
    store: threadline.Store,
) -> None:
    sid = new_id()
    ctx = await threadline.PersistenceContext.open(store, tenant_id=TENANT, session_id=sid)
    await ctx.save_user_message("what time is it?")
    await ctx.save_assistant_message("", tool_calls=[threadline.ToolCall(id="c9", name="clock")])
    provider = ScriptedProvider(["recovered"])
    agent = await builder(store, provider).with_session_id(sid).build()
    assert await agent.chat("hello?") == "recovered"
    sent = provider.requests[0].messages
    roles = [m.role for m in sent]
    assert roles == ["system", "user", "assistant", "tool", "user"]  # system prompt first
    assert sent[-2].tool_call_id == "c9"
    assert "did not complete" in sent[-2].content
    stored_roles = [m.role for m in await agent.history()]
    assert "tool" not in stored_roles  # the placeholder is never stored
