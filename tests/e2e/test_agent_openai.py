"""The agent with the real OpenAI provider, over real HTTP on 127.0.0.1, on real stores.

Each test drives :class:`threadline.Agent` with ``threadline_openai.OpenAIProvider``
against :mod:`tests.e2e.openai_server` and checks what the store holds afterwards (or
meanwhile): the ApiCall of a normal turn, a stream broken off, rate limiting with and
without recovery, tool-call deltas, text flushed while streaming, and a process killed
mid-reply. Every test runs on a SQLite file and, when threadline-postgres is installed
and the server is up, on a PostgreSQL database created for this run and dropped after.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("threadline_sqlite", reason="needs threadline-sqlite (the e2e tox env)")
pytest.importorskip("threadline_openai", reason="needs threadline-openai (the e2e tox env)")

import threadline
from threadline import Message
from threadline.errors import RateLimitError, StreamError
from threadline.ids import new_id
from threadline_openai import OpenAIProvider
from threadline_openai.retry import RetryPolicy

from .openai_server import (
    ECHO_PREFIX,
    OpenAIServer,
    error,
    stream_text,
    stream_tool_calls,
)

TENANT = "019bda9f-0000-7000-8000-0000000000e2"
USER = "019bda9f-0000-7000-8000-0000000000e3"
SYSTEM = "You are a test assistant."
MODEL = "mock-model"
API_KEY = "sk-e2e-not-a-real-key"
ADMIN_URL = os.environ.get("THREADLINE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
SLACK = 0.15
"""Seconds allowed on top of a flush interval for scheduling and the write itself."""


# -- fixtures -------------------------------------------------------------------------------


def _with_database(url: str, database: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, "", ""))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database created for this test run on the PostgreSQL server, dropped afterwards."""
    pytest.importorskip("threadline_postgres", reason="needs threadline-postgres")
    asyncpg = pytest.importorskip("asyncpg")
    name = f"threadline_e2e_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(ADMIN_URL, timeout=3)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
        reason = f"PostgreSQL not reachable at {ADMIN_URL}: {exc}"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    try:
        yield _with_database(ADMIN_URL, name)
    finally:
        for attempt in range(5):  # the server may be restarting: give it a few seconds
            try:
                asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                break
            except Exception as exc:  # still gone: say so, fail nothing
                if attempt == 4:
                    warnings.warn(f"could not drop test database {name}: {exc!r}", stacklevel=1)
                time.sleep(1)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh store: a SQLite file, or the run's PostgreSQL database."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite:///{tmp_path / 'chat.db'}"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[threadline.Store]:
    store = await threadline.connect(store_url)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer() as srv:
        yield srv


def provider(server: OpenAIServer, *, max_retries: int = 2) -> OpenAIProvider:
    """The real provider, pointed at the test server, retrying fast and timing out early."""
    return OpenAIProvider(
        api_key=API_KEY,
        base_url=server.base_url,
        model=MODEL,
        connect_timeout=2,
        read_timeout=5,
        retry_policy=RetryPolicy(max_retries=max_retries, initial_delay=0.01, max_delay=0.05),
    )


async def make_agent(
    store: threadline.Store,
    server: OpenAIServer,
    *,
    session_id: str | None = None,
    max_retries: int = 2,
    flush_interval: float | None = None,
    tools: list[Any] | None = None,
) -> threadline.Agent:
    builder = (
        threadline.AgentBuilder(SYSTEM)
        .with_store(store)
        .with_tenant_id(TENANT)
        .with_user_id(USER)
        .with_provider(provider(server, max_retries=max_retries))
        .with_session_id(session_id or new_id())
        .with_tools(tools or [])
    )
    if flush_interval is not None:
        builder.with_flush_interval(flush_interval)
    return await builder.build()


def roles(history: list[Message]) -> list[tuple[str, str]]:
    return [(m.role, m.status) for m in history]


# -- a normal turn --------------------------------------------------------------------------


async def test_a_streamed_turn_records_usage_response_id_ttft_and_latency(
    store: threadline.Store, server: OpenAIServer
) -> None:
    first = asyncio.Event()  # the server sends the rest once the agent has the first piece
    server.script(
        stream_text(
            ["Hel", "lo", " world", "!"],
            first_delay=0.05,
            delay=0.01,
            usage=(12, 4),
            after_first=first,
        )
    )
    agent = await make_agent(store, server)
    started = time.perf_counter()
    pieces = []
    async for text in agent.chat_stream("hi"):
        pieces.append(text)
        first.set()
    elapsed_ms = (time.perf_counter() - started) * 1000
    await agent.close()

    assert pieces == ["Hel", "lo", " world", "!"]
    history = await store.get_messages(TENANT, agent.session_id)
    assert [(m.role, m.content, m.status) for m in history] == [
        ("system", SYSTEM, "complete"),
        ("user", "hi", "complete"),
        ("assistant", "Hello world!", "complete"),
    ]
    assert history[2].metadata["model"] == MODEL
    [call] = await store.list_api_calls(TENANT, agent.session_id)
    assert call.status == "success"
    assert (call.prompt_tokens, call.completion_tokens, call.total_tokens) == (12, 4, 16)
    assert call.response_id == server.requests[0].response_id
    assert (call.request_message_id, call.response_message_id) == (history[1].id, history[2].id)
    assert call.model == MODEL
    assert call.time_to_first_token_ms is not None and call.latency_ms is not None
    assert 45 <= call.time_to_first_token_ms <= call.latency_ms <= elapsed_ms + 1
    assert call.latency_ms >= call.time_to_first_token_ms + 25  # three 10 ms gaps after it
    # (sent only after the agent had the first piece: a loaded machine cannot merge them)
    assert call.tokens_per_second is not None and call.tokens_per_second > 0

    [sent] = server.requests
    body = sent.json()
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert body["model"] == MODEL and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "hi"},
    ]


