"""Child process of test_follow.py: ``follow URL TENANT SESSION [--next|--id ID]`` prints a
reply's updates as JSON lines; ``write URL TENANT SESSION WORDS DELAY [PAUSES]`` streams one
echo reply of WORDS words (DELAY seconds apart), printing ``token N`` per piece and waiting
for a line on stdin after each piece numbered in PAUSES (comma-separated)."""

from __future__ import annotations

import asyncio
import json
import sys

import threadline
from threadline.runtime.providers import EchoProvider


async def follow(url: str, tenant: str, session: str, mode: str) -> None:
    store = await threadline.connect(url)
    try:
        message_id = sys.argv[6] if mode == "--id" else None
        updates = store.follow_reply(tenant, session, message_id, wait_next=mode == "--next")
        print(json.dumps({"ready": True}), flush=True)
        async for u in updates:
            print(json.dumps({"id": u.message_id, "text": u.text, "status": u.status}), flush=True)
    finally:
        await store.close()


async def write(
    url: str, tenant: str, session: str, words: int, delay: float, pauses: set[int]
) -> None:
    store = await threadline.connect(url)
    agent = await (
        threadline.AgentBuilder()
        .with_store(store)
        .with_tenant_id(tenant)
        .with_session_id(session)
        .with_provider(EchoProvider(delay=delay))
        .build()
    )
    try:
        n = 0
        async for _ in agent.chat_stream(" ".join(f"w{i}" for i in range(words))):
            n += 1
            print(f"token {n}", flush=True)
            if n in pauses:
                await asyncio.to_thread(sys.stdin.readline)
    finally:
        await agent.close()
        await store.close()


if __name__ == "__main__":
    command, url, tenant, session, *rest = sys.argv[1:]
    if command == "follow":
        asyncio.run(follow(url, tenant, session, rest[0] if rest else ""))
    else:
        pauses = {int(n) for n in rest[2].split(",")} if len(rest) > 2 else set()
        asyncio.run(write(url, tenant, session, int(rest[0]), float(rest[1]), pauses))
