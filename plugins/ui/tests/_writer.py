"""Another process writing a reply: ``python _writer.py STORE_URL SESSION_ID WORDS [PAUSES]``.

The echo provider streams one word at a time; the reply is flushed to the store while it
streams (every 0.05 s), as any agent's is. After each piece numbered in PAUSES
(comma-separated; piece 1 is ``Echo:``, piece n + 2 is ``word{n}``) the writer waits for a
line on stdin, so a test sees that state in the page before the reply goes on.
"""

from __future__ import annotations

import asyncio
import sys

import threadline


async def main(url: str, session_id: str, words: int, pauses: set[int]) -> None:
    agent = await (
        threadline.quick_agent("You are a slow echo.", store=url)
        .with_session_id(session_id)
        .with_provider("echo", delay=0.01)
        .with_flush_interval(0.05)
        .build()
    )
    text = " ".join(f"word{i}" for i in range(words))
    n = 0
    async for _ in agent.chat_stream(text):
        n += 1
        if n in pauses:
            await asyncio.to_thread(sys.stdin.readline)
    await agent.close()


if __name__ == "__main__":
    pauses = {int(n) for n in sys.argv[4].split(",")} if len(sys.argv) > 4 else set()
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), pauses))
