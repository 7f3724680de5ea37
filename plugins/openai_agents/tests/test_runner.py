"""End to end: the SDK's own ``Runner`` with a ThreadlineSession, against the local
OpenAI-compatible server (chat completions over real HTTP), across a process restart."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool
from conftest import load_openai_server
from openai import AsyncOpenAI

from threadline_openai_agents import ThreadlineSession

server_module = load_openai_server()
PREFIX = server_module.ECHO_PREFIX

CITIES: dict[str, str] = {"Paris": "sunny, 21C", "Oslo": "snow, -3C"}


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return CITIES.get(city, "unknown")


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Any]:
    async with server_module.OpenAIServer() as running:
        yield running


def make_agent(base_url: str) -> Agent[Any]:
    client = AsyncOpenAI(base_url=base_url, api_key="test-key", max_retries=0)
    model = OpenAIChatCompletionsModel(model="mock-model", openai_client=client)
    return Agent(name="weather", instructions="Be brief.", tools=[get_weather], model=model)


def sent_messages(server: Any) -> list[list[dict[str, Any]]]:
    return [request.messages for request in server.requests]


async def test_several_turns_with_a_tool_streamed_and_not(server: Any, store_url: str) -> None:
    agent = make_agent(server.base_url)
    async with ThreadlineSession("weather-chat", store_url) as session:
        first = await Runner.run(agent, "hello", session=session)
        assert first.final_output == PREFIX + "hello"

        second = await Runner.run(agent, 'tool:get_weather {"city": "Paris"}', session=session)
        assert second.final_output == PREFIX + "sunny, 21C"

        streamed = Runner.run_streamed(agent, "thanks", session=session)
        deltas = [
            event.data.delta
            async for event in streamed.stream_events()
            if event.type == "raw_response_event" and hasattr(event.data, "delta")
        ]
        assert streamed.final_output == PREFIX + "thanks"
        assert "".join(d for d in deltas if isinstance(d, str)) == PREFIX + "thanks"

        items = await session.get_items()
    kinds = [item.get("type", "message") for item in items]
    assert kinds == [
        "message",  # hello
        "message",
        "message",  # tool:get_weather ...
        "function_call",
        "function_call_output",
        "message",
        "message",  # thanks
        "message",
    ]
    assert items[0] == {"content": "hello", "role": "user"}
    assert items[4]["output"] == "sunny, 21C"
    assert items[3]["call_id"] == items[4]["call_id"]
    # each turn sent the whole history the session held, in order
    last = sent_messages(server)[-1]
    assert [m["role"] for m in last] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]
    assert last[-1]["content"] == "thanks"


async def test_a_session_limit_sends_only_the_latest_items(server: Any, store_url: str) -> None:
    agent = make_agent(server.base_url)
    async with ThreadlineSession("short", store_url, session_settings={"limit": 2}) as session:
        for word in ("one", "two", "three"):
            await Runner.run(agent, word, session=session)
        assert len(await session.get_items(None)) == 2  # the settings' limit
    last = sent_messages(server)[-1]
    assert [m.get("content") for m in last] == ["Be brief.", "two", PREFIX + "two", "three"]


SECOND_PROCESS = textwrap.dedent(
    """
    import asyncio, json, sys
    from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled
    from openai import AsyncOpenAI
    from threadline_openai_agents import ThreadlineSession

    async def main(url, base_url):
        set_tracing_disabled(True)
        client = AsyncOpenAI(base_url=base_url, api_key="test-key", max_retries=0)
        model = OpenAIChatCompletionsModel(model="mock-model", openai_client=client)
        agent = Agent(name="weather", instructions="Be brief.", model=model)
        async with ThreadlineSession("across-processes", url) as session:
            before = await session.get_items()
            result = await Runner.run(agent, "still there?", session=session)
            print(json.dumps({"before": before, "reply": result.final_output}))

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_a_second_process_continues_the_session(
    server: Any, store_url: str, kind: str, tmp_path: Path
) -> None:
    if kind == "memory":
        pytest.skip("a memory store lives in one process")
    agent = make_agent(server.base_url)
    async with ThreadlineSession("across-processes", store_url) as session:
        await Runner.run(agent, 'tool:get_weather {"city": "Oslo"}', session=session)
        written = await session.get_items()
    assert len(written) == 4

    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SECOND_PROCESS,
        store_url,
        server.base_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
        env=dict(os.environ),
    )
    out, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, err.decode()[-3000:]
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report["before"] == written
    assert report["reply"] == PREFIX + "still there?"
    # the model saw the first process's turn, tool call and result included
    roles = [m["role"] for m in sent_messages(server)[-1]]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]

    async with ThreadlineSession("across-processes", store_url) as session:
        items = await session.get_items()
    assert items[:4] == written
    assert items[4:] == [
        {"content": "still there?", "role": "user"},
        items[5],
    ]
    assert items[5]["content"][0]["text"] == PREFIX + "still there?"
