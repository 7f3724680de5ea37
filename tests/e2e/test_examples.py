"""The examples do what their docstrings claim, each in its own process, on a SQLite file.

Offline they use the built-in ``echo`` provider (with only threadline-sqlite loaded); with
``OPENAI_BASE_URL`` pointing at :mod:`tests.e2e.openai_server` they go through
threadline-openai over real HTTP. Each run is a fresh ``python`` process, so a session
that continues in the second run has survived a restart.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

pytest.importorskip("threadline_sqlite", reason="needs threadline-sqlite (the e2e tox env)")

from .openai_server import ECHO_PREFIX, OpenAIServer

ROOT = Path(__file__).resolve().parents[2]
STREAMING = ROOT / "examples" / "streaming_persistence.py"
FROM_DATABASE = ROOT / "examples" / "agent_from_database_streaming.py"
API_KEY = "sk-e2e-example-key-4f1c"
TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"
_CLEARED = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_MODEL",
    "THREADLINE_STORE",
    "DATABASE_URL",
    "TENANT_ID",
    "USER_ID",
    "AGENT_ID",
)


def offline_env() -> dict[str, str]:
    """The environment of an offline run: no endpoint, only the SQLite store plugin."""
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env["THREADLINE_LOAD_PLUGINS"] = "threadline-sqlite"
    return env


def server_env(server: OpenAIServer) -> dict[str, str]:
    """The environment of a run against the test server (threadline-openai loaded)."""
    return {
        **offline_env(),
        "THREADLINE_LOAD_PLUGINS": "threadline-sqlite,threadline-openai",
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": API_KEY,
        "OPENAI_MODEL": "mock-model",
    }


async def run(script: Path, *args: str, env: Mapping[str, str], cwd: Path) -> str:
    """Run an example to completion (60 s at most) and return its stdout."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        *args,
        env=dict(env),
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, f"{script.name} {args} failed:\n{out.decode()}\n{err.decode()}"
    return out.decode()


def files_of(db: Path) -> bytes:
    """Every byte of a SQLite database, its WAL included."""
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer() as srv:
        yield srv


def needs_openai_plugin() -> None:
    pytest.importorskip("threadline_openai", reason="needs threadline-openai (the e2e tox env)")


# -- examples/streaming_persistence.py ----------------------------------------------------------


def check_first_run(out: str, prefix: str) -> None:
    assert "new session 019bda9f-9ffd-7a80-a9e5-88b05e81a7d4" in out
    assert f"assistant> {prefix}Hello! My name is Ada." in out
    assert re.search(r"tool call saved: \[\d+\] assistant -> get_time\(\{\}\)", out)
    assert re.search(rf"tool call saved: \[\d+\] tool get_time: {TIMESTAMP}", out)
    assert re.search(rf"assistant> {re.escape(prefix)}{TIMESTAMP}", out)
    assert "(system prompt kept: True)" in out


def check_resumed_run(out: str, prefix: str) -> None:
    assert "resumed session 019bda9f-9ffd-7a80-a9e5-88b05e81a7d4" in out
    restored = out.split("restored ", 1)[1].split("user> ", 1)[0]
    assert restored.startswith("9 messages:")
    assert "[1] system: You are a helpful assistant. Keep answers short." in restored
    assert "[2] user: Hello! My name is Ada." in restored
    assert "[5] assistant -> get_time({})" in restored
    assert re.search(rf"\[6\] tool get_time: {TIMESTAMP}", restored)
    assert f"[9] assistant: {prefix}I like durable agents." in restored
    assert f"assistant> {prefix}Do you still remember my name?" in out
    assert "saved 2 messages (seq 10-11)" in out


