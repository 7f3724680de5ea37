"""Manual persistence (MoFA's streaming_manual_persistence): you decide what is saved.

Each turn saves the user message, streams the model's reply, and saves the reply with
its timing in metadata. Run it twice: ``--new`` starts the demo session over, ``--resume``
(the default) opens it again in a fresh process and continues with the history restored.

    python examples/streaming_manual_persistence.py --store sqlite:///demo.db --new
    python examples/streaming_manual_persistence.py --store sqlite:///demo.db --resume

Offline it uses the built-in ``echo`` provider; with ``OPENAI_API_KEY`` or
``OPENAI_BASE_URL`` set (and threadline-openai installed) it talks to a real model.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import threadline
from threadline.runtime.providers import ChatRequest, Provider, StreamEnd, TextDelta, get_provider

SESSION_ID = "019bda9f-9ffd-7a80-a9e5-88b05e81a7d4"
DEMO_TENANT = "019bda9f-0000-7000-8000-000000000001"
DEMO_USER = "019bda9f-0000-7000-8000-000000000002"
DEMO_AGENT = "019bda9f-0000-7000-8000-000000000003"
SYSTEM_PROMPT = "You are a helpful assistant. Keep answers short."


def choose_provider() -> tuple[Provider, str]:
    if os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"):
        provider = get_provider("openai")
        return provider, os.environ.get("OPENAI_MODEL", provider.default_model or "gpt-4o-mini")
    return get_provider("echo"), "echo"


async def turn(
    ctx: threadline.PersistenceContext, provider: Provider, model: str, user_input: str
) -> None:
    print(f"user> {user_input}")
    await ctx.save_user_message(user_input)
    history = await ctx.get_history(last_rounds=2)
    started = time.perf_counter()
    first_token: float | None = None
    parts: list[str] = []
    end: StreamEnd | None = None
    print("assistant> ", end="", flush=True)
    async for event in provider.stream(ChatRequest(model=model, messages=history)):
        if isinstance(event, TextDelta):
            first_token = first_token or time.perf_counter()
            parts.append(event.text)
            print(event.text, end="", flush=True)
        else:
            end = event
    print()
    latency = (time.perf_counter() - started) * 1000
    usage = end.usage if end is not None else None
    await ctx.save_assistant_message(
        "".join(parts),
        metadata={
            "model": model,
            "latency_ms": round(latency, 2),
            "time_to_first_token_ms": round(((first_token or started) - started) * 1000, 2),
            "total_tokens": usage.total_tokens if usage else None,
        },
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store", default=os.environ.get("THREADLINE_STORE", "sqlite:///threadline_demo.db")
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--new", action="store_true", help="start the demo session over")
    mode.add_argument("--resume", action="store_true", help="continue the demo session")
    args = parser.parse_args()

    tenant = os.environ.get("TENANT_ID", DEMO_TENANT)
    user = os.environ.get("USER_ID", DEMO_USER)
    agent = os.environ.get("AGENT_ID", DEMO_AGENT)
    provider, model = choose_provider()
    store = await threadline.connect(args.store)
    try:
        if args.new:
            await store.delete_session(tenant, SESSION_ID)
        ctx = await threadline.PersistenceContext.open(
            store, user_id=user, tenant_id=tenant, agent_id=agent, session_id=SESSION_ID
        )
        history = await ctx.get_history()
        if history:
            print(f"resumed session {ctx.session_id} with {len(history)} messages:")
            for message in history:
                print(f"  [{message.seq}] {message.role}: {message.content}")
            questions = ["Do you still remember my name?"]
        else:
            print(f"new session {ctx.session_id} in {store.url}")
            await ctx.save_system_message(SYSTEM_PROMPT)
            questions = ["Hello! My name is Ada.", "I like durable agents."]
        for question in questions:
            await turn(ctx, provider, model, question)
        window = await ctx.get_history(last_rounds=2)
        print(
            f"sliding window of 2 rounds: {len(window)} messages "
            f"(system prompt kept: {window[0].role == 'system'})"
        )
    finally:
        await provider.aclose()
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
