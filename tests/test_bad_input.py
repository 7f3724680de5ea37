"""Bad input through the agent: a typed error, the user's message kept, a clear status."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

import threadline
from threadline import quick_agent
from threadline.errors import ProviderError, StreamError
from threadline.ids import new_id
from threadline.models import MAX_JSON_DEPTH


@pytest_asyncio.fixture
async def store() -> AsyncIterator[threadline.Store]:
    store = await threadline.connect("memory://")
    yield store
    await store.close()


@pytest.mark.parametrize(
    ("prompt", "reason"),
    [
        ("tool:get_time {bad", "invalid JSON arguments"),
        ("tool:get_time [1, 2]", "must be a JSON object, got list"),
        ("tool:get_time " + "[" * 10_000 + "]" * 10_000, "nested too deeply"),
        (
            "tool:get_time " + '{"k":' * MAX_JSON_DEPTH + "{}" + "}" * MAX_JSON_DEPTH,
            "nested more than",
        ),
        ("tool: {}", "needs a tool name"),
    ],
)
async def test_echo_tool_call_with_bad_arguments_is_a_stream_error(
    store: threadline.Store, prompt: str, reason: str
) -> None:
    calls: list[str] = []

    def get_time(zone: str = "UTC") -> str:
        """The current time in a zone."""
        calls.append(zone)
        return f"12:00 {zone}"

    sid = new_id()
    agent = (
        await quick_agent("You tell the time.", store)
        .with_provider("echo")
        .with_tools([get_time])
        .with_session_id(sid)
        .build()
    )
    with pytest.raises(StreamError, match=reason) as raised:
        await agent.chat(prompt)
    assert isinstance(raised.value, ProviderError)  # what a caller of any provider catches
    assert calls == []
    history = await agent.history()
    assert [(m.role, m.status) for m in history] == [
        ("system", "complete"),
        ("user", "complete"),  # the user's message is kept
        ("assistant", "error"),  # the reply ends with an error status
    ]
    assert history[1].content == prompt
    tenant = agent.persistence.tenant_id
    [api_call] = await store.list_api_calls(tenant, sid)
    assert api_call.status == "failed" and reason.split()[0] in (api_call.error_message or "")
    # The session goes on: the next message is answered.
    assert await agent.chat("hello") == "Echo: hello"