async def test_streaming_persistence_survives_a_restart_offline(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    first = await run(STREAMING, "--store", url, "--new", env=offline_env(), cwd=tmp_path)
    check_first_run(first, "Echo: ")
    assert "(echo, model echo)" in first
    second = await run(STREAMING, "--store", url, "--resume", env=offline_env(), cwd=tmp_path)
    check_resumed_run(second, "Echo: ")
    again = await run(STREAMING, "--store", url, "--new", env=offline_env(), cwd=tmp_path)
    assert "new session" in again and "restored" not in again


async def test_streaming_persistence_store_defaults_to_threadline_store(tmp_path: Path) -> None:
    env = {**offline_env(), "THREADLINE_STORE": "sqlite:///from_env.db"}
    out = await run(STREAMING, "--new", env=env, cwd=tmp_path)
    assert "in sqlite:///from_env.db" in out
    assert (tmp_path / "from_env.db").exists()


async def test_streaming_persistence_against_an_openai_server(
    tmp_path: Path, server: OpenAIServer
) -> None:
    needs_openai_plugin()
    db = tmp_path / "demo.db"
    env = server_env(server)
    first = await run(STREAMING, "--store", f"sqlite:///{db}", "--new", env=env, cwd=tmp_path)
    check_first_run(first, ECHO_PREFIX)
    assert "(openai, model mock-model)" in first
    assert len(server.requests) == 4  # hello, tool call, tool result, last question
    tool_result = server.requests[2]
    assert [m["role"] for m in tool_result.messages][-2:] == ["assistant", "tool"]
    assert tool_result.messages[-2]["tool_calls"][0]["function"]["name"] == "get_time"

    second = await run(STREAMING, "--store", f"sqlite:///{db}", "--resume", env=env, cwd=tmp_path)
    check_resumed_run(second, ECHO_PREFIX)
    after_restart = server.requests[-1]
    assert after_restart.headers["authorization"] == f"Bearer {API_KEY}"
    sent = [(m["role"], m.get("content")) for m in after_restart.messages]
    # the sliding window of 2 rounds, read back from the store by the new process
    assert sent[0] == ("system", "You are a helpful assistant. Keep answers short.")
    assert sent[-1] == ("user", "Do you still remember my name?")
    assert ("user", "I like durable agents.") in sent
    assert ("user", "Hello! My name is Ada.") not in sent
    assert API_KEY.encode() not in files_of(db)


# -- examples/agent_from_database_streaming.py --------------------------------------------------


async def test_agent_from_database_offline(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'agents.db'}"
    first = await run(FROM_DATABASE, "--store", url, env=offline_env(), cwd=tmp_path)
    assert "agent config 'chat-assistant' saved (provider echo)" in first
    assert "loaded agent config 'chat-assistant' (v1): name='Chat assistant'" in first
    assert "window=2 rounds" in first
    assert "provider 'local-echo': type=echo" in first
    assert "new session" in first
    assert "assistant> Echo: Hello! Who are you?" in first
    assert "now holds 5 messages" in first

    second = await run(FROM_DATABASE, "--store", url, env=offline_env(), cwd=tmp_path)
    assert "agent config 'chat-assistant' found in the store" in second
    assert "resumed session" in second and "5 messages stored" in second
    assert "now holds 9 messages" in second
    agent_ids = {re.search(r"agent_id ([0-9a-f-]+)", out).group(1) for out in (first, second)}  # type: ignore[union-attr]
    assert len(agent_ids) == 1  # the same agent row both times


async def test_agent_from_database_against_an_openai_server(
    tmp_path: Path, server: OpenAIServer
) -> None:
    needs_openai_plugin()
    db = tmp_path / "agents.db"
    out = await run(
        FROM_DATABASE, "--store", f"sqlite:///{db}", env=server_env(server), cwd=tmp_path
    )
    assert "agent config 'chat-assistant' saved (provider openai)" in out
    assert f"type=openai, api_base={server.base_url}, key=env:OPENAI_API_KEY" in out
    assert "model=mock-model" in out
    assert f"assistant> {ECHO_PREFIX}Hello! Who are you?" in out
    assert len(server.requests) == 2
    first = server.requests[0]
    body = first.json()
    # everything came from the agent row, and the key from the referenced variable
    assert first.headers["authorization"] == f"Bearer {API_KEY}"
    assert body["model"] == "mock-model"
    assert (body["temperature"], body["max_tokens"]) == (0.7, 512)
    assert body["messages"][0] == {
        "role": "system",
        "content": "You are a friendly assistant loaded from the database. Be brief.",
    }
    stored = files_of(db)
    assert b"env:OPENAI_API_KEY" in stored
    assert API_KEY.encode() not in stored


# -- examples/human_in_the_loop.py ----------------------------------------------------------

HUMAN_IN_THE_LOOP = ROOT / "examples" / "human_in_the_loop.py"


@pytest.mark.parametrize("store", ["sqlite", "memory://"])
async def test_human_in_the_loop_offline(tmp_path: Path, store: str) -> None:
    url = f"sqlite:///{tmp_path / 'hitl.db'}" if store == "sqlite" else store
    env = offline_env()
    if store == "memory://":
        env["THREADLINE_LOAD_PLUGINS"] = "threadline-memory"
    for _ in range(2):  # a second run on the same store works the same way
        out = await run(HUMAN_IN_THE_LOOP, "--store", url, env=env, cwd=tmp_path)
        interrupt = re.search(r"run paused at node 'draft', interrupt ([0-9a-f-]{36})", out)
        assert interrupt is not None, out
        assert f"waiting: interrupt {interrupt.group(1)} at 'draft'" in out
        assert "resumed: sent: Echo: Please refund order 42." in out
        assert "model requests for the whole run: 1" in out  # the draft was replayed
        assert re.search(r'held for approval: refund\(\{"order": "42", "amount": 80\}\)', out)
        assert "approved with a smaller amount: Echo: refunded 50 on 42" in out