# -- failures -------------------------------------------------------------------------------


async def test_a_connection_dropped_mid_stream_keeps_the_partial_reply(
    store: threadline.Store, server: OpenAIServer
) -> None:
    server.script(stream_text(["partial ", "reply ", "never sent"], delay=0.01, drop_after=2))
    agent = await make_agent(store, server)
    received: list[str] = []
    with pytest.raises(StreamError) as caught:
        async for text in agent.chat_stream("tell me"):
            received.append(text)
    await agent.close()

    assert "".join(received) == "partial reply "
    assert caught.value.code == "stream_interrupted"
    history = await store.get_messages(TENANT, agent.session_id)
    assert [(m.role, m.content, m.status) for m in history[1:]] == [
        ("user", "tell me", "complete"),
        ("assistant", "partial reply ", "error"),
    ]
    [call] = await store.list_api_calls(TENANT, agent.session_id)
    assert call.status == "failed"
    assert call.error_code == "stream_interrupted"
    assert call.response_message_id == history[2].id
    assert call.time_to_first_token_ms is not None
    assert call.prompt_tokens is None  # the usage chunk never came


async def test_a_429_then_success_is_one_turn_with_one_successful_api_call(
    store: threadline.Store, server: OpenAIServer
) -> None:
    server.script(error(429, "slow down", headers={"Retry-After": "0"}))
    agent = await make_agent(store, server)
    reply = await agent.chat("again")
    await agent.close()

    assert reply == ECHO_PREFIX + "again"
    assert len(server.requests) == 2  # the retry went out before any text was shown
    history = await store.get_messages(TENANT, agent.session_id)
    assert roles(history) == [
        ("system", "complete"),
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    [call] = await store.list_api_calls(TENANT, agent.session_id)
    assert call.status == "success"
    assert call.response_id == server.requests[1].response_id


async def test_a_429_that_persists_is_recorded_as_rate_limited(
    store: threadline.Store, server: OpenAIServer
) -> None:
    server.default = error(429, "slow down", headers={"Retry-After": "0"})
    agent = await make_agent(store, server, max_retries=2)
    with pytest.raises(RateLimitError):
        await agent.chat("please")
    await agent.close()

    assert len(server.requests) == 3  # the first try and two retries
    history = await store.get_messages(TENANT, agent.session_id)
    user, reply = history[1], history[2]
    assert (user.role, user.content, user.status) == ("user", "please", "complete")
    assert (reply.role, reply.content, reply.status) == ("assistant", "", "error")
    [call] = await store.list_api_calls(TENANT, agent.session_id)
    assert call.status == "rate_limited"
    assert call.error_message is not None and "429" in call.error_message
    assert call.time_to_first_token_ms is None
    assert API_KEY not in (call.error_message or "")


# -- tools ----------------------------------------------------------------------------------


async def test_tool_call_deltas_run_the_tool_and_the_session_resumes_with_it(
    store: threadline.Store, store_url: str, server: OpenAIServer
) -> None:
    calls: list[str] = []

    def get_time(timezone: str) -> str:
        """The time in ``timezone``."""
        calls.append(timezone)
        return f"12:00 in {timezone}"

    server.script(
        stream_tool_calls([("call_1", "get_time", {"timezone": "Europe/Paris"})], split=4)
    )
    agent = await make_agent(store, server, tools=[get_time])
    reply = await agent.chat("what time is it in Paris?")
    await agent.close()

    assert calls == ["Europe/Paris"]
    assert reply == ECHO_PREFIX + "12:00 in Europe/Paris"
    first, second = (r.json() for r in server.requests)
    assert [t["function"]["name"] for t in first["tools"]] == ["get_time"]
    assert second["messages"][-2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"timezone": "Europe/Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "12:00 in Europe/Paris"},
    ]
    api_calls = await store.list_api_calls(TENANT, agent.session_id)
    assert [(c.status, c.response_id) for c in api_calls] == [
        ("success", server.requests[0].response_id),
        ("success", server.requests[1].response_id),
    ]

    # a new store connection and a new agent on the same session: the tool call is there
    other = await threadline.connect(store_url)
    try:
        resumed = await make_agent(other, server, session_id=agent.session_id, tools=[get_time])
        await resumed.open_session()
        history = await resumed.history()
        await resumed.close()
    finally:
        await other.close()
    assert [m.role for m in history] == ["system", "user", "assistant", "tool", "assistant"]
    call_row, tool_row = history[2], history[3]
    assert [(c.id, c.name, c.arguments) for c in call_row.tool_calls] == [
        ("call_1", "get_time", {"timezone": "Europe/Paris"})
    ]
    assert (tool_row.tool_call_id, tool_row.name, tool_row.content) == (
        "call_1",
        "get_time",
        "12:00 in Europe/Paris",
    )
    assert api_calls[0].response_message_id == call_row.id


# -- flushing while streaming ----------------------------------------------------------------


async def test_a_slow_stream_is_visible_in_the_store_while_it_streams(
    store: threadline.Store, store_url: str, server: OpenAIServer
) -> None:
    flush, gap = 0.05, 0.02
    pieces = [f"w{i:02d} " for i in range(30)]
    server.script(stream_text(pieces, delay=gap))
    agent = await make_agent(store, server, flush_interval=flush)
    reader = await threadline.connect(store_url)  # another connection, as another process would
    received: list[tuple[float, str]] = []
    checked = 0
    try:
        async for text in agent.chat_stream("go slowly"):
            received.append((time.monotonic(), text))
            if len(received) in (12, 24):
                now = time.monotonic()
                rows = await reader.get_messages(TENANT, agent.session_id)
                reply = rows[-1]
                assert (reply.role, reply.status) == ("assistant", "streaming")
                so_far = "".join(t for _, t in received)
                assert so_far.startswith(reply.content)
                due = "".join(t for at, t in received if at < now - flush - gap - SLACK)
                assert reply.content.startswith(due), (len(due), len(reply.content))
                assert reply.content, "nothing flushed yet"
                if len(received) == 24:
                    assert due, "the check would be vacuous"
                checked += 1
        rows = await reader.get_messages(TENANT, agent.session_id)
    finally:
        await reader.close()
        await agent.close()
    assert checked == 2
    assert (rows[-1].content, rows[-1].status) == ("".join(pieces), "complete")


# -- a process killed mid-reply ---------------------------------------------------------------

CHILD = """
import asyncio, json, sys
import threadline
from threadline_openai import OpenAIProvider

async def main():
    url, base_url, tenant, session, flush = sys.argv[1:6]
    agent = await (
        threadline.AgentBuilder("You are a test assistant.")
        .with_store(url).with_tenant_id(tenant).with_session_id(session)
        .with_provider(OpenAIProvider(api_key="sk-child", base_url=base_url, model="mock-model"))
        .with_flush_interval(float(flush))
        .build()
    )
    print("READY", flush=True)
    async for text in agent.chat_stream("tell me a long story"):
        print(json.dumps(text), flush=True)

asyncio.run(main())
"""


async def test_a_killed_process_leaves_a_streaming_row_that_becomes_interrupted(
    store: threadline.Store, store_url: str, server: OpenAIServer
) -> None:
    flush, gap = 0.1, 0.03
    server.script(stream_text([f"t{i:03d} " for i in range(300)], delay=gap))
    session_id = new_id()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(CHILD),
        store_url,
        server.base_url,
        TENANT,
        session_id,
        str(flush),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    printed: list[tuple[float, str]] = []
    try:
        ready = await asyncio.wait_for(child.stdout.readline(), 20)
        assert ready == b"READY\n", ready + await child.stderr.read()  # type: ignore[union-attr]
        while len(printed) < 15:
            line = await asyncio.wait_for(child.stdout.readline(), 5)
            assert line, "the child ended early"
            printed.append((time.monotonic(), json.loads(line)))
    finally:
        killed_at = time.monotonic()
        child.send_signal(signal.SIGKILL)
        rest, _ = await asyncio.wait_for(child.communicate(), 10)
    printed += [(killed_at, json.loads(line)) for line in rest.splitlines()]
    assert child.returncode == -signal.SIGKILL

    rows = await store.get_messages(TENANT, session_id)
    assert [(m.role, m.status) for m in rows] == [
        ("system", "complete"),
        ("user", "complete"),
        ("assistant", "streaming"),
    ]
    agent = await make_agent(store, server, session_id=session_id)
    await agent.open_session()
    history = await agent.history()
    await agent.close()
    reply = history[-1]
    assert (reply.role, reply.status) == ("assistant", "interrupted")
    shown = "".join(text for _, text in printed)
    assert len(shown) < 300 * 5, "the child was killed mid-stream"
    assert shown.startswith(reply.content) and reply.content
    due = "".join(text for at, text in printed if at < killed_at - flush - gap - SLACK)
    assert due, "the check would be vacuous"
    assert reply.content.startswith(due), "more than one flush interval of text was lost"
