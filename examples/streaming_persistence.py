"""Automatic persistence (MoFA's streaming_persistence): the agent saves every turn itself.

``chat_stream`` makes the user message durable before the first token, writes the reply
while it streams (a crash loses at most one flush interval), records each model request
as an ``ApiCall`` and persists tool calls and their results. Run it twice: ``--new``
starts the demo session over, ``--resume`` (the default) opens it again in a fresh
process, prints the restored history (system prompt, tool calls) and continues.

    python examples/streaming_persistence.py --store sqlite:///threadline_demo.db --new
    python examples/streaming_persistence.py --store sqlite:///threadline_demo.db --resume

Offline it uses the built-in ``echo`` provider, which calls a tool when a message reads
``tool:NAME {json}``; with ``OPENAI_API_KEY`` or ``OPENAI_BASE_URL`` set (and
threadline-openai installed) it talks to a real model (``OPENAI_MODEL``, else
gpt-4o-mini), which reads that message as a request to use the tool.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from datetime import datetime, timezone

import threadline

SESSION_ID = "019bda9f-9ffd-7a80-a9e5-88b05e81a7d4"
SYSTEM_PROMPT = "You are a helpful assistant. Keep answers short."
DEFAULT_STORE = "sqlite:///threadline_demo.db"
FIRST_RUN = ["Hello! My name is Ada.", "tool:get_time {}", "I like durable agents."]
AFTER_RESTART = ["Do you still remember my name?"]


def get_time() -> str:
    """The current date and time in UTC, ISO 8601 (the model cannot know it otherwise)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def uses_a_model() -> bool:
    """True when the environment points at an OpenAI-compatible endpoint."""
    return bool(os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"))


def describe(message: threadline.Message) -> str:
    """One stored message on one line: seq, role, status, tool calls and text."""
    who = message.role if message.role != "tool" else f"tool {message.name}"
    status = "" if message.status == "complete" else f" ({message.status})"
    calls = "".join(f" -> {c.name}({c.arguments})" for c in message.tool_calls)
    text = message.content if len(message.content) <= 100 else message.content[:97] + "..."
    line = f"[{message.seq}] {who}{status}{calls}"
    return f"{line}: {text}" if text else line


async def turn(agent: threadline.Agent, user_input: str) -> None:
    """Stream one reply, then show what the turn left in the store."""
    tenant, session = agent.persistence.tenant_id, agent.session_id
    history = await agent.history()
    last_seq = (history[-1].seq or 0) if history else 0
    print(f"user> {user_input}")
    started = False
    async for text in agent.chat_stream(user_input):
        if not started:
            print("assistant> ", end="")
            started = True
        print(text, end="", flush=True)
    print()
    stored = await agent.store.get_messages(tenant, session, after_seq=last_seq)
    for message in stored:
        if message.tool_calls or message.role == "tool":
            print(f"  tool call saved: {describe(message)}")
    print(f"  saved {len(stored)} messages (seq {stored[0].seq}-{stored[-1].seq})")


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--store",
        default=os.environ.get("THREADLINE_STORE", DEFAULT_STORE),
        help=f"store URL (default: THREADLINE_STORE, else {DEFAULT_STORE})",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--new", action="store_true", help="start the demo session over")
    mode.add_argument("--resume", action="store_true", help="continue the demo session (default)")
    args = parser.parse_args()

    builder = (
        threadline.quick_agent(SYSTEM_PROMPT, store=args.store)
        .with_session_id(SESSION_ID)
        .with_name("streaming persistence agent")
        .with_sliding_window(2)
        .with_tools([get_time])
    )
    if uses_a_model() and not os.environ.get("OPENAI_MODEL"):
        builder.with_model("gpt-4o-mini")
    agent = await builder.build()
    try:
        tenant = agent.persistence.tenant_id
        if args.new:
            await agent.store.delete_session(tenant, agent.session_id)
        existed = await agent.store.get_session(tenant, agent.session_id) is not None
        await agent.open_session()  # replies a crash left streaming become interrupted
        where = agent.store.url.redacted() if agent.store.url else "the store"
        provider = f"{agent.settings.provider.name}, model {agent.settings.model}"
        if existed:
            history = await agent.history()
            print(f"resumed session {agent.session_id} from {where} ({provider})")
            print(f"restored {len(history)} messages:")
            for message in history:
                print(f"  {describe(message)}")
            questions = AFTER_RESTART
        else:
            print(f"new session {agent.session_id} in {where} ({provider})")
            questions = FIRST_RUN
        for question in questions:
            await turn(agent, question)
        window = await agent.history(last_rounds=2)
        calls = await agent.store.list_api_calls(tenant, agent.session_id)
        last = calls[-1]
        print(
            f"next request sends {len(window)} messages: the sliding window of 2 rounds "
            f"(system prompt kept: {window[0].role == 'system'})"
        )
        print(
            f"{len(calls)} API calls recorded; last: {last.status}, "
            f"{last.total_tokens} tokens, TTFT {last.time_to_first_token_ms} ms, "
            f"latency {last.latency_ms} ms"
        )
    finally:
        await agent.close()


if __name__ == "__main__":
    asyncio.run(main())
